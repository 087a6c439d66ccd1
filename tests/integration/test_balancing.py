"""Choosing a server (SPEC §3.2): smooth weighted round robin, failover to
the servers that answer, backup servers, max_conns, passive health (a
server whose connect failed is left out for fail_timeout), and what a
client sees when no server is usable. Backends answer with their own name,
so each connection shows which server lbd chose."""

import re
import socket
import time
from collections import Counter

import pytest

import helpers
from helpers import ask_name, closed_by_peer, connect, free_port, log_line, recv_line


def smooth_wrr(weights, n):
    """The reference sequence of nginx's smooth weighted round robin."""
    current = [0] * len(weights)
    sequence = []
    for _ in range(n):
        for i, w in enumerate(weights):
            current[i] += w
        best = max(range(len(weights)), key=lambda i: current[i])   # first on ties
        current[best] -= sum(weights)
        sequence.append(best)
    return sequence


def longest_run(seq):
    best = run = 0
    for i, x in enumerate(seq):
        run = run + 1 if i and seq[i - 1] == x else 1
        best = max(best, run)
    return best


def start_named(backend, *names):
    return [backend(helpers.named, name=name) for name in names]


def test_round_robin_5_1_1_follows_the_smooth_sequence(lbd, backend):
    a, b, c = start_named(backend, "a", "b", "c")
    lbd.start("""
        workers = 1;
        upstreams = { web = { balance = "round_robin";
          servers = ( { address = "$a"; weight = 5; },
                      { address = "$b"; weight = 1; },
                      { address = "$c"; weight = 1; } ); }; };
        listeners = ( { protocol = "tcp"; listen = "$listen"; upstream = "web"; } );
        """, a=a, b=b, c=c)
    seen = [ask_name(lbd.address) for _ in range(70)]
    expected = ["abc"[i] for i in smooth_wrr([5, 1, 1], 70)]
    assert expected[:7] == list("aabacaa")
    assert seen == expected
    assert Counter(seen) == {"a": 50, "b": 10, "c": 10}
    assert longest_run(seen) == 4           # never five in a row


def test_round_robin_5_1_1_is_smooth_in_each_of_two_workers(lbd, backend):
    # each worker runs its own smooth sequence: the servers one worker
    # picked, in order (its debug lines say), are a stretch of the cyclic
    # sequence a a b a c a a, whatever the other worker did meanwhile
    a, b, c = start_named(backend, "a", "b", "c")
    lbd.start("""
        workers = 2;
        log_level = "debug";
        upstreams = { web = { servers = ( { address = "$a"; weight = 5; },
                      { address = "$b"; weight = 1; }, { address = "$c"; weight = 1; } ); }; };
        listeners = ( { protocol = "tcp"; listen = "$listen"; upstream = "web"; } );
        """, a=a, b=b, c=c)
    names = {a.address: "a", b.address: "b", c.address: "c"}
    seen = [ask_name(lbd.address) for _ in range(84)]
    assert Counter(seen)["a"] >= 50
    helpers.wait_until(lambda: lbd.error_log().count("closed (") >= 84, 10,
                       what="84 session lines")
    per_worker = {}
    # in the order of the client connections' ids (a session may log its
    # close after the next one was accepted)
    for pid, cid, server in sorted(
            re.findall(r"\] (\d+)#\d+: \*(\d+) client [^ ]+: closed \([^)]*\) with "
                       r"server ([^ :]+:\d+)", lbd.error_log()),
            key=lambda m: (m[0], int(m[1]))):
        per_worker.setdefault(pid, []).append(names[server])
    assert len(per_worker) == 2 and all(len(v) >= 7 for v in per_worker.values()), per_worker
    cycle = "".join("abc"[i] for i in smooth_wrr([5, 1, 1], 7)) * 20
    for picks in per_worker.values():
        assert "".join(picks) in cycle, picks


@pytest.mark.parametrize("balance,weights,expected", [
    ("least_conn", (1, 1), {"a": 3, "b": 3}),
    ("least_conn", (2, 1), {"a": 4, "b": 2}),
    ("random_two", (1, 1), {"a": 3, "b": 3}),
])
def test_load_aware_balancing_follows_open_connections(lbd, backend, balance, weights,
                                                       expected):
    a, b = start_named(backend, "a", "b")
    lbd.start("""
        upstreams = { web = { balance = "$balance";
          servers = ( { address = "$a"; weight = $wa; }, { address = "$b"; weight = $wb; } );
        }; };
        listeners = ( { protocol = "tcp"; listen = "$listen"; upstream = "web"; } );
        """, a=a, b=b, balance=balance, wa=weights[0], wb=weights[1])
    # each connection stays open: the next choice sees it, whichever worker
    held = []
    try:
        for _ in range(6):
            held.append(connect(lbd.address))
            recv_line(held[-1])
        assert (a.active, b.active) == (expected["a"], expected["b"])
    finally:
        for s in held:
            s.close()


def test_server_that_refuses_connections_is_skipped(lbd, backend):
    (up,) = start_named(backend, "up")
    down = f"127.0.0.1:{free_port()}"         # nobody listens there
    lbd.start("""
        upstreams = { web = { retries = 2;
          servers = ( { address = "$down"; }, { address = "$up"; } ); }; };
        listeners = ( { protocol = "tcp"; listen = "$listen"; upstream = "web"; } );
        """, up=up, down=down)
    assert [ask_name(lbd.address) for _ in range(20)] == ["up"] * 20
    lbd.wait_log(log_line("warn", r'\*\d+ client 127\.0\.0\.1:\d+: connect\(\) failed to '
                          + re.escape(down) + r' in upstream "web"; trying another server '
                          r'\(111: Connection refused\)'))


def test_server_that_does_not_answer_is_left_after_connect_timeout(lbd, backend):
    # a listening socket whose accept queue is full: the kernel drops SYNs
    silent = socket.socket()
    silent.bind(("127.0.0.1", free_port()))
    silent.listen(0)
    fillers = []
    try:
        for _ in range(3):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(silent.getsockname())
            fillers.append(f)
        (up,) = start_named(backend, "up")
        lbd.start("""
            workers = 1;
            upstreams = { web = { connect_timeout = "300ms"; retries = 1;
              servers = ( { address = "$silent"; }, { address = "$up"; } ); }; };
            listeners = ( { protocol = "tcp"; listen = "$listen"; upstream = "web"; } );
            """, silent="127.0.0.1:%d" % silent.getsockname()[1], up=up)
        start = time.monotonic()
        assert ask_name(lbd.address) == "up"        # round robin tries silent first
        assert 0.25 < time.monotonic() - start < 2
        lbd.wait_log(log_line("warn", r'\*\d+ client 127\.0\.0\.1:\d+: connect_timeout '
                              r'expired for 127\.0\.0\.1:%d in upstream "web"; trying another '
                              r'server \(110: Connection timed out\)' % silent.getsockname()[1]))
    finally:
        for f in fillers:
            f.close()
        silent.close()


def test_server_that_dies_mid_run_gets_no_more_connections(lbd, backend):
    first, second = start_named(backend, "first", "second")
    lbd.start("""
        upstreams = { web = { retries = 1;
          servers = ( { address = "$first"; }, { address = "$second"; } ); }; };
        listeners = ( { protocol = "tcp"; listen = "$listen"; upstream = "web"; } );
        """, first=first, second=second)
    with helpers.Load(lbd.address, threads=2, duration=8, max_per_thread=2000,
                      action=ask_name) as load:
        helpers.wait_until(lambda: first.accepted >= 20 and second.accepted >= 20, 5,
                           what="traffic on both servers")
        first.stop()
        died = time.monotonic()
        helpers.wait_until(lambda: len(load.started_after(died)) >= 100, 6,
                           what="100 connections after the death")
    after = load.started_after(died)
    assert len(after) >= 100
    assert [a for a in after if a.error is not None] == []
    assert Counter(a.value for a in after) == {"second": len(after)}


def test_backup_gets_no_connection_while_a_primary_is_up(lbd, backend):
    one, two, spare = start_named(backend, "one", "two", "spare")
    lbd.start("""
        upstreams = { web = { servers = ( { address = "$one"; }, { address = "$two"; },
                                          { address = "$spare"; backup = true; } ); }; };
        listeners = ( { protocol = "tcp"; listen = "$listen"; upstream = "web"; } );
        """, one=one, two=two, spare=spare)
    assert {ask_name(lbd.address) for _ in range(30)} == {"one", "two"}
    assert spare.accepted == 0


def test_backup_serves_once_every_primary_is_down(lbd, backend):
    one, two, spare = start_named(backend, "one", "two", "spare")
    lbd.start("""
        upstreams = { web = { retries = 2;
          servers = ( { address = "$one"; }, { address = "$two"; },
                      { address = "$spare"; backup = true; } ); }; };
        listeners = ( { protocol = "tcp"; listen = "$listen"; upstream = "web"; } );
        """, one=one, two=two, spare=spare)
    assert {ask_name(lbd.address) for _ in range(10)} == {"one", "two"}
    one.stop()
    two.stop()
    assert [ask_name(lbd.address) for _ in range(20)] == ["spare"] * 20


def test_max_conns_caps_the_open_connections_of_a_server(lbd, backend):
    limited, free = start_named(backend, "limited", "free")
    lbd.start("""
        upstreams = { web = {
          servers = ( { address = "$limited"; max_conns = 2; }, { address = "$free"; } ); }; };
        listeners = ( { protocol = "tcp"; listen = "$listen"; upstream = "web"; } );
        """, limited=limited, free=free)
    held = [connect(lbd.address) for _ in range(5)]
    try:
        names = Counter(recv_line(s).decode().strip() for s in held)
        assert names == {"limited": 2, "free": 3}
        assert (limited.active, limited.max_active, free.active) == (2, 2, 3)
    finally:
        for s in held:
            s.close()


def hold_every_slot(lbd, backend):
    """lbd before two servers with max_conns 2 and 1, and the 3 client
    connections that fill them."""
    a, b = start_named(backend, "a", "b")
    lbd.start("""
        upstreams = { web = {
          servers = ( { address = "$a"; max_conns = 2; }, { address = "$b"; max_conns = 1; } );
        }; };
        listeners = ( { protocol = "tcp"; listen = "$listen"; upstream = "web"; } );
        """, a=a, b=b)
    held = [connect(lbd.address) for _ in range(3)]
    assert sorted(recv_line(s).decode().strip() for s in held) == ["a", "a", "b"]
    return held


def test_connection_beyond_every_max_conns_is_closed(lbd, backend):
    held = hold_every_slot(lbd, backend)
    try:
        with connect(lbd.address) as extra:
            assert closed_by_peer(extra, timeout=3)
        lbd.wait_log(log_line("error", r'\*\d+ client 127\.0\.0\.1:\d+: no usable server in '
                              r'upstream "web" \(every server is at max_conns\); closing the '
                              r'client connection'))
    finally:
        for s in held:
            s.close()


def test_slot_freed_below_max_conns_is_used_again(lbd, backend):
    held = hold_every_slot(lbd, backend)
    try:
        held.pop().close()
        # lbd notices the close a moment later; until then it may refuse
        name = helpers.wait_until(lambda: _try_name(lbd.address), 5,
                                  what="a connection to be served again")
        assert name in ("a", "b")
    finally:
        for s in held:
            s.close()


def _try_name(address):
    try:
        return ask_name(address)
    except (ConnectionError, OSError):
        return None


def test_client_is_closed_when_every_server_failed(lbd):
    down1, down2 = (f"127.0.0.1:{free_port()}" for _ in range(2))
    lbd.start("""
        upstreams = { web = { retries = 2;
          servers = ( { address = "$down1"; }, { address = "$down2"; } ); }; };
        listeners = ( { protocol = "tcp"; listen = "$listen"; upstream = "web"; } );
        """, down1=down1, down2=down2)
    with connect(lbd.address) as s:
        assert closed_by_peer(s, timeout=3)
    lbd.wait_log(log_line("error", r'\*\d+ client 127\.0\.0\.1:\d+: no usable server in '
                          r'upstream "web" \(every server failed\); closing the client '
                          r'connection'))


def test_client_is_closed_after_retries_run_out(lbd):
    down1, down2 = (f"127.0.0.1:{free_port()}" for _ in range(2))
    lbd.start("""
        upstreams = { web = { retries = 0;
          servers = ( { address = "$down1"; }, { address = "$down2"; } ); }; };
        listeners = ( { protocol = "tcp"; listen = "$listen"; upstream = "web"; } );
        """, down1=down1, down2=down2)
    with connect(lbd.address) as s:
        assert closed_by_peer(s, timeout=3)
    lbd.wait_log(log_line("error", r'\*\d+ client 127\.0\.0\.1:\d+: giving up after 1 failed '
                          r'connects to upstream "web"; closing the client connection'))


# Passive health ----------------------------------------------------------------

def connect_failures(lbd, server):
    return len(re.findall(r"connect\(\) failed to %s in upstream" % re.escape(server),
                          lbd.error_log()))


def test_a_refusing_primary_is_not_tried_again_for_fail_timeout(lbd, backend):
    first, second = start_named(backend, "first", "second")
    lbd.start("""
        upstreams = { web = { passive = { max_fails = 1; fail_timeout = "2s"; };
          servers = ( { address = "$first"; }, { address = "$second"; } ); }; };
        listeners = ( { protocol = "tcp"; listen = "$listen"; upstream = "web"; } );
        """, first=first, second=second)
    assert {ask_name(lbd.address) for _ in range(10)} == {"first", "second"}

    first.stop()
    stopped = time.monotonic()
    assert [ask_name(lbd.address) for _ in range(20)] == ["second"] * 20
    lbd.wait_log(log_line("warn", r'server %s in upstream "web" failed 1 time\(s\) in 2s; '
                          r"not used for 2s \(max_fails/fail_timeout\)"
                          % re.escape(first.address)))
    assert connect_failures(lbd, first.address) == 1, "one connect, for every worker"

    # back at once, but left out until fail_timeout has passed
    revived = backend(helpers.named, name="first", port=first.port)
    assert [ask_name(lbd.address) for _ in range(10)] == ["second"] * 10
    assert time.monotonic() - stopped < 1.8
    assert revived.accepted == 0

    time.sleep(max(0.0, stopped + 2.1 - time.monotonic()))
    assert {ask_name(lbd.address) for _ in range(10)} == {"first", "second"}
    lbd.wait_log(log_line("notice", r'server %s in upstream "web" answered again; back in use'
                          % re.escape(first.address)))
    assert connect_failures(lbd, first.address) == 1


def test_max_fails_0_never_leaves_a_server_out(lbd, backend):
    (up,) = start_named(backend, "up")
    down = f"127.0.0.1:{free_port()}"
    lbd.start("""
        upstreams = { web = { passive = { max_fails = 0; };
          servers = ( { address = "$down"; }, { address = "$up"; } ); }; };
        listeners = ( { protocol = "tcp"; listen = "$listen"; upstream = "web"; } );
        """, up=up, down=down)
    assert [ask_name(lbd.address) for _ in range(20)] == ["up"] * 20
    # round robin keeps sending every other new connection to it first
    helpers.wait_until(lambda: connect_failures(lbd, down) >= 8, 5,
                       what="connects to the refusing server")
    assert "not used for" not in lbd.error_log()


def test_backup_serves_while_the_primaries_are_failed_without_connect_attempts(lbd, backend):
    one, two, spare = start_named(backend, "one", "two", "spare")
    lbd.start("""
        upstreams = { web = {
          servers = ( { address = "$one"; }, { address = "$two"; },
                      { address = "$spare"; backup = true; } ); }; };
        listeners = ( { protocol = "tcp"; listen = "$listen"; upstream = "web"; } );
        """, one=one, two=two, spare=spare)
    one.stop()
    two.stop()
    assert [ask_name(lbd.address) for _ in range(30)] == ["spare"] * 30
    # the default passive = { max_fails = 1; fail_timeout = "10s"; }
    assert connect_failures(lbd, one.address) == 1
    assert connect_failures(lbd, two.address) == 1
