"""Helpers for lbd's integration tests: free ports, an `Lbd` that runs the
real binary on a config string and always cleans up by pid, backend servers
in threads, and bounded client loops. Everything here waits by polling with
a deadline; nothing can block a test for longer than its own timeout."""

import hashlib
import http.client
import os
import random
import resource
import re
import signal
import socket
import string
import struct
import subprocess
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
LBD = os.environ.get("LBD") or os.path.join(ROOT, "objs", "lbd")
LBCTL = os.environ.get("LBCTL") or os.path.join(ROOT, "objs", "lbctl")

IO_TIMEOUT = 10.0           # no single socket operation may block longer
# the start of an error log line (SPEC §7): TIME [LEVEL] PID#TID: message
LOG_PREFIX = r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[%s\] \d+#\d+: "
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:")


# Ports ------------------------------------------------------------------

def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = f.read().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


_port_lock = threading.Lock()
_next_port = None


def free_port():
    """A 127.0.0.1 TCP port nobody listens on, never handed out twice in
    this process. Ports come from below the kernel's ephemeral range, so an
    outgoing connection (lbd's to its backends) cannot take one between
    the moment we pick it and the moment lbd binds it."""
    global _next_port
    lo_eph, _ = _ephemeral_range()
    first, last = 20000, max(20100, lo_eph - 1)
    with _port_lock:
        if _next_port is None:
            _next_port = first + (os.getpid() * 131) % (last - first)
        for _ in range(last - first):
            port = _next_port
            _next_port = first if _next_port >= last else _next_port + 1
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def listening_sockets(port):
    """How many sockets are in LISTEN state on 127.0.0.1:port (or *:port)."""
    n = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            addr, state = fields[1], fields[3]
            host, p = addr.split(":")
            if state == "0A" and int(p, 16) == port and host in ("0100007F", "00000000"):
                n += 1
    return n


# Processes -----------------------------------------------------------------

def proc_stat(pid):
    """(ppid, starttime) of a live process, or None when it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[1]), int(fields[19])


def children(ppid):
    """Live child processes of ppid, sorted."""
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st and st[0] == ppid:
                pids.append(int(name))
    return sorted(pids)


def proc_name(pid):
    """A process's name (/proc/PID/comm): "lbd" for lbd's master and
    workers, the helper's name for a helper ("health prober"); "" when it
    is gone."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def processes_with_arg(arg):
    """Live pids whose command line holds arg (e.g. a config path)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or not alive(int(name)):
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if str(arg).encode() in argv:
            found.append(int(name))
    return sorted(found)


# Descriptor pressure: a real EMFILE in a running worker ---------------------

def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def settle(pid, base):
    """Waits until the worker holds `base` descriptors again (the sessions
    of earlier clients closed)."""
    wait_until(lambda: open_fds(pid) == base, 5, what=f"{base} open descriptors")


def squeeze(pid, free):
    """Lowers the running worker's RLIMIT_NOFILE so that exactly `free`
    more descriptors can be opened (new ones take the lowest free numbers
    below the limit). Returns the old limits, for unsqueeze."""
    used = {int(x) for x in os.listdir(f"/proc/{pid}/fd")}
    limit, room = 0, 0
    while room < free or limit in used:
        if limit not in used:
            room += 1
        limit += 1
    old = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, old[1]))
    return old


def unsqueeze(pid, old):
    resource.prlimit(pid, resource.RLIMIT_NOFILE, old)


def alive(pid):
    return proc_stat(pid) is not None


def wait_until(predicate, timeout, interval=0.02, what="condition"):
    """Polls predicate until it returns a true value (returned) or timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def sanitizer_build():
    """Whether LBD was built with ./configure --with-sanitizers (tests that
    move a lot run smaller there)."""
    try:
        out = subprocess.run([LBD, "-V"], capture_output=True, text=True, timeout=10)
    except OSError:
        return False
    return "--with-sanitizers" in out.stdout + out.stderr


def run(argv, timeout=30, **kw):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=timeout, **kw)


def lbd_test(conf, prefix=None, **kw):
    """`lbd -t -c conf`: CompletedProcess with returncode, stdout, stderr."""
    prefix = prefix or os.path.dirname(str(conf))
    return run([LBD, "-t", "-p", prefix, "-c", conf], **kw)


def lbctl(conf, *args, prefix=None, timeout=60):
    prefix = prefix or os.path.dirname(str(conf))
    return run([LBCTL, "-c", conf, "-p", prefix] + list(args), timeout=timeout)


def log_line(level, message_regex):
    """A regex for one whole error log line."""
    return LOG_PREFIX % level + message_regex + "$"


def sanitizer_reports(text):
    return [line for line in text.splitlines() if any(m in line for m in SANITIZER_MARKERS)]


# Deterministic data ----------------------------------------------------------

def pattern(nbytes, seed=1, chunk=1 << 20):
    """nbytes of pseudo-random data, the same for the same seed, in chunks."""
    rng = random.Random(seed)
    left = nbytes
    while left > 0:
        n = min(chunk, left)
        yield rng.randbytes(n)
        left -= n


def pattern_digest(nbytes, seed=1):
    h = hashlib.sha256()
    for block in pattern(nbytes, seed):
        h.update(block)
    return h.hexdigest()


def send_pattern(sock, nbytes, seed=1):
    for block in pattern(nbytes, seed):
        sock.sendall(block)


def recv_digest(sock, limit=1 << 31, prefix=b"", progress=None):
    """Reads until EOF; returns (byte count, sha256 hex) of prefix and what
    was read. progress(count), if given, is called after every read."""
    h = hashlib.sha256(prefix)
    count = len(prefix)
    while count <= limit:
        data = sock.recv(1 << 18)
        if not data:
            break
        h.update(data)
        count += len(data)
        if progress:
            progress(count)
    return count, h.hexdigest()


def recv_all(sock, limit=1 << 24):
    chunks, count = [], 0
    while count <= limit:
        data = sock.recv(65536)
        if not data:
            break
        chunks.append(data)
        count += len(data)
    return b"".join(chunks)


def recv_line(sock, limit=4096):
    data = b""
    while not data.endswith(b"\n") and len(data) < limit:
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def connect(address, timeout=IO_TIMEOUT):
    host, port = address.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=timeout)


def reset(sock):
    """Closes sock with a TCP RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def closed_by_peer(sock, timeout=3.0):
    """True when the peer closes (EOF or reset) within timeout without
    sending anything."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


# Backends ------------------------------------------------------------------

class Backend:
    """A TCP server on 127.0.0.1 served by threads: `handler(conn, backend)`
    runs for each connection. It counts connections (accepted, open now,
    most open at once) and keeps what handlers record()."""

    def __init__(self, handler, name="backend", port=None):
        self.handler = handler
        self.name = name
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.accepted = 0
        self.active = 0
        self.max_active = 0
        self.records = []
        self._lock = threading.Lock()
        self._conns = set()
        self._threads = []
        self._stopping = threading.Event()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # accepted sockets inherit it: a handler's head and body, written
        # in two sends, go at once rather than the second waiting for the
        # first's delayed ACK (40 ms, most of what a keep-alive request
        # through lbd cost the tests)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.bind(("127.0.0.1", self.port))
        self._sock.listen(512)
        self._sock.settimeout(0.05)
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True,
                                          name=f"{name}-accept")
        self._acceptor.start()

    def __repr__(self):
        return f"<Backend {self.name} {self.address}>"

    def record(self, value):
        with self._lock:
            self.records.append(value)

    def wait_records(self, n, timeout=10):
        wait_until(lambda: len(self.records) >= n, timeout, what=f"{n} records on {self}")
        return list(self.records)

    def _accept_loop(self):
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            conn.settimeout(IO_TIMEOUT)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True,
                                 name=f"{self.name}-conn")
            with self._lock:
                self.accepted += 1
                self.active += 1
                self.max_active = max(self.max_active, self.active)
                self._conns.add(conn)
                self._threads = [x for x in self._threads if x.is_alive()] + [t]
            t.start()
        self._sock.close()

    def _serve(self, conn):
        try:
            self.handler(conn, self)
        except OSError:
            pass
        finally:
            with self._lock:
                self.active -= 1
                self._conns.discard(conn)
            conn.close()

    def stop(self):
        """Closes the port (connects are refused from now on) and every open
        connection."""
        self._stopping.set()
        self._acceptor.join(5)
        with self._lock:
            conns, threads = list(self._conns), list(self._threads)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in threads:
            t.join(5)


def echo(conn, backend):
    """Sends back everything it reads; half-closes after the client does."""
    while True:
        data = conn.recv(1 << 18)
        if not data:
            break
        conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)


def sink(conn, backend):
    """Reads to EOF, records (count, sha256) and answers "COUNT SHA256\\n"."""
    count, digest = recv_digest(conn)
    backend.record((count, digest))
    conn.sendall(f"{count} {digest}\n".encode())


def source(nbytes, seed=1):
    """Sends nbytes of pattern(seed), half-closes, waits for the client's EOF."""
    def handler(conn, backend):
        send_pattern(conn, nbytes, seed)
        conn.shutdown(socket.SHUT_WR)
        recv_all(conn)
    return handler


def slow_source(chunks, chunk_size, delay, seed=1):
    """Like source(), but one chunk every `delay` seconds."""
    def handler(conn, backend):
        for i, block in enumerate(pattern(chunks * chunk_size, seed, chunk=chunk_size)):
            if i:
                time.sleep(delay)
            conn.sendall(block)
        conn.shutdown(socket.SHUT_WR)
        recv_all(conn)
    return handler


def named(conn, backend):
    """Sends its own name and a newline, then holds the connection until
    the client closes it."""
    conn.sendall(backend.name.encode() + b"\n")
    recv_all(conn)


def watcher(conn, backend):
    """Reads until the client side ends; records how: "eof" or "reset"."""
    try:
        recv_all(conn)
        backend.record("eof")
    except ConnectionResetError:
        backend.record("reset")


def reply_after_eof(nbytes, seed=2):
    """Reads to EOF and records (count, sha256), then sends nbytes of
    pattern(seed): a reply that only starts once the client half-closed."""
    def handler(conn, backend):
        backend.record(recv_digest(conn))
        send_pattern(conn, nbytes, seed)
    return handler


def half_close_first(nbytes, seed=3):
    """Sends nbytes of pattern(seed) and half-closes at once, then reads to
    EOF and records (count, sha256) of what the client sent afterwards."""
    def handler(conn, backend):
        send_pattern(conn, nbytes, seed)
        conn.shutdown(socket.SHUT_WR)
        backend.record(recv_digest(conn))
    return handler


# Clients -------------------------------------------------------------------

def ask_name(address, timeout=5.0):
    """Connects, returns the name a `named` backend sends, closes."""
    with connect(address, timeout) as s:
        line = recv_line(s)
    if not line.endswith(b"\n"):
        raise ConnectionError(f"connection closed before a name arrived (got {line!r})")
    return line.decode().strip()


def echo_roundtrip(address, payload, timeout=5.0):
    """One short connection through an echo backend; raises unless the echo
    comes back whole, then EOF."""
    with connect(address, timeout) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        got = recv_all(s, len(payload) + 1)
    if got != payload:
        raise ConnectionError(f"echo returned {len(got)} of {len(payload)} bytes")


class Attempt:
    __slots__ = ("start", "end", "error", "value")

    def __init__(self, start, end, error, value):
        self.start, self.end, self.error, self.value = start, end, error, value

    def __repr__(self):
        return f"<Attempt {self.start:.3f}-{self.end:.3f} {self.error or self.value}>"

    @property
    def refused(self):
        return isinstance(self.error, ConnectionRefusedError)


class Load:
    """`threads` client threads, each opening sequential connections with
    `action(address)` until `duration` seconds or `max_per_thread`
    connections have passed. Every connection's outcome is kept in
    `attempts` (times are time.monotonic())."""

    def __init__(self, address, threads=1, duration=3.0, max_per_thread=20000,
                 action=None):
        self.address = address
        self.duration = duration
        self.max_per_thread = max_per_thread
        self.action = action or (lambda a: echo_roundtrip(a, b"ping " * 20))
        self.attempts = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, daemon=True)
                         for _ in range(threads)]

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        self.deadline = time.monotonic() + self.duration
        for t in self._threads:
            t.start()

    def _loop(self):
        for _ in range(self.max_per_thread):
            if self._stop.is_set() or time.monotonic() >= self.deadline:
                return
            start = time.monotonic()
            error = value = None
            try:
                value = self.action(self.address)
            except Exception as e:      # every failure is a result here
                error = e
            with self._lock:
                self.attempts.append(Attempt(start, time.monotonic(), error, value))

    def wait(self):
        for t in self._threads:
            t.join(self.duration + 2 * IO_TIMEOUT)
        return self

    def stop(self):
        self._stop.set()
        return self.wait()

    @property
    def failures(self):
        return [a for a in self.attempts if a.error is not None]

    def started_after(self, t):
        return [a for a in self.attempts if a.start >= t]


# lbd -------------------------------------------------------------------------

class Lbd:
    """lbd run from a config string in its own directory.

    config() fills in what a test does not set itself (workers, pid_file,
    error_log, admin_socket, log_level, shutdown_timeout) and substitutes $listen (this
    instance's first port), $dir and keyword arguments with string.Template.
    cleanup() always ends the master and every worker it ever saw, by pid."""

    DEFAULTS = (
        ("workers", "2"),
        ("pid_file", '"$dir/lbd.pid"'),
        ("error_log", '"$dir/error.log"'),
        ("admin_socket", '"$dir/admin.sock"'),
        ("log_level", '"info"'),
        ("shutdown_timeout", '"10s"'),
    )

    def __init__(self, directory):
        self.dir = str(directory)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.conf_path = os.path.join(self.dir, "lbd.conf")
        self.pid_file = os.path.join(self.dir, "lbd.pid")
        self.error_log_path = os.path.join(self.dir, "error.log")
        self.stderr_path = os.path.join(self.dir, "lbd.stderr")
        self.proc = None
        self.master_pid = None
        self.nworkers = None
        self.exit_code = None
        self._reaper = None
        self._seen = {}             # pid -> starttime of every lbd process seen

    # configuration

    def config(self, body, **subst):
        header = []
        for key, value in self.DEFAULTS:
            if not re.search(rf"^\s*{key}\s*=", body, re.M):
                header.append(f"{key} = {value};")
        text = "\n".join(header) + "\n" + body.strip("\n") + "\n"
        values = {"listen": self.address, "dir": self.dir}
        values.update({k: getattr(v, "address", v) for k, v in subst.items()})
        return string.Template(text).substitute(values)

    def write_config(self, body, path=None, **subst):
        path = path or self.conf_path
        text = self.config(body, **subst)
        with open(path, "w") as f:
            f.write(text)
        m = re.search(r"^\s*workers\s*=\s*(\d+)", text, re.M)
        if path == self.conf_path:
            self.nworkers = int(m.group(1)) if m else os.cpu_count()
        return path

    def line_of(self, needle, path=None):
        """1-based number of the first line of the config holding needle."""
        with open(path or self.conf_path) as f:
            for n, line in enumerate(f, 1):
                if needle in line:
                    return n
        raise AssertionError(f"{needle!r} is not in the config")

    # running

    def start(self, body=None, foreground=True, wait=True, ports=None, wrapper=(), **subst):
        """wrapper: a command that execs lbd in its own process (prlimit)."""
        if body is not None:
            self.write_config(body, **subst)
        argv = [LBD, "-p", self.dir + "/", "-c", self.conf_path]
        if foreground:
            argv.insert(1, "-f")
        argv = list(wrapper) + argv
        self.started_at = time.monotonic()
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err)
        if foreground:
            self.master_pid = self.proc.pid
        else:
            self.proc.wait(IO_TIMEOUT)
            if self.proc.returncode != 0:
                return self
            # the pid file first names the process that forked the daemon
            self.master_pid = wait_until(
                lambda: (lambda p: p if p and p != self.proc.pid and alive(p) else 0)(
                    self._read_pid_file()), 10, what="the daemon's pid in the pid file")
        self._remember(self.master_pid)
        self._reaper = threading.Thread(target=self._reap, args=(self.master_pid,),
                                        daemon=True)
        self._reaper.start()
        if wait:
            self.wait_ready(ports)
        return self

    def _reap(self, pid):
        """Collects the master's exit status as soon as it exits, so that
        nobody (lbctl stop included) mistakes its zombie for a live lbd. A
        daemon is our child too when we are a subreaper (see conftest.py)."""
        try:
            _, status = os.waitpid(pid, 0)
            self.exit_code = os.waitstatus_to_exitcode(status)
            if self.proc.pid == pid:
                self.proc.returncode = self.exit_code
        except ChildProcessError:
            pass

    def follow(self, pid):
        """After a binary upgrade: pid is the master from now on (cleanup
        ends it and every process it is seen with)."""
        self._remember(pid)
        self.master_pid = pid
        for child in children(pid):
            self._remember(child)
        self._reaper = threading.Thread(target=self._reap, args=(pid,), daemon=True)
        self._reaper.start()

    def _read_pid_file(self):
        try:
            with open(self.pid_file) as f:
                return int(f.read().strip() or 0)
        except (OSError, ValueError):
            return 0

    def _remember(self, pid):
        st = proc_stat(pid)
        if st:
            self._seen.setdefault(pid, st[1])

    def running(self):
        return self.master_pid is not None and alive(self.master_pid)

    def wait_ready(self, ports=None, timeout=15):
        """Until every listen port has one listening socket per worker slot
        and the master has all its workers. The kernel queues connections
        on those sockets, so from here on a client is never refused."""
        ports = ports or [self.port]

        def ready():
            if not self.running():
                raise AssertionError(f"lbd exited: {self.stderr()}")
            return (all(listening_sockets(p) >= self.nworkers for p in ports)
                    and len(self.workers()) >= self.nworkers)
        wait_until(ready, timeout, what=f"lbd to listen on {ports}")

    def workers(self):
        """Live worker pids (children of the master, helpers aside)."""
        return [pid for pid in self._children() if proc_name(pid) == "lbd"]

    def helpers(self, name=None):
        """Live helper process pids (children of the master that are not
        workers), or those of the helper called name."""
        return [pid for pid in self._children()
                if proc_name(pid) not in ("lbd", "") and name in (None, proc_name(pid))]

    def wait_helpers(self, name, n=1, timeout=10):
        """The pids of the n helpers called name, once they are all there:
        the master forks helpers just after the workers, so a slow (sanitizer)
        build may already answer on a listener before the last fork."""
        return wait_until(lambda: (lambda h: h if len(h) == n else None)(self.helpers(name)),
                          timeout, what=f"{n} {name}")

    def _children(self):
        pids = children(self.master_pid) if self.master_pid else []
        for pid in pids:
            self._remember(pid)
        return pids

    def wait_workers(self, predicate, timeout=10, what="workers"):
        return wait_until(lambda: (lambda w: w if predicate(w) else None)(self.workers()),
                          timeout, what=what)

    def signal(self, signo):
        os.kill(self.master_pid, signo)

    def wait_exit(self, timeout=15):
        """Waits for the master to exit; its exit code (None when it was not
        our child)."""
        if self._reaper is None:
            return self.proc.wait(timeout)
        self._reaper.join(timeout)
        if self._reaper.is_alive():
            raise AssertionError(f"lbd (pid {self.master_pid}) still runs after {timeout}s")
        wait_until(lambda: not alive(self.master_pid), timeout, what="lbd to exit")
        return self.exit_code

    def lbctl(self, *args, timeout=60):
        return lbctl(self.conf_path, *args, prefix=self.dir + "/", timeout=timeout)

    def reload(self, body=None, **subst):
        """Writes the new config (if given), runs `lbctl reload`."""
        if body is not None:
            self.write_config(body, **subst)
        return self.lbctl("reload")

    # logs

    def error_log(self, path=None):
        try:
            with open(path or self.error_log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stderr(self):
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_log(self, regex, timeout=5, path=None):
        """Waits for a line of the error log to match regex; the match."""
        return wait_until(lambda: re.search(regex, self.error_log(path), re.M), timeout,
                          what=f"{regex!r} in the error log")

    def sanitizer_reports(self):
        text = self.stderr()
        for name in sorted(os.listdir(self.dir)):
            if name.startswith("error") or name.endswith(".log"):
                text += self.error_log(os.path.join(self.dir, name))
        return sanitizer_reports(text)

    # cleanup

    def _ours(self, pid):
        st = proc_stat(pid)
        return st is not None and self._seen.get(pid) == st[1]

    def cleanup(self):
        """TERM to the master; after 5s, KILL to it and to every worker seen."""
        master = self.master_pid
        if master and self._ours(master):
            self.workers()
            try:
                os.kill(master, signal.SIGTERM)
                self.wait_exit(5)
            except ProcessLookupError:
                pass
            except (AssertionError, subprocess.TimeoutExpired):
                try:
                    os.kill(master, signal.SIGSTOP)     # no new workers from here on
                    self.workers()
                    os.kill(master, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for pid in self._seen:
            if self._ours(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self._reaper is not None:
            self._reaper.join(5)
        if self.proc is not None and self.proc.returncode is None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for pid in self._seen:
            # orphaned workers are our children when we are a subreaper
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            try:
                wait_until(lambda: not self._ours(pid), 5, what=f"pid {pid} to end")
            except AssertionError:
                pass


class UnixHTTPConnection(http.client.HTTPConnection):
    """An http.client connection over a unix socket (the admin socket)."""

    def __init__(self, path, timeout=10):
        super().__init__("lbd", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def http_get(address, path="/", timeout=10):
    """One GET on a connection of its own (http.client): (status, body)."""
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()
