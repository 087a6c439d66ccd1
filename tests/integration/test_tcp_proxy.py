"""The tcp listener (SPEC §3.3): bytes relayed unchanged in both directions,
half-closes propagated. Each relay test runs with splice(2) (the default)
and with the buffered copy path (`splice = false`)."""

import os
import socket
import threading
import time

import pytest

import helpers
from helpers import connect, pattern_digest, recv_digest, send_pattern

MB = 1 << 20

PROXY = """
upstreams = { backend = { servers = ( { address = "$server"; } ); }; };
listeners = ( { protocol = "tcp"; listen = "$listen"; upstream = "backend";
                splice = $splice; } );
"""


@pytest.fixture(params=["true", "false"], ids=["splice", "copy"])
def proxy(request, lbd):
    """start(server): lbd relaying to server, with splice on or off."""
    def start(server):
        return lbd.start(PROXY, server=server, splice=request.param)
    return start


def test_100_mb_from_client_reach_the_server_intact(lbd, backend, proxy):
    server = backend(helpers.sink)
    proxy(server)
    with connect(lbd.address, timeout=30) as s:
        send_pattern(s, 100 * MB, seed=11)
        s.shutdown(socket.SHUT_WR)
        answer = helpers.recv_line(s).decode()
    expected = (100 * MB, pattern_digest(100 * MB, seed=11))
    assert server.records == [expected]
    assert answer == f"{expected[0]} {expected[1]}\n"


def test_100_mb_from_server_reach_the_client_intact(lbd, backend, proxy):
    server = backend(helpers.source(100 * MB, seed=12))
    proxy(server)
    with connect(lbd.address, timeout=30) as s:
        got = recv_digest(s)
    assert got == (100 * MB, pattern_digest(100 * MB, seed=12))


def test_concurrent_10_mb_streams_are_relayed_intact_both_ways(lbd, backend, proxy):
    server = backend(helpers.echo)
    proxy(server)
    results = {}

    def stream(seed):
        try:
            with connect(lbd.address, timeout=30) as s:
                sender = threading.Thread(target=send_all_then_shut, args=(s, seed))
                sender.start()
                results[seed] = recv_digest(s)
                sender.join(30)
        except OSError as e:
            results[seed] = repr(e)

    def send_all_then_shut(s, seed):
        try:
            send_pattern(s, 10 * MB, seed)
            s.shutdown(socket.SHUT_WR)
        except OSError as e:
            results[-seed] = f"send: {e!r}"

    threads = [threading.Thread(target=stream, args=(seed,)) for seed in range(20, 26)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {seed: (10 * MB, pattern_digest(10 * MB, seed)) for seed in range(20, 26)}
    assert server.accepted == 6


def test_client_half_close_reaches_the_server_and_its_reply_still_arrives(lbd, backend, proxy):
    server = backend(helpers.reply_after_eof(3 * MB, seed=31))
    proxy(server)
    with connect(lbd.address) as s:
        send_pattern(s, MB, seed=30)
        s.shutdown(socket.SHUT_WR)
        reply = recv_digest(s)          # the whole reply, then EOF
    assert server.records == [(MB, pattern_digest(MB, seed=30))]
    assert reply == (3 * MB, pattern_digest(3 * MB, seed=31))


def test_server_half_close_reaches_the_client_which_can_still_send(lbd, backend, proxy):
    server = backend(helpers.half_close_first(2 * MB, seed=32))
    proxy(server)
    with connect(lbd.address) as s:
        greeting = recv_digest(s)       # the server's data, then EOF
        send_pattern(s, 3 * MB, seed=33)
        s.shutdown(socket.SHUT_WR)
        assert s.recv(1) == b""
        records = server.wait_records(1)
    assert greeting == (2 * MB, pattern_digest(2 * MB, seed=32))
    assert records == [(3 * MB, pattern_digest(3 * MB, seed=33))]


def test_many_short_connections_are_each_relayed_once(lbd, backend, proxy):
    server = backend(helpers.echo)
    proxy(server)
    for i in range(200):
        helpers.echo_roundtrip(lbd.address, b"request %d\n" % i)
    assert server.accepted == 200


def test_client_reset_closes_the_server_connection(lbd, backend, proxy):
    server = backend(helpers.watcher)
    proxy(server)
    client = connect(lbd.address)
    client.sendall(b"hello")
    helpers.wait_until(lambda: server.accepted == 1, 5, what="the server connection")
    helpers.reset(client)
    assert server.wait_records(1, timeout=3) in (["eof"], ["reset"])


def test_server_reset_closes_the_client_connection(lbd, backend, proxy):
    def reset_at_once(conn, backend):
        conn.recv(5)
        helpers.reset(conn)

    server = backend(reset_at_once)
    proxy(server)
    with connect(lbd.address) as client:
        client.sendall(b"hello")
        assert helpers.closed_by_peer(client, timeout=3)


def test_idle_connection_is_closed_after_idle_timeout(lbd, backend):
    server = backend(helpers.echo)
    lbd.start("""
        upstreams = { backend = { servers = ( { address = "$server"; } ); }; };
        listeners = ( { protocol = "tcp"; listen = "$listen"; upstream = "backend";
                        idle_timeout = "400ms"; } );
        """, server=server)
    with connect(lbd.address) as s:
        # traffic every 200ms keeps it open past the timeout
        for i in range(5):
            if i:
                time.sleep(0.2)
            s.sendall(b"ping")
            assert s.recv(4) == b"ping"
        idle_from = time.monotonic()
        assert helpers.closed_by_peer(s, timeout=3)
        idle = time.monotonic() - idle_from
    assert 0.3 < idle < 1.5
    lbd.wait_log(helpers.log_line("info", r"\*\d+ client 127\.0\.0\.1:\d+: idle_timeout "
                                          r"\(400ms\) expired; closing"))


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_client_that_stops_reading_does_not_stall_the_worker(lbd, backend):
    """A server trickles small writes to a client that never reads: the
    kernel pipe between them fills by slots, not bytes. The one worker must
    keep serving its other connections, without spinning."""
    stop = threading.Event()

    def trickle(conn, backend):
        deadline = time.monotonic() + 10
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                conn.sendall(b"x" * 1000)
            except socket.timeout:
                pass
            time.sleep(0.0005)

    slow, echo = backend(trickle, "trickle"), backend(helpers.echo, "echo")
    other = helpers.free_port()
    lbd.start("""
        workers = 1;
        upstreams = { slow = { servers = ( { address = "$slow"; } ); };
                      echo = { servers = ( { address = "$echo"; } ); }; };
        listeners = ( { protocol = "tcp"; listen = "$listen"; upstream = "slow"; },
                      { protocol = "tcp"; listen = "127.0.0.1:$other"; upstream = "echo"; } );
        """, slow=slow, echo=echo, other=other, ports=None)
    (worker,) = lbd.workers()
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        stalled.connect(("127.0.0.1", lbd.port))
        start, cpu_start = time.monotonic(), cpu_seconds(worker)
        while time.monotonic() - start < 3.5:
            helpers.echo_roundtrip(f"127.0.0.1:{other}", b"still there?", timeout=2)
            time.sleep(0.1)
        busy = (cpu_seconds(worker) - cpu_start) / (time.monotonic() - start)
        assert busy < 0.5, f"the worker used {busy:.0%} of a CPU relaying a trickle"
    finally:
        stop.set()
        stalled.close()


def connect_from(source_ip, address, timeout=5):
    host, port = address.rsplit(":", 1)
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((source_ip, 0))
    s.connect((host, int(port)))
    return s


ACCESS = """
upstreams = { backend = { servers = ( { address = "$server"; } ); }; };
listeners = ( { protocol = "tcp"; listen = "$listen"; upstream = "backend";
                $rules } );
"""


def test_deny_closes_a_listed_client_before_any_server_connection(lbd, backend):
    server = backend(helpers.echo)
    lbd.start(ACCESS, server=server, rules='deny = ["127.0.0.2", "10.0.0.0/8"];')
    with connect_from("127.0.0.2", lbd.address) as s:
        assert helpers.closed_by_peer(s, timeout=3)
    lbd.wait_log(helpers.log_line("info", r"\*\d+ client 127\.0\.0\.2:\d+: denied by "
                                          r"allow/deny of listener \"tcp:[^\"]+\"; closing"))
    assert server.accepted == 0
    with connect_from("127.0.0.3", lbd.address) as s:       # not listed: served
        s.sendall(b"ping")
        assert s.recv(4) == b"ping"
    assert server.accepted == 1


def test_allow_serves_only_listed_clients(lbd, backend):
    server = backend(helpers.echo)
    lbd.start(ACCESS, server=server, rules='allow = "127.0.0.4/32";')
    with connect_from("127.0.0.4", lbd.address) as s:
        s.sendall(b"ping")
        assert s.recv(4) == b"ping"
    with connect_from("127.0.0.1", lbd.address) as s:
        assert helpers.closed_by_peer(s, timeout=3)
    assert server.accepted == 1


def test_deny_wins_over_allow(lbd, backend):
    server = backend(helpers.echo)
    lbd.start(ACCESS, server=server, rules='allow = "127.0.0.0/8"; deny = "127.0.0.5";')
    with connect_from("127.0.0.5", lbd.address) as s:
        assert helpers.closed_by_peer(s, timeout=3)
    with connect_from("127.0.0.6", lbd.address) as s:
        s.sendall(b"ping")
        assert s.recv(4) == b"ping"
