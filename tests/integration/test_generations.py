"""Reload generations (SPEC §6): max_old_generations closes the oldest
generations still draining, /status and /metrics count the draining
workers and their memory, and a worker that drains answers a request that
reaches it on a keep-alive connection with Connection: close, never with
a reset."""

import os
import re
import signal
import socket
import time

import pytest

import helpers
from helpers import log_line, wait_until
from http_backend import RecordingBackend
from test_admin import admin, admin_json

TCP = """
workers = 1;
shutdown_timeout = "60s";
$cap
upstreams = { web = { servers = ( { address = "$server"; } ); }; };
listeners = ( { protocol = "tcp"; listen = "$listen"; upstream = "web"; } );
"""

HTTP = """
workers = 1;
shutdown_timeout = "60s";
upstreams = { web = { servers = ( { address = "$server"; } ); }; };
listeners = ( { protocol = "http"; listen = "$listen"; routes = ( { upstream = "web"; } ); } );
"""


def held(address):
    """A connection through lbd to the echo backend, proven live."""
    s = helpers.connect(address)
    s.sendall(b"ping")
    assert _recv_n(s, 4) == b"ping"
    return s


def _recv_n(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def still_echoes(s):
    try:
        s.sendall(b"ping")
        return _recv_n(s, 4) == b"ping"
    except OSError:
        return False


def new_worker(lbd, seen):
    """The worker of the generation just started (workers = 1)."""
    pid = wait_until(lambda: next((p for p in lbd.workers() if p not in seen), None), 10,
                     what="the new generation's worker")
    seen.add(pid)
    return pid


def reload_holding(lbd, conf, server, cap, n):
    """Starts lbd, then per generation holds a connection on its worker and
    reloads, n times: [(worker pid, held socket)] by generation."""
    lbd.start(conf, server=server, cap=cap)
    seen = set()
    gens = []
    for g in range(n + 1):
        pid = new_worker(lbd, seen)
        gens.append((pid, held(lbd.address)))
        if g < n:
            out = lbd.reload(conf, server=server, cap=cap)
            assert out.returncode == 0, out.stderr
    return gens


def test_past_max_old_generations_the_oldest_are_closed(lbd, backend):
    server = backend(helpers.echo)
    gens = reload_holding(lbd, TCP, server, "max_old_generations = 2;", 4)
    try:
        # generation 4 serves; 2 and 3 drain; 0 and 1 were closed early
        for g in (0, 1):
            assert helpers.closed_by_peer(gens[g][1], timeout=5), lbd.error_log()
            wait_until(lambda: not helpers.alive(gens[g][0]), 6,
                       what=f"generation {g}'s worker to exit")
        for g in (2, 3, 4):
            assert helpers.alive(gens[g][0]), g
            assert still_echoes(gens[g][1]), g
        lbd.wait_log(log_line("warn", "generation 0 closed early: 3 generations were "
                                      "draining, max_old_generations = 2"))
        lbd.wait_log(log_line("warn", "generation 1 closed early: 3 generations were "
                                      "draining, max_old_generations = 2"))
        assert "generation 2 closed early" not in lbd.error_log()
    finally:
        for _, s in gens:
            s.close()


def test_max_old_generations_0_closes_the_old_generation_at_reload(lbd, backend):
    server = backend(helpers.echo)
    gens = reload_holding(lbd, TCP, server, "max_old_generations = 0;", 1)
    try:
        assert helpers.closed_by_peer(gens[0][1], timeout=5)
        wait_until(lambda: not helpers.alive(gens[0][0]), 6, what="the old worker to exit")
        assert still_echoes(gens[1][1])
        lbd.wait_log(log_line("warn", "generation 0 closed early: 1 generations were "
                                      "draining, max_old_generations = 0"))
    finally:
        for _, s in gens:
            s.close()


def test_max_old_generations_is_checked(lbd):
    path = lbd.write_config(TCP, path=os.path.join(lbd.dir, "bad.conf"), server="127.0.0.1:1",
                            cap="max_old_generations = -1;")
    out = helpers.lbd_test(path)
    assert out.returncode == 1
    assert "max_old_generations" in out.stderr


def metric(text, name):
    m = re.search(rf"^{name} (\d+)$", text, re.M)
    assert m, name
    return int(m.group(1))


def test_status_and_metrics_count_the_draining_workers(lbd, backend):
    server = backend(helpers.echo)
    gens = reload_holding(lbd, TCP, server, "", 2)
    try:
        lbd.wait_helpers("admin server")
        status, body = admin_json(lbd, "GET", "/status")
        assert status == 200
        d = body["draining"]
        assert (d["generations"], d["workers"]) == (2, 2)
        assert d["memory_bytes"] > 0
        status, _, text = admin(lbd, "GET", "/metrics")
        assert status == 200
        assert metric(text, "lbd_draining_generations") == 2
        assert metric(text, "lbd_draining_workers") == 2
        assert metric(text, "lbd_draining_workers_memory_bytes") > 0
        out = lbd.lbctl("status")
        assert re.search(r"^draining: +2 generations, 2 workers, [1-9]\d* bytes$",
                         out.stdout, re.M), out.stdout

        gens[0][1].close()
        wait_until(lambda: not helpers.alive(gens[0][0]), 10, what="generation 0 to end")
        wait_until(lambda: admin_json(lbd, "GET", "/status")[1]["draining"]["workers"] == 1,
                   5, what="one draining worker")
        gens[1][1].close()
        wait_until(lambda: admin_json(lbd, "GET", "/status")[1]["draining"]
                   == {"generations": 0, "workers": 0, "memory_bytes": 0}, 10,
                   what="nothing draining")
        text = admin(lbd, "GET", "/metrics")[2]
        assert metric(text, "lbd_draining_generations") == 0
        assert metric(text, "lbd_draining_workers") == 0
        assert metric(text, "lbd_draining_workers_memory_bytes") == 0
    finally:
        for _, s in gens:
            s.close()


# Keep-alive connections of a draining worker --------------------------------

REQUEST = b"GET /%d HTTP/1.1\r\nHost: lbd\r\n\r\n"


def read_response(s, timeout=10):
    """(head text, body bytes) of one response with Content-Length."""
    s.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise EOFError(data)
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    n = int(re.search(rb"(?im)^content-length: *(\d+)", head).group(1))
    while len(body) < n:
        chunk = s.recv(65536)
        if not chunk:
            raise EOFError(data)
        body += chunk
    return head.decode(), body


def clean_eof(s, timeout=5):
    """True when the peer ends the stream with a FIN; a reset raises."""
    s.settimeout(timeout)
    return s.recv(1) == b""


@pytest.fixture
def http_server():
    with RecordingBackend(name="web") as b:
        yield b


def test_an_idle_keep_alive_connection_ends_cleanly_on_reload(lbd, http_server):
    lbd.start(HTTP, server=http_server)
    with helpers.connect(lbd.address) as s:
        s.sendall(REQUEST % 1)
        head, body = read_response(s)
        assert body == b"web\n" and "Connection: close" not in head
        assert lbd.reload(HTTP, server=http_server).returncode == 0
        # closed by the draining worker, with a FIN: the client sees the end
        # of the stream before it sends anything more, so nothing is lost
        assert clean_eof(s)


def test_a_request_waiting_unread_when_the_worker_drains_is_answered(lbd, http_server):
    lbd.start(HTTP, server=http_server)
    with helpers.connect(lbd.address) as s:
        s.sendall(REQUEST % 1)
        read_response(s)
        [old] = lbd.workers()
        # the old worker is made to see the request and QUIT in the same turn:
        # stopped, it neither reads the bytes nor takes the signal until CONT
        os.kill(old, signal.SIGSTOP)
        try:
            s.sendall(REQUEST % 2)
            lbd.signal(signal.SIGHUP)
            lbd.wait_log(log_line("notice", "reload done: generation 1, 1 workers"))
        finally:
            os.kill(old, signal.SIGCONT)
        # answered whole, then a FIN, never a reset of the unread request:
        # with Connection: close when the worker takes the QUIT first (the
        # usual order), without when it read the request first and closed
        # the connection once idle
        head, body = read_response(s)
        assert head.startswith("HTTP/1.1 200") and body == b"web\n"
        assert clean_eof(s)
    assert [r.target for r in http_server.wait_requests(2)] == ["/1", "/2"]
    wait_until(lambda: not helpers.alive(old), 10, what="the old worker to exit")


def test_a_request_begun_before_the_reload_is_answered_with_connection_close(lbd, http_server):
    lbd.start(HTTP, server=http_server)
    with helpers.connect(lbd.address) as s:
        s.sendall(REQUEST % 1)
        read_response(s)
        whole = REQUEST % 2
        s.sendall(whole[:10])
        time.sleep(0.1)
        assert lbd.reload(HTTP, server=http_server).returncode == 0
        s.sendall(whole[10:])
        head, body = read_response(s)
        assert head.startswith("HTTP/1.1 200") and body == b"web\n"
        assert "\r\nConnection: close" in head
        assert clean_eof(s)


def test_a_pipelined_request_behind_a_slow_one_meets_connection_close(lbd):
    with RecordingBackend(name="slow", delay=1.0) as server:
        lbd.start(HTTP, server=server)
        with helpers.connect(lbd.address) as s:
            s.sendall(REQUEST % 1)
            server.wait_requests(1)
            assert lbd.reload(HTTP, server=server).returncode == 0
            s.sendall(REQUEST % 2)
            head, body = read_response(s)
            assert head.startswith("HTTP/1.1 200") and body == b"slow\n"
            assert "\r\nConnection: close" in head
            # the second request is not answered: the client must send it again
            assert clean_eof(s)
