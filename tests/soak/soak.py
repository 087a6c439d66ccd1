#!/usr/bin/python3
"""The reload and upgrade soak (`make soak`): under HTTP load (wrk), a set of
WebSocket echo sessions, TCP streams and UDP sessions, a proxy is reloaded
again and again and binary-upgraded, and the script counts what was lost.

    tests/soak/soak.py [--proxy lbd,nginx,haproxy] [--reloads 100]
                       [--upgrades 10] [--interval 1.0]

Environment: LBD, LBCTL (default objs/lbd, objs/lbctl), LBD_B (the second
build the upgrades alternate with; default: a copy of LBD), BENCH_BIN
(objs/bench, for httpbackend), SOAK_KEEP=1 (keep the work directory).

lbd's reloads alternate between in-place upstream changes (a server added or
removed, a weight changed: no new generation) and full ones (a response
header changed: a new generation); its upgrades alternate between the two
builds with `lbctl upgrade --binary`.  nginx reloads with HUP and upgrades
with USR2, WINCH and QUIT; HAProxy runs master-worker (-W) and reloads with
USR2 (its upgrade is the same re-exec).  Every proxy runs 2 workers with a
10 s shutdown timeout (nginx worker_shutdown_timeout, HAProxy
hard-stop-after).

A WebSocket session or TCP stream that the proxy closes is "forced" when a
full reload or an upgrade happened while it was open (it was then on a
draining generation, which may close it when its shutdown timeout or the
generation cap comes); any other close is a loss.  The figures: requests,
non-2xx responses, socket errors, sessions and streams dropped (forced /
lost), TCP bytes lost, UDP replies lost, peak process count, memory (the
proportional set size of every process running the proxy's binaries) at
the start, at its peak and at the end, once the old generations are gone.

The integration suite runs a short version (tests/integration/test_soak.py).
"""

import argparse
import base64
import hashlib
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IO_TIMEOUT = 5.0
SHUTDOWN_TIMEOUT = 10           # seconds, every proxy
NGINX_STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WARMUP = 3.0                    # seconds of load before the first figure


def log(msg):
    print(f"soak: {msg}", file=sys.stderr, flush=True)


# Ports and processes --------------------------------------------------------------

def _port_ceiling():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_taken = set()


def free_port():
    """A port below the ephemeral range that nothing listens on (tcp and udp)."""
    hi = min(_port_ceiling(), 32768) - 1
    for _ in range(1000):
        port = random.randint(20000, hi)
        if port in _taken:
            continue
        try:
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                with socket.socket(socket.AF_INET, kind) as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        _taken.add(port)
        return port
    raise RuntimeError("no free port")


def exe_of(pid):
    try:
        return os.path.realpath(f"/proc/{pid}/exe")
    except OSError:
        return None


def processes_of(binaries):
    """Pids of the processes running one of the binaries (real paths)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and exe_of(int(name)) in binaries:
            found.append(int(name))
    return found


def pss_bytes(pid):
    """The memory a process owns, shared pages counted once across the
    processes that share them: its proportional share of anonymous and
    shared-memory pages (Pss_Anon + Pss_Shmem). File pages (the binary,
    the libraries) are left out: they are the page cache's, and how many of
    them a process has mapped depends on how it started (a daemonized
    master maps fewer than one that an upgrade executed), not on what it
    uses."""
    total = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith(("Pss_Anon:", "Pss_Shmem:")):
                    total += int(line.split()[1]) * 1024
    except OSError:
        pass
    return total


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


# Backends: one http server per port (the bench's C httpbackend), and a
# WebSocket echo, a TCP echo and a UDP echo server in threads ---------------------

class Backends:
    def __init__(self, workdir, deadline):
        self.procs = []
        self.sockets = []
        self.stop = threading.Event()
        bench_bin = os.environ.get("BENCH_BIN", os.path.join(ROOT, "objs", "bench"))
        httpbackend = os.path.join(bench_bin, "httpbackend")
        if not os.access(httpbackend, os.X_OK):
            raise RuntimeError(f"{httpbackend} is missing (make objs/bench/httpbackend)")
        self.http = [free_port() for _ in range(3)]
        for port in self.http:
            p = subprocess.Popen([httpbackend, str(port), "--deadline", str(int(deadline))],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.procs.append(p)
        self.ws = self._stream_server(self._ws_echo)
        self.tcp = self._stream_server(self._echo)
        self.udp = self._udp_echo()
        for port in self.http:
            wait_for(lambda: self._answers(port), 10, f"httpbackend on {port}")

    @staticmethod
    def _answers(port):
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return True
        except OSError:
            return False

    def _stream_server(self, handler):
        port = free_port()
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(256)
        s.settimeout(0.2)
        self.sockets.append(s)

        def accept():
            while not self.stop.is_set():
                try:
                    conn, _ = s.accept()
                except socket.timeout:
                    continue
                except OSError:
                    return
                threading.Thread(target=handler, args=(conn,), daemon=True).start()
        threading.Thread(target=accept, daemon=True).start()
        return port

    def _echo(self, conn, data=b""):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.settimeout(1.0)
        try:
            if data:
                conn.sendall(data)
            while not self.stop.is_set():
                try:
                    chunk = conn.recv(65536)
                except socket.timeout:
                    continue
                if not chunk:
                    conn.shutdown(socket.SHUT_WR)
                    return
                conn.sendall(chunk)
        except OSError:
            pass
        finally:
            conn.close()

    def _ws_echo(self, conn):
        head = b""
        conn.settimeout(IO_TIMEOUT)
        try:
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    conn.close()
                    return
                head += chunk
                if len(head) > 65536:
                    conn.close()
                    return
        except OSError:
            conn.close()
            return
        rest = head.split(b"\r\n\r\n", 1)[1]
        key = re.search(rb"(?im)^sec-websocket-key:[ \t]*(\S+)", head)
        accept = base64.b64encode(hashlib.sha1(
            (key.group(1) if key else b"") + WS_GUID).digest())
        try:
            # a real handshake answer: HAProxy checks Sec-WebSocket-Accept
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept
                         + b"\r\n\r\n")
        except OSError:
            conn.close()
            return
        self._echo(conn, rest)

    def _udp_echo(self):
        port = free_port()
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", port))
        s.settimeout(0.2)
        self.sockets.append(s)

        def loop():
            while not self.stop.is_set():
                try:
                    data, peer = s.recvfrom(65536)
                    s.sendto(data, peer)
                except socket.timeout:
                    continue
                except OSError:
                    return
        threading.Thread(target=loop, daemon=True).start()
        return port

    def close(self):
        self.stop.set()
        for s in self.sockets:
            s.close()
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()


# Proxies ----------------------------------------------------------------------------

class Proxy:
    name = "?"
    has_udp = True
    error = None                # why this proxy cannot run here

    def __init__(self, workdir, backends):
        self.dir = os.path.join(workdir, self.name)
        os.makedirs(self.dir, exist_ok=True)
        self.b = backends
        self.http_port, self.tcp_port, self.udp_port = free_port(), free_port(), free_port()
        self.generation = 0         # bumped by every full reload

    def binaries(self):
        raise NotImplementedError


class Lbd(Proxy):
    name = "lbd"

    def __init__(self, workdir, backends):
        super().__init__(workdir, backends)
        self.lbd = os.path.realpath(os.environ.get("LBD", os.path.join(ROOT, "objs", "lbd")))
        self.lbctl = os.environ.get("LBCTL", os.path.join(ROOT, "objs", "lbctl"))
        other = os.environ.get("LBD_B")
        if not other:
            other = os.path.join(self.dir, "lbd-b")
            shutil.copy2(self.lbd, other)
        self.builds = [self.lbd, os.path.realpath(other)]
        self.current = 0
        self.variant = 0
        self.conf = os.path.join(self.dir, "lbd.conf")
        self.pid_file = os.path.join(self.dir, "lbd.pid")

    def binaries(self):
        return set(self.builds)

    def _write(self):
        # in-place variants: the server list and the weights change, nothing else
        v = self.variant % 3
        http = self.b.http if v == 1 else self.b.http[:2]
        weights = [1, 2, 1] if v == 2 else [1, 1, 1]
        servers = ", ".join(f'{{ address = "127.0.0.1:{p}"; weight = {w}; }}'
                            for p, w in zip(http, weights))
        with open(self.conf, "w") as f:
            f.write(f"""
workers = 2;
pid_file = "{self.pid_file}";
error_log = "{self.dir}/error.log";
admin_socket = "{self.dir}/admin.sock";
log_level = "notice";
shutdown_timeout = "{SHUTDOWN_TIMEOUT}s";
upstreams = {{
  web = {{ servers = ( {servers} ); }};
  ws = {{ servers = ( {{ address = "127.0.0.1:{self.b.ws}"; }} ); }};
  tcp = {{ servers = ( {{ address = "127.0.0.1:{self.b.tcp}"; }} ); }};
  udp = {{ servers = ( {{ address = "127.0.0.1:{self.b.udp}"; }} ); }};
}};
listeners = (
  {{ name = "http"; protocol = "http"; listen = "127.0.0.1:{self.http_port}";
     response_headers = {{ add = ["X-Soak-Generation: {self.generation}"]; }};
     routes = ( {{ path_prefix = "/ws"; upstream = "ws"; }},
                {{ path_prefix = "/"; upstream = "web"; }} ); }},
  {{ name = "tcp"; protocol = "tcp"; listen = "127.0.0.1:{self.tcp_port}"; upstream = "tcp"; }},
  {{ name = "udp"; protocol = "udp"; listen = "127.0.0.1:{self.udp_port}"; upstream = "udp"; }}
);
""")

    def _ctl(self, *args, timeout=90):
        r = subprocess.run([self.lbctl, "-c", self.conf, *args], capture_output=True,
                           text=True, timeout=timeout)
        return r.returncode == 0, (r.stdout + r.stderr).strip()

    def start(self):
        self._write()
        subprocess.run([self.lbd, "-c", self.conf, "-p", self.dir], check=True, timeout=30)
        wait_for(lambda: Backends._answers(self.http_port), 10, "lbd to listen")

    def reload(self, full):
        if full:
            self.generation += 1
        else:
            self.variant += 1
        self._write()
        return self._ctl("reload")

    def upgrade(self):
        target = 1 - self.current
        ok, text = self._ctl("upgrade", "--binary", self.builds[target])
        if ok:
            self.current = target
        return ok, text

    def stop(self):
        pid = read_pid(self.pid_file)
        self._ctl("stop", timeout=30)
        for p in processes_of(self.binaries()):
            if p == pid or exe_of(p) in self.binaries():
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass


class Nginx(Proxy):
    name = "nginx"

    def __init__(self, workdir, backends):
        super().__init__(workdir, backends)
        if not shutil.which("nginx"):
            self.error = "nginx not installed"
        elif not os.path.exists(NGINX_STREAM_MODULE):
            self.error = "libnginx-mod-stream not installed"
        self.conf = os.path.join(self.dir, "nginx.conf")
        self.pid_file = os.path.join(self.dir, "nginx.pid")
        self.variant = 0

    def binaries(self):
        return {os.path.realpath(shutil.which("nginx") or "/usr/sbin/nginx")}

    def _write(self):
        v = self.variant % 3
        http = self.b.http if v == 1 else self.b.http[:2]
        weights = [1, 2, 1] if v == 2 else [1, 1, 1]
        servers = "".join(f"server 127.0.0.1:{p} weight={w};\n" for p, w in zip(http, weights))
        with open(self.conf, "w") as f:
            f.write(f"""
load_module {NGINX_STREAM_MODULE};
worker_processes 2;
pid {self.pid_file};
error_log {self.dir}/error.log notice;
worker_shutdown_timeout {SHUTDOWN_TIMEOUT}s;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  upstream web {{ {servers} keepalive 32; }}
  server {{
    listen 127.0.0.1:{self.http_port} reuseport;
    add_header X-Soak-Generation {self.generation};
    location /ws {{
      proxy_pass http://127.0.0.1:{self.b.ws};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_read_timeout 1h;
    }}
    location / {{
      proxy_pass http://web;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
stream {{
  server {{ listen 127.0.0.1:{self.tcp_port} reuseport; proxy_pass 127.0.0.1:{self.b.tcp}; }}
  server {{ listen 127.0.0.1:{self.udp_port} udp reuseport; proxy_pass 127.0.0.1:{self.b.udp};
           proxy_responses 1; proxy_timeout 10s; }}
}}
""")

    def start(self):
        self._write()
        subprocess.run(["nginx", "-p", self.dir + "/", "-c", self.conf, "-e",
                        f"{self.dir}/error.log"], check=True, timeout=30)
        wait_for(lambda: Backends._answers(self.http_port), 10, "nginx to listen")

    def reload(self, full):
        # nginx has no in-place change: every reload starts new workers
        self.generation += 1
        self.variant += 0 if full else 1
        self._write()
        pid = read_pid(self.pid_file)
        os.kill(pid, signal.SIGHUP)
        time.sleep(0.2)         # nginx does not say when it is done
        return True, "HUP"

    def upgrade(self):
        old = read_pid(self.pid_file)
        os.kill(old, signal.SIGUSR2)
        try:
            new = wait_for(lambda: (lambda p: p if p and p != old else None)(
                read_pid(self.pid_file)), 15, "nginx's new master")
        except RuntimeError as e:
            return False, str(e)
        time.sleep(0.5)
        os.kill(old, signal.SIGWINCH)
        os.kill(old, signal.SIGQUIT)
        self.generation += 1
        return True, f"new master {new}"

    def stop(self):
        pid = read_pid(self.pid_file)
        if pid:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        time.sleep(0.5)
        for p in processes_of(self.binaries()):
            cmd = open(f"/proc/{p}/cmdline", "rb").read() if alive(p) else b""
            if self.dir.encode() in cmd or not cmd:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass


class Haproxy(Proxy):
    name = "haproxy"
    has_udp = False

    def __init__(self, workdir, backends):
        super().__init__(workdir, backends)
        if not shutil.which("haproxy"):
            self.error = "haproxy not installed"
        self.conf = os.path.join(self.dir, "haproxy.cfg")
        self.pid_file = os.path.join(self.dir, "haproxy.pid")
        self.variant = 0

    def binaries(self):
        return {os.path.realpath(shutil.which("haproxy") or "/usr/sbin/haproxy")}

    def _write(self):
        v = self.variant % 3
        http = self.b.http if v == 1 else self.b.http[:2]
        weights = [1, 2, 1] if v == 2 else [1, 1, 1]
        servers = "".join(f"  server s{i} 127.0.0.1:{p} weight {w}\n"
                          for i, (p, w) in enumerate(zip(http, weights)))
        with open(self.conf, "w") as f:
            f.write(f"""
global
  nbthread 2
  hard-stop-after {SHUTDOWN_TIMEOUT}s
  stats socket {self.dir}/stats.sock mode 600 level admin expose-fd listeners
defaults
  mode http
  timeout connect 5s
  timeout client 1h
  timeout server 1h
  timeout tunnel 1h
frontend http
  bind 127.0.0.1:{self.http_port}
  http-response add-header X-Soak-Generation {self.generation}
  use_backend ws if {{ path_beg /ws }}
  default_backend web
backend web
{servers}backend ws
  server ws 127.0.0.1:{self.b.ws}
frontend tcp
  mode tcp
  bind 127.0.0.1:{self.tcp_port}
  default_backend tcp
backend tcp
  mode tcp
  server tcp 127.0.0.1:{self.b.tcp}
""")

    def start(self):
        self._write()
        with open(os.path.join(self.dir, "haproxy.out"), "w") as out:
            subprocess.run(["haproxy", "-W", "-D", "-p", self.pid_file, "-f", self.conf],
                           check=True, timeout=30, stdout=out, stderr=out)
        wait_for(lambda: Backends._answers(self.http_port), 10, "haproxy to listen")

    def reload(self, full):
        self.generation += 1
        self.variant += 0 if full else 1
        self._write()
        os.kill(read_pid(self.pid_file), signal.SIGUSR2)
        time.sleep(0.2)
        return True, "USR2"

    def upgrade(self):
        # the master re-executes its binary on every reload
        return self.reload(True)

    def stop(self):
        pid = read_pid(self.pid_file)
        if pid:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        time.sleep(0.5)
        for p in processes_of(self.binaries()):
            cmd = open(f"/proc/{p}/cmdline", "rb").read() if alive(p) else b""
            if self.dir.encode() in cmd:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass


PROXIES = {"lbd": Lbd, "nginx": Nginx, "haproxy": Haproxy}


# Clients ---------------------------------------------------------------------------

class Events:
    """When the full reloads and upgrades happened: a session open across one
    was on a draining generation, which may close it."""

    def __init__(self):
        self.full = []

    def forced(self, opened, closed):
        return any(opened <= t <= closed for t in self.full)


class Sessions:
    """Long-lived echo sessions (WebSocket through the http listener, or
    plain TCP streams): each thread keeps one open, sends a numbered line
    every `period` seconds and checks its echo; a session the proxy closes
    is reopened and counted as forced or lost."""

    def __init__(self, port, events, count, ws, period=0.2, stream_bytes=0):
        self.port, self.events, self.ws = port, events, ws
        self.period, self.stream_bytes = period, stream_bytes
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.opened = self.forced = self.lost = self.completed = 0
        self.bytes_sent = self.bytes_lost = 0
        self.errors = []
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(count)]

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(IO_TIMEOUT * 3)

    def _open(self):
        s = socket.create_connection(("127.0.0.1", self.port), IO_TIMEOUT)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(IO_TIMEOUT)
        if self.ws:
            s.sendall(b"GET /ws HTTP/1.1\r\nHost: soak\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                      b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(4096)
                if not chunk:
                    raise ConnectionError("closed before 101")
                head += chunk
            if not head.startswith(b"HTTP/1.1 101"):
                raise ConnectionError(head.split(b"\r\n", 1)[0].decode("latin-1"))
        return s

    def _run(self, index):
        while not self.stop.is_set():
            opened = time.monotonic()
            sent = echoed = 0
            try:
                s = self._open()
            except OSError as e:
                with self.lock:
                    self.lost += 1
                    self.errors.append(f"open: {e}")
                time.sleep(0.1)
                continue
            with self.lock:
                self.opened += 1
            try:
                n = 0
                while not self.stop.is_set():
                    line = f"{index} {n} {'x' * 200}\n".encode()
                    if self.stream_bytes:
                        line = line * max(1, self.stream_bytes // 50 // len(line))
                    s.sendall(line)
                    sent += len(line)
                    got = b""
                    while len(got) < len(line):
                        chunk = s.recv(len(line) - len(got))
                        if not chunk:
                            raise ConnectionError("closed by the proxy")
                        got += chunk
                    if got != line:
                        raise ValueError("echo differs from what was sent")
                    echoed += len(got)
                    n += 1
                    if self.stream_bytes and sent >= self.stream_bytes:
                        break           # a stream ends after its bytes
                    self.stop.wait(self.period)
                s.shutdown(socket.SHUT_WR)
                rest = s.recv(1)
                if rest:
                    raise ValueError("bytes after the last echo")
                with self.lock:
                    self.completed += 1
                    self.bytes_sent += sent
            except (OSError, ValueError) as e:
                closed = time.monotonic()
                with self.lock:
                    self.bytes_sent += sent
                    if self.events.forced(opened, closed):
                        self.forced += 1
                    else:
                        self.lost += 1
                        self.bytes_lost += sent - echoed
                        self.errors.append(f"{e} after {closed - opened:.1f}s")
            finally:
                s.close()


class Udp:
    """Client sockets (sessions) each sending a numbered datagram every
    `period` seconds; replies are matched by number."""

    def __init__(self, port, clients=4, period=0.01):
        self.port, self.period = port, period
        self.socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(clients)]
        for s in self.socks:
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
        self.sent = set()
        self.got = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()

    def _run(self):
        n = 0
        next_send = time.monotonic()
        while True:
            now = time.monotonic()
            if not self.stop.is_set() and now >= next_send:
                s = self.socks[n % len(self.socks)]
                try:
                    s.sendto(b"%d" % n, ("127.0.0.1", self.port))
                    self.sent.add(n)
                except OSError:
                    pass
                n += 1
                next_send = now + self.period
            if self.stop.is_set() and (self.sent <= self.got or now > self.stop_at):
                return
            ready, _, _ = select.select(self.socks, [], [], 0.005)
            for s in ready:
                try:
                    while True:
                        self.got.add(int(s.recv(64)))
                except (BlockingIOError, ValueError):
                    pass
                except OSError:
                    pass

    def finish(self):
        self.stop_at = time.monotonic() + 2.0
        self.stop.set()
        self.thread.join(5)
        for s in self.socks:
            s.close()

    @property
    def lost(self):
        return len(self.sent - self.got)


def wrk(port, seconds, connections=16):
    return subprocess.Popen(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, int(seconds))}s", "--timeout", "5s",
         f"http://127.0.0.1:{port}/"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def parse_wrk(text):
    out = {"requests": 0, "non2xx": 0, "connect": 0, "read": 0, "write": 0, "timeout": 0}
    m = re.search(r"(\d+) requests in", text)
    if m:
        out["requests"] = int(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        out["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out.update(connect=int(m.group(1)), read=int(m.group(2)), write=int(m.group(3)),
                   timeout=int(m.group(4)))
    return out


class Sampler:
    def __init__(self, binaries):
        self.binaries = binaries
        self.peak_procs = 0
        self.peak_mem = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def measure(self):
        pids = processes_of(self.binaries)
        return len(pids), sum(pss_bytes(p) for p in pids)

    def _run(self):
        while not self.stop.wait(0.25):
            n, mem = self.measure()
            self.peak_procs = max(self.peak_procs, n)
            self.peak_mem = max(self.peak_mem, mem)

    def start(self):
        self.thread.start()

    def finish(self):
        self.stop.set()
        self.thread.join(2)


# One run ------------------------------------------------------------------------------

def soak(name, reloads, upgrades, interval, workdir, ws_sessions=8, tcp_streams=2):
    """Runs the soak against one proxy; a dict of figures (or {"error": ...})."""
    settle = SHUTDOWN_TIMEOUT + 15     # longest wait for the old generations to go
    duration = WARMUP + (reloads + upgrades + 1) * interval + settle + 5
    backends = Backends(workdir, duration + SHUTDOWN_TIMEOUT + 120)
    proxy = PROXIES[name](workdir, backends)
    if proxy.error:
        backends.close()
        return {"proxy": name, "error": proxy.error}
    result = {"proxy": name}
    try:
        proxy.start()
        sampler = Sampler(proxy.binaries())
        events = Events()
        ws = Sessions(proxy.http_port, events, ws_sessions, ws=True)
        tcp = Sessions(proxy.tcp_port, events, tcp_streams, ws=False, period=0.02,
                       stream_bytes=4 << 20)
        udp = Udp(proxy.udp_port) if proxy.has_udp else None
        load = wrk(proxy.http_port, duration)
        for c in (ws, tcp, udp):
            if c:
                c.start()
        # memory is compared under the same load at the start and the end
        time.sleep(WARMUP)
        start_procs, start_mem = sampler.measure()
        sampler.start()

        total = reloads + upgrades
        upgrade_at = {round((i + 1) * total / (upgrades + 1)) for i in range(upgrades)}
        done = {"reloads": 0, "in_place": 0, "full": 0, "upgrades": 0, "failed": []}
        r = 0
        for step in range(total):
            t0 = time.monotonic()
            if step in upgrade_at and done["upgrades"] < upgrades:
                events.full.append(t0)
                ok, text = proxy.upgrade()
                done["upgrades"] += ok
            else:
                full = r % 2 == 1           # alternate: in place, full, in place, ...
                if full or name != "lbd":
                    events.full.append(t0)
                ok, text = proxy.reload(full)
                if ok:
                    done["reloads"] += 1
                    in_place = name == "lbd" and "in place" in text
                    done["in_place" if in_place else "full"] += 1
                    if in_place is False and name == "lbd" and not full:
                        events.full.append(t0)      # it fell back to a new generation
                r += 1
            if not ok:
                done["failed"].append(text)
                log(f"{name}: step {step} failed: {text}")
            time.sleep(max(0.0, interval - (time.monotonic() - t0)))

        # the old generations finish their work, then the memory is measured,
        # still under load
        end_by = time.monotonic() + settle
        while time.monotonic() < end_by and sampler.measure()[0] > start_procs:
            time.sleep(0.25)
        time.sleep(1.0)
        end_procs, end_mem = sampler.measure()
        sampler.finish()
        load.send_signal(signal.SIGINT)         # wrk prints its figures and ends
        out, _ = load.communicate(timeout=30)
        for c in (ws, tcp, udp):
            if c:
                c.finish()
        w = parse_wrk(out)
        result.update(
            requests=w["requests"], non2xx=w["non2xx"],
            socket_errors=w["connect"] + w["read"] + w["write"] + w["timeout"],
            socket_errors_detail={k: w[k] for k in ("connect", "read", "write", "timeout")},
            reloads=done["reloads"], in_place=done["in_place"], full=done["full"],
            upgrades=done["upgrades"], failed=done["failed"],
            ws_opened=ws.opened, ws_forced=ws.forced, ws_lost=ws.lost,
            tcp_streams=tcp.opened, tcp_completed=tcp.completed, tcp_forced=tcp.forced,
            tcp_lost=tcp.lost, tcp_bytes=tcp.bytes_sent, tcp_bytes_lost=tcp.bytes_lost,
            udp_sent=len(udp.sent) if udp else None, udp_lost=udp.lost if udp else None,
            procs_start=start_procs, procs_peak=sampler.peak_procs, procs_end=end_procs,
            mem_start=start_mem, mem_peak=sampler.peak_mem, mem_end=end_mem,
            errors=(ws.errors + tcp.errors)[:10])
        if not w["requests"]:
            result["wrk"] = out[-2000:]
    finally:
        proxy.stop()
        backends.close()
    return result


def mb(n):
    return f"{n / 1048576:.1f}" if n else "-"


def table(results):
    rows = [
        ("requests", "requests"), ("non-2xx", "non2xx"), ("socket errors", "socket_errors"),
        ("reloads done", "reloads"), ("  of them in place", "in_place"),
        ("upgrades done", "upgrades"),
        ("websocket sessions", "ws_opened"), ("  closed, forced", "ws_forced"),
        ("  dropped (lost)", "ws_lost"),
        ("tcp streams", "tcp_streams"), ("  completed", "tcp_completed"),
        ("  cut, forced", "tcp_forced"), ("  cut (lost)", "tcp_lost"),
        ("tcp bytes lost", "tcp_bytes_lost"),
        ("udp datagrams", "udp_sent"), ("udp replies lost", "udp_lost"),
        ("processes: start", "procs_start"), ("processes: peak", "procs_peak"),
        ("processes: end", "procs_end"),
        ("memory MB: start", "mem_start"), ("memory MB: peak", "mem_peak"),
        ("memory MB: end", "mem_end"),
    ]
    names = [r["proxy"] for r in results]
    lines = ["| figure | " + " | ".join(names) + " |",
             "| --- |" + " --- |" * len(names)]
    for label, key in rows:
        cells = []
        for r in results:
            if "error" in r:
                cells.append("n/a")
            elif key.startswith("mem_"):
                cells.append(mb(r.get(key)))
            else:
                v = r.get(key)
                cells.append("n/a" if v is None else str(v))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for r in results:
        if "error" in r:
            lines.append(f"\n{r['proxy']}: not run: {r['error']}")
        elif r.get("mem_start"):
            lines.append(f"\n{r['proxy']}: memory at the end is "
                         f"{100.0 * r['mem_end'] / r['mem_start']:.0f}% of the start")
        if r.get("failed"):
            lines.append(f"{r['proxy']}: failed steps: {r['failed'][:5]}")
        if r.get("errors"):
            lines.append(f"{r['proxy']}: first session errors: {r['errors'][:5]}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--proxy", default="lbd,nginx,haproxy")
    ap.add_argument("--reloads", type=int, default=100)
    ap.add_argument("--upgrades", type=int, default=10)
    ap.add_argument("--interval", type=float, default=1.0,
                    help="seconds between two reloads or upgrades")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("soak: wrk is missing (auto/deps installs it)")
    workdir = tempfile.mkdtemp(prefix="lbd-soak-")
    results = []
    try:
        for name in args.proxy.split(","):
            if name not in PROXIES:
                sys.exit(f"soak: unknown proxy {name!r}")
            log(f"{name}: {args.reloads} reloads, {args.upgrades} upgrades, "
                f"one every {args.interval}s")
            results.append(soak(name, args.reloads, args.upgrades, args.interval,
                                os.path.join(workdir, name)))
    finally:
        if os.environ.get("SOAK_KEEP") == "1":
            log(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    lbd = [r for r in results if r["proxy"] == "lbd" and "error" not in r]
    bad = [r for r in lbd if r["non2xx"] or r["socket_errors"] or r["ws_lost"]
           or r["tcp_lost"] or r["tcp_bytes_lost"] or r["udp_lost"] or r["failed"]]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
