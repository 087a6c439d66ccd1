"""Errors that repeat once per event are rate-limited in the error log
(one line per cause, second and worker, with the count held back), and
resource shortages do not damage what lbd writes or serves: a full disk
under the access log leaves only whole lines, and running out of
descriptors is a local error, never a failed server."""

import collections
import json
import os
import re
import subprocess
import socket
import threading
import time

import pytest

import helpers
from http_backend import RecordingBackends
from helpers import connect, open_fds, settle, squeeze, unsqueeze, wait_until

# TIME [LEVEL] PID#TID: message
LOG_LINE = re.compile(r"^(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) \[(\w+)\] (\d+)#\d+: (.*)$")


def log_lines(lbd, needle):
    """(time, pid, message) of the error log lines holding needle."""
    found = []
    for line in lbd.error_log().splitlines():
        m = LOG_LINE.match(line)
        assert m, f"a line of the error log is not whole: {line!r}"
        if needle in m.group(4):
            found.append((m.group(1), m.group(3), m.group(4)))
    return found


def assert_rate_limited(found, seconds, what):
    """At most one line per worker and second (two across a second's edge)
    for each cause, over a run of `seconds`."""
    per_pid = collections.Counter(pid for _, pid, _ in found)
    for pid, n in per_pid.items():
        assert n <= seconds + 2, f"{n} lines of {what} from pid {pid} in {seconds:.1f}s"
    per_second = collections.Counter((t, pid) for t, pid, _ in found)
    assert max(per_second.values(), default=0) <= 1, per_second


def http_get_keepalive(sock, path="/ok"):
    """One GET on an open connection; the status code."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split()[1])


# A full disk under the access log ---------------------------------------------

ACCESS = """
workers = 2;
listeners = ( { protocol = "http"; listen = "$listen"; name = "web";
  keepalive_requests = 1000000;
  access_log = { path = "$logdir/access.log"; format = "json"; };
  routes = ( { path = "/ok"; return = { status = 200; body = "ok\\n"; }; } );
} );
"""


@pytest.fixture
def tiny_fs(tmp_path):
    """A 100 KiB tmpfs, unmounted at teardown; skips when it cannot be
    mounted. One worker's 64 KiB buffer fits, the second write is cut short."""
    d = tmp_path / "tiny"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=100k", "tmpfs", str(d)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    try:
        yield str(d)
    finally:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def test_full_disk_leaves_whole_lines_and_few_error_lines(lbd, tiny_fs):
    lbd.start(ACCESS, logdir=tiny_fs)
    path = os.path.join(tiny_fs, "access.log")
    stop = time.monotonic() + 4.0
    answered = collections.Counter()

    def client():
        with connect(lbd.address) as s:
            while time.monotonic() < stop:
                answered[http_get_keepalive(s)] += 1

    threads = [threading.Thread(target=client) for _ in range(4)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started + 1.5
    time.sleep(1.5)                         # the flush timer's last turn

    assert set(answered) == {200} and sum(answered.values()) > 2000, answered
    # the file is full, and holds only whole, parseable lines
    with open(path, "rb") as f:
        data = f.read()
    assert len(data) > 64 * 1024           # more than one whole buffer: a short write was cut
    assert data.endswith(b"\n")
    for line in data.split(b"\n")[:-1]:
        assert json.loads(line)["status"] == 200

    failed = log_lines(lbd, 'cannot write the access log')
    dropped = log_lines(lbd, 'cannot be written and its buffer is full; a line is dropped')
    assert failed and dropped
    assert all("(28: No space left on device)" in m for _, _, m in failed + dropped)
    assert_rate_limited(failed, elapsed, "write failures")
    assert_rate_limited(dropped, elapsed, "dropped lines")
    counts = [int(x) for _, _, m in dropped
              for x in re.findall(r"\((\d+) similar messages suppressed\)", m)]
    assert sum(counts) > 100, dropped

    # lbd still serves; freeing space lets the kept lines through
    with connect(lbd.address) as s:
        assert http_get_keepalive(s) == 200
    os.truncate(path, 0)
    lbd.wait_log(r"the access log \"[^\"]+\" is written again", timeout=5)
    with open(path, "rb") as f:
        data = f.read()
    assert data.endswith(b"\n")
    for line in data.split(b"\n")[:-1]:
        json.loads(line)


# Out of descriptors ---------------------------------------------------------

TCP = """
workers = 1;
upstreams = { backend = { retries = 1;
  servers = ( { address = "$one"; }, { address = "$two"; } ); }; };
listeners = ( { protocol = "tcp"; listen = "$listen"; upstream = "backend"; } );
"""


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def suppressed_counts(found):
    return [int(x) for _, _, m in found
            for x in re.findall(r"\((\d+) similar messages suppressed\)", m)]


def test_emfile_on_the_upstream_socket_is_a_local_error(lbd, backend):
    one, two = backend(helpers.named, name="one"), backend(helpers.named, name="two")
    lbd.start(TCP, one=one, two=two)
    [worker] = lbd.workers()
    base = open_fds(worker)
    assert helpers.ask_name(lbd.address) in ("one", "two")
    accepted = one.accepted + two.accepted
    settle(worker, base)

    old = squeeze(worker, 1)            # room for the client, none for the server
    started = time.monotonic()
    clients = 0
    try:
        while time.monotonic() - started < 2.5:
            with connect(lbd.address) as s:
                assert helpers.closed_by_peer(s)
            clients += 1
    finally:
        unsqueeze(worker, old)
    elapsed = time.monotonic() - started

    # neither server was tried: a local shortage is not worth a retry
    assert one.accepted + two.accepted == accepted
    local = log_lines(lbd, "a local error, the server is not marked failed")
    assert local and all("(24: Too many open files)" in m for _, _, m in local)
    assert_rate_limited(local, elapsed, "local connect errors")
    # the last second's count waits for a next line that never comes
    assert clients > 20 and 0 < sum(suppressed_counts(local)) + len(local) <= clients
    assert "trying another server" not in lbd.error_log()
    assert "connect() failed" not in lbd.error_log()

    # the pressure is gone: both servers serve at once, none was held failed
    assert sorted(helpers.ask_name(lbd.address) for _ in range(2)) == ["one", "two"]


HTTP = """
workers = 1;
upstreams = { web = { keepalive = 0;
  servers = ( { address = "$one"; }, { address = "$two"; } ); }; };
listeners = ( { protocol = "http"; listen = "$listen"; name = "web";
  routes = ( { upstream = "web"; } ); } );
"""


def http_answer(address):
    with connect(address) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        return helpers.recv_all(s)


def test_emfile_on_an_http_upstream_socket_is_503_and_not_the_servers_fault(lbd):
    with RecordingBackends() as start:
        one, two = start(name="one"), start(name="two")
        http_emfile(lbd, one, two)


def http_emfile(lbd, one, two):
    lbd.start(HTTP, one=one, two=two)
    [worker] = lbd.workers()
    base = open_fds(worker)
    assert http_answer(lbd.address).startswith(b"HTTP/1.1 200 ")
    accepted = one.accepted + two.accepted
    settle(worker, base)

    old = squeeze(worker, 1)            # room for the client, none for the server
    answers = []
    try:
        for _ in range(30):
            answers.append(http_answer(lbd.address))
    finally:
        unsqueeze(worker, old)

    assert all(a.startswith(b"HTTP/1.1 503 ") for a in answers), answers[0]
    assert one.accepted + two.accepted == accepted       # no server was tried
    local = log_lines(lbd, "a local error, the server is not marked failed; answering 503")
    assert local and all("(24: Too many open files)" in m for _, _, m in local)
    assert len(local) <= 3
    assert "trying another server" not in lbd.error_log()
    # the pressure is gone: both servers serve at once, none was held failed
    bodies = sorted(http_answer(lbd.address).rpartition(b"\r\n\r\n")[2] for _ in range(2))
    assert bodies == [b"one\n", b"two\n"]


def test_emfile_on_accept_pauses_the_listener_and_is_rate_limited(lbd, backend):
    server = backend(helpers.echo)
    lbd.start(TCP.replace(', { address = "$two"; }', ""), one=server)
    [worker] = lbd.workers()
    base = open_fds(worker)
    helpers.echo_roundtrip(lbd.address, b"before")
    settle(worker, base)

    old = squeeze(worker, 0)
    waiting = []
    try:
        cpu = cpu_seconds(worker)
        started = time.monotonic()
        while time.monotonic() - started < 3.0:
            waiting.append(connect(lbd.address))    # queued by the kernel
            time.sleep(0.1)
        elapsed = time.monotonic() - started
        busy = cpu_seconds(worker) - cpu
    finally:
        unsqueeze(worker, old)

    try:
        # every client queued meanwhile is served once descriptors are free
        for i, s in enumerate(waiting):
            payload = b"queued %d" % i
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            assert helpers.recv_all(s, len(payload) + 1) == payload
    finally:
        for s in waiting:
            s.close()

    assert busy < 0.5 * elapsed, f"the worker spun: {busy:.2f}s of CPU in {elapsed:.1f}s"
    paused = log_lines(lbd, 'accept4() failed on listener')
    assert paused and all("pausing it for 100ms (24: Too many open files)" in m
                          for _, _, m in paused), paused
    assert_rate_limited(paused, elapsed, "accept4 failures")
    assert sum(suppressed_counts(paused)) >= 10, paused
