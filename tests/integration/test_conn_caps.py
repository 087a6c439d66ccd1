"""max_conns_per_ip on every listener kind, counted by two workers together
(tcp and tls: closed at accept; udp: no new session; http: 429 then close),
slowloris from one address with the cap set while another client is
served, and lbd out of file descriptors: it serves again as connections
free up, without spinning while it cannot accept.

The slowloris test holds 3,000 connections with LBD_SOAK=1 (`make soak`),
1,000 in `make test` and 300 under the sanitizer build; the p99 of the
other client is printed beside its figure without the attack."""

import http.client
import os
import re
import resource
import select
import socket
import subprocess
import time

import pytest

from helpers import IO_TIMEOUT, Backend, echo, sanitizer_build, wait_until
from test_admin import admin

SOAK = os.environ.get("LBD_SOAK") == "1"
SANITIZED = sanitizer_build()


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def connect_from(address, source, timeout=IO_TIMEOUT):
    host, port = address.rsplit(":", 1)
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect((host, int(port)))
    return s


def closed_soon(s, timeout=3.0):
    """Whether the peer closes s (EOF or reset) within timeout."""
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def refused_count(lbd, listener):
    _, _, body = admin(lbd, "GET", "/metrics")
    m = re.search(r'lbd_conns_per_ip_refused_total\{listener="%s"\} (\d+)' % listener, body)
    return int(m.group(1)) if m else None


TCP_CONF = """
workers = 2;
upstreams = { echo = { servers = ( { address = "$backend"; } ); }; };
listeners = ( { name = "t"; protocol = "tcp"; listen = "$listen"; upstream = "echo";
                max_conns_per_ip = 3; } );
"""


def test_tcp_caps_each_address_across_workers(lbd):
    backend = Backend(echo)
    try:
        lbd.start(TCP_CONF, backend=backend)
        held = []
        for _ in range(3):
            s = connect_from(lbd.address, "127.0.0.2")
            s.sendall(b"ping")
            assert s.recv(4) == b"ping"     # served, on either worker
            held.append(s)
        extra = connect_from(lbd.address, "127.0.0.2")
        assert closed_soon(extra), "the fourth connection of 127.0.0.2 was kept"
        extra.close()
        other = connect_from(lbd.address, "127.0.0.3")
        other.sendall(b"pong")
        assert other.recv(4) == b"pong"
        other.close()
        # a place freed is a place again
        held.pop().close()

        def echoed():
            # until lbd has seen the close, a new connection is still one
            # too many (closed, or reset as it sends)
            try:
                with connect_from(lbd.address, "127.0.0.2") as s:
                    s.sendall(b"x")
                    return s.recv(1) == b"x"
            except OSError:
                return False
        wait_until(echoed, 5, what="a freed place")
        assert refused_count(lbd, "t") >= 1
        assert "has max_conns_per_ip (3) connections open" in open(lbd.error_log_path).read()
        for s in held:
            s.close()
    finally:
        backend.stop()


UDP_CONF = """
workers = 2;
upstreams = { echo = { servers = ( { address = "$backend"; } ); }; };
listeners = ( { name = "u"; protocol = "udp"; listen = "$listen"; upstream = "echo";
                max_conns_per_ip = 2; session_timeout = "30s"; } );
"""


def udp_echo_backend():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    return s


def test_udp_caps_sessions_per_address(lbd):
    from test_udp_proxy import start as start_udp
    srv = udp_echo_backend()
    start_udp(lbd, UDP_CONF, backend="127.0.0.1:%d" % srv.getsockname()[1])
    host, port = lbd.address.rsplit(":", 1)
    clients = []
    try:
        for i in range(3):
            c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            c.bind(("127.0.0.2", 0))
            c.settimeout(1.0)
            clients.append(c)
        other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        other.bind(("127.0.0.3", 0))
        other.settimeout(1.0)
        srv.settimeout(0.2)

        def echo_pending():
            while True:
                try:
                    data, peer = srv.recvfrom(2048)
                except socket.timeout:
                    return
                srv.sendto(data, peer)

        answers = []
        for i, c in enumerate(clients + [other]):
            c.sendto(b"hello %d" % i, (host, int(port)))
            time.sleep(0.1)
            echo_pending()
            try:
                answers.append(c.recv(64))
            except socket.timeout:
                answers.append(None)
        assert answers[0] and answers[1], answers
        assert answers[2] is None, "the third session of 127.0.0.2 was opened"
        assert answers[3] == b"hello 3"
        assert refused_count(lbd, "u") >= 1
    finally:
        for c in clients:
            c.close()
        srv.close()


HTTP_CONF = """
workers = 2;
listeners = ( { name = "h"; protocol = "http"; listen = "$listen"; max_conns_per_ip = $cap;
                client_header_timeout = "60s";
                routes = ( { path_prefix = "/"; return = { status = 200; body = "ok\\n"; }; } );
              } );
"""


def test_http_answers_429_then_closes(lbd):
    lbd.start(HTTP_CONF, cap=2)
    held = [connect_from(lbd.address, "127.0.0.2") for _ in range(2)]
    for s in held:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")        # incomplete: they stay
    time.sleep(0.3)
    third = connect_from(lbd.address, "127.0.0.2")
    third.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while True:
        chunk = third.recv(4096)
        if not chunk:
            break
        data += chunk
    assert data.startswith(b"HTTP/1.1 429 "), data
    assert b"Connection: close" in data and b"Retry-After: 1" in data
    third.close()
    host, port = lbd.address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/")
    assert conn.getresponse().status == 200         # 127.0.0.1 is another address
    conn.close()
    for s in held:
        s.close()


def test_a_bad_cap_is_a_load_error(lbd):
    from helpers import lbd_test
    lbd.write_config(HTTP_CONF, cap="-1")
    r = lbd_test(lbd.conf_path)
    assert r.returncode == 1 and "max_conns_per_ip" in r.stdout + r.stderr


def slowloris(address, source, n, deadline):
    """n connections from source that send a request head a byte at a time
    every two seconds until deadline. Returns the sockets still open."""
    socks = []
    for _ in range(n):
        try:
            s = connect_from(address, source)
        except OSError:
            break
        s.setblocking(False)
        try:
            s.send(b"GET / HTTP/1.1\r\n")
        except OSError:
            s.close()
            continue
        socks.append(s)
    return socks


def p99(samples):
    samples = sorted(samples)
    return samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def timed_requests(address, n):
    host, port = address.rsplit(":", 1)
    times = []
    statuses = []
    for _ in range(n):
        t = time.monotonic()
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("GET", "/")
        resp = conn.getresponse()
        resp.read()
        statuses.append(resp.status)
        conn.close()
        times.append(time.monotonic() - t)
    return statuses, times


def test_slowloris_from_one_address_leaves_others_served(lbd):
    n = 3000 if SOAK else 300 if SANITIZED else 1000
    raise_nofile(n + 200)
    lbd.start(HTTP_CONF, cap=50)
    statuses, quiet = timed_requests(lbd.address, 100)
    assert statuses == [200] * 100
    attackers = slowloris(lbd.address, "127.0.0.2", n, time.monotonic() + 60)
    try:
        # keep the survivors trickling a byte each while the other client works
        for s in attackers:
            try:
                s.send(b"X")
            except OSError:
                pass
        statuses, busy = timed_requests(lbd.address, 100)
        assert statuses == [200] * 100
        kept = 0
        for s in attackers:
            try:
                s.send(b"-")
                kept += 1
            except OSError:
                pass
        print(f"\nslowloris: {len(attackers)} connections from one address, "
              f"max_conns_per_ip 50; the other client's p99 {p99(busy) * 1000:.1f} ms under "
              f"attack, {p99(quiet) * 1000:.1f} ms without")
        assert refused_count(lbd, "h") >= len(attackers) - 50 - 5
    finally:
        for s in attackers:
            s.close()


FD_CONF = """
workers = 1;
listeners = ( { name = "h"; protocol = "http"; listen = "$listen";
                client_header_timeout = "60s";
                routes = ( { path_prefix = "/"; return = { status = 200; body = "ok\\n"; }; } );
              } );
"""


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not os.path.exists("/usr/bin/prlimit"), reason="prlimit is missing")
def test_out_of_descriptors_it_backs_off_and_serves_again(lbd):
    """lbd with 128 descriptors and 300 idle clients: the worker runs out,
    pauses its listener instead of spinning, and serves again once the
    idle clients go."""
    raise_nofile(600)
    lbd.start(FD_CONF, wrapper=["/usr/bin/prlimit", "--nofile=128:128"])
    worker = lbd.workers()[0]
    idle = []
    for _ in range(300):
        try:
            idle.append(connect_from(lbd.address, "127.0.0.2", timeout=2))
        except OSError:
            break
    time.sleep(1.0)
    t0, c0 = time.monotonic(), cpu_seconds(worker)
    time.sleep(2.0)
    share = (cpu_seconds(worker) - c0) / (time.monotonic() - t0)
    print(f"\nout of descriptors: the worker used {100 * share:.1f}% of a core while it "
          f"could not accept")
    assert share < 0.2, "the worker spins while it cannot accept"
    assert "accept4() failed" in open(lbd.error_log_path).read()
    for s in idle:
        s.close()
    host, port = lbd.address.rsplit(":", 1)

    def served():
        try:
            conn = http.client.HTTPConnection(host, int(port), timeout=2)
            conn.request("GET", "/")
            ok = conn.getresponse().status == 200
            conn.close()
            return ok
        except OSError:
            return False
    wait_until(served, 15, what="lbd to serve again")


PROXY_CONF = """
workers = 2;
upstreams = { echo = { servers = ( { address = "$backend"; } ); }; };
listeners = ( { name = "p"; protocol = "tcp"; listen = "$listen"; upstream = "echo";
                accept_proxy_protocol = true; max_conns_per_ip = 1; } );
"""


def test_behind_a_proxy_the_header_names_the_address_counted(lbd):
    backend = Backend(echo)
    try:
        lbd.start(PROXY_CONF, backend=backend)

        def via(client):
            s = connect_from(lbd.address, "127.0.0.1")
            s.sendall(f"PROXY TCP4 {client} 127.0.0.1 4000 80\r\n".encode() + b"hi")
            return s

        a = via("192.0.2.1")
        assert a.recv(2) == b"hi"
        b = via("192.0.2.2")                # another client, same peer: its own count
        assert b.recv(2) == b"hi"
        again = via("192.0.2.1")
        assert closed_soon(again), "a second connection of 192.0.2.1 was kept"
        for s in (a, b, again):
            s.close()
    finally:
        backend.stop()
