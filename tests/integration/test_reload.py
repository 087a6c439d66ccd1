"""Reload (SPEC §6) and log reopening (SPEC §7): a valid configuration takes
over without losing a connection, an invalid one changes nothing."""

import os
import re
import signal
import socket
import time
from collections import Counter

import helpers
from helpers import ask_name, log_line

NAMED = """
upstreams = { web = { servers = ( { address = "$server"; } ); }; };
listeners = ( { protocol = "tcp"; listen = "$listen"; upstream = "web"; } );
"""


def names(address, n=10):
    return Counter(ask_name(address) for _ in range(n))


def test_twenty_reloads_under_load_lose_no_connection(lbd, backend):
    one, two = backend(helpers.echo), backend(helpers.echo)
    conf = """
        upstreams = { web = { connect_timeout = "${ct}s";
                              servers = ( { address = "$one"; weight = $w1; },
                                          { address = "$two"; weight = $w2; } ); }; };
        listeners = ( { protocol = "tcp"; listen = "$listen"; upstream = "web"; } );
        """
    # connect_timeout changes too: each reload is a new generation (one
    # that changes only servers is applied in place: test_reload_inplace.py)
    lbd.start(conf, one=one, two=two, w1=1, w2=1, ct=5)
    with helpers.Load(lbd.address, threads=3, duration=30) as load:
        helpers.wait_until(lambda: len(load.attempts) >= 20, 5, what="load to start")
        for i in range(20):
            out = lbd.reload(conf, one=one, two=two, w1=1 + 4 * (i % 2), w2=1, ct=5 + i % 2)
            assert (i, out.returncode, out.stderr) == (i, 0, "")
            time.sleep(0.05)                # let the old workers drain under load
        reloaded = len(load.attempts)
        helpers.wait_until(lambda: len(load.attempts) >= reloaded + 50, 5,
                           what="load after the reloads")
    assert load.failures == []
    assert len(load.attempts) > 100
    lbd.wait_log(log_line("notice", r"reload done: generation 20, 2 workers"))
    lbd.wait_workers(lambda w: len(w) == 2, timeout=10, what="the old workers to exit")


def test_reload_with_a_broken_config_fails_and_keeps_serving_the_old_one(lbd, backend):
    old, new = backend(helpers.named, "old"), backend(helpers.named, "new")
    lbd.start(NAMED, server=old)
    workers = lbd.workers()
    out = lbd.reload(NAMED.replace('servers', 'retries = "two"; servers'), server=new)
    line = lbd.line_of('retries = "two"')
    assert (out.returncode, out.stdout, out.stderr) == (
        1, "", f'{lbd.conf_path}:{line}: "retries" must be an integer, not a string\n')
    assert names(lbd.address) == {"old": 10}
    assert lbd.workers() == workers


def test_sighup_with_a_broken_config_logs_why_and_keeps_serving(lbd, backend):
    old, new = backend(helpers.named, "old"), backend(helpers.named, "new")
    lbd.start(NAMED, server=old)
    workers = lbd.workers()
    lbd.write_config(NAMED.replace('upstream = "web"', 'upstream = "wbe"'), server=new)
    lbd.signal(signal.SIGHUP)
    line = lbd.line_of('upstream = "wbe"')
    lbd.wait_log(log_line("error", re.escape(
        f'{lbd.conf_path}:{line}: unknown upstream "wbe" in listener "tcp:{lbd.address}" '
        '(did you mean "web"?)')))
    lbd.wait_log(log_line("error", "reload failed: the configuration has errors; "
                                   "the running configuration keeps serving"))
    assert names(lbd.address) == {"old": 10}
    assert lbd.workers() == workers


def test_reload_refused_by_the_master_exits_1_and_keeps_serving(lbd, backend):
    old, new = backend(helpers.named, "old"), backend(helpers.named, "new")
    lbd.start(NAMED, server=old)
    workers = lbd.workers()
    taken = helpers.free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        out = lbd.reload("""
            upstreams = { web = { servers = ( { address = "$server"; } ); }; };
            listeners = ( { protocol = "tcp"; listen = "$listen"; upstream = "web"; },
                          { protocol = "tcp"; listen = "127.0.0.1:$taken"; upstream = "web"; } );
            """, server=new, taken=taken)
        # lbctl prints the master's reasons, from the error log, then its own line
        assert (out.returncode, out.stdout, out.stderr) == (
            1, "", f'cannot listen on 127.0.0.1:{taken} for listener "tcp:127.0.0.1:{taken}" '
                   "(98: Address already in use)\n"
                   "reload failed; the running configuration keeps serving\n"
                   "lbctl: lbd refused the new configuration and keeps the running one\n")
    lbd.wait_log(log_line("error", re.escape(
        f'cannot listen on 127.0.0.1:{taken} for listener "tcp:127.0.0.1:{taken}" '
        '(98: Address already in use)')))
    lbd.wait_log(log_line("error", "reload failed; the running configuration keeps serving"))
    assert names(lbd.address) == {"old": 10}
    assert lbd.workers() == workers


def test_reload_that_changes_the_server_sends_new_connections_to_it(lbd, backend):
    old, new = backend(helpers.named, "old"), backend(helpers.named, "new")
    lbd.start(NAMED, server=old)
    workers = lbd.workers()
    assert names(lbd.address) == {"old": 10}
    # only the server changes: the running workers take it (in place)
    out = lbd.reload(NAMED, server=new)
    assert (out.returncode, out.stderr) == (0, "")
    assert out.stdout.startswith("reloaded in place: "), out.stdout
    assert names(lbd.address) == {"new": 10}
    assert lbd.workers() == workers
    # anything else as well: new workers
    out = lbd.reload(NAMED.replace("servers", "retries = 1; servers"), server=old)
    assert (out.returncode, out.stdout, out.stderr) == (0, "reloaded: new generation 1\n", "")
    lbd.wait_workers(lambda w: len(w) == 2 and not set(w) & set(workers), timeout=10,
                     what="the old workers to be replaced")
    assert names(lbd.address) == {"old": 10}


# lbctl reload returns only once every old worker has said it stopped
# accepting, so the next connection always meets the new configuration.
# Racy by nature: it reloads up to 300 times (at most 5s).
def test_connection_made_after_lbctl_reload_returns_uses_the_new_config(lbd, backend):
    a, b = backend(helpers.named, "a"), backend(helpers.named, "b")
    lbd.start(NAMED, server=a)
    deadline = time.monotonic() + 5
    for i in range(300):
        if time.monotonic() > deadline:
            break
        server = (b, a)[i % 2]
        out = lbd.reload(NAMED, server=server)
        assert (out.returncode, out.stderr) == (0, "")
        assert (i, ask_name(lbd.address)) == (i, server.name)


def test_reload_that_adds_a_listener_makes_it_serve(lbd, backend):
    server = backend(helpers.named, "server")
    lbd.start(NAMED, server=server)
    second = helpers.free_port()
    out = lbd.reload("""
        upstreams = { web = { servers = ( { address = "$server"; } ); }; };
        listeners = ( { protocol = "tcp"; listen = "$listen"; upstream = "web"; },
                      { protocol = "tcp"; listen = "127.0.0.1:$second"; upstream = "web"; } );
        """, server=server, second=second)
    assert (out.returncode, out.stderr) == (0, "")
    assert names(f"127.0.0.1:{second}") == {"server": 10}
    assert names(lbd.address) == {"server": 10}


def test_stream_in_flight_finishes_on_its_old_worker_after_a_reload(lbd, backend):
    # 24 chunks of 256k, one every 50ms: about 1.2s of transfer
    slow = backend(helpers.slow_source(24, 256 * 1024, 0.05, seed=50))
    other = backend(helpers.named, "other")
    lbd.start(NAMED, server=slow)
    old_workers = lbd.workers()
    with helpers.connect(lbd.address) as s:
        first = s.recv(65536)
        # not only the server: a new generation (test_reload_inplace.py has
        # a stream across reloads applied in place)
        out = lbd.reload(NAMED.replace("servers", "retries = 1; servers"), server=other)
        assert (out.returncode, out.stderr) == (0, "")
        assert names(lbd.address) == {"other": 10}
        got = helpers.recv_digest(s, prefix=first)
    assert got == (24 * 256 * 1024, helpers.pattern_digest(24 * 256 * 1024, seed=50))
    lbd.wait_workers(lambda w: len(w) == 2 and not set(w) & set(old_workers), timeout=5,
                     what="the old workers to exit once their stream ended")


def test_max_conns_counts_connections_of_old_workers_after_a_reload(lbd, backend):
    a, b = backend(helpers.named, "a"), backend(helpers.named, "b")
    conf = """
        upstreams = { web = { retries = $retries;
          servers = ( { address = "$a"; max_conns = 1; }, { address = "$b"; max_conns = 1; } );
        }; };
        listeners = ( { protocol = "tcp"; listen = "$listen"; upstream = "web"; } );
        """
    lbd.start(conf, a=a, b=b, retries=2)
    held = [helpers.connect(lbd.address) for _ in range(2)]
    try:
        assert sorted(helpers.recv_line(s).decode().strip() for s in held) == ["a", "b"]
        out = lbd.reload(conf, a=a, b=b, retries=1)
        assert (out.returncode, out.stderr) == (0, "")
        # both servers are still full: the old workers hold their connections
        with helpers.connect(lbd.address) as extra:
            assert helpers.closed_by_peer(extra)
        assert (a.active, b.active) == (1, 1)
    finally:
        for s in held:
            s.close()


def open_files(pid):
    """Paths of the files a process holds open."""
    paths = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            paths.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return paths


def test_reopen_after_renaming_the_error_log_writes_a_new_file(lbd):
    down = f"127.0.0.1:{helpers.free_port()}"       # every connect fails: workers log
    lbd.start(NAMED, server=down)
    processes = [lbd.master_pid] + lbd.workers()
    rotated = lbd.error_log_path + ".1"
    os.rename(lbd.error_log_path, rotated)
    out = lbd.lbctl("reopen")
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")
    # the master passes USR1 on to the workers: each reopens in its own time
    helpers.wait_until(lambda: all(lbd.error_log_path in open_files(pid)
                                   and rotated not in open_files(pid) for pid in processes),
                       5, what="every lbd process to hold the new error.log")
    with helpers.connect(lbd.address) as s:
        assert helpers.closed_by_peer(s)
    lbd.wait_log(r"connect\(\) failed to " + re.escape(down))
    assert "connect() failed" not in lbd.error_log(rotated)


def test_reopen_is_noted_by_the_master_in_the_rotated_log(lbd, backend):
    lbd.start(NAMED, server=backend(helpers.named, "a"))
    rotated = lbd.error_log_path + ".1"
    os.rename(lbd.error_log_path, rotated)
    out = lbd.lbctl("reopen")
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")
    lbd.wait_log(log_line("notice", "reopening log files").replace(
        r"\d+#", f"{lbd.master_pid}#", 1), path=rotated)
    helpers.wait_until(lambda: os.path.exists(lbd.error_log_path), 5,
                       what="the new error.log")


# Regression: the master used to die on a HUP whose file included a
# directory (libconfig's scanner exits the process).
def test_sighup_with_an_include_of_a_directory_keeps_the_master_serving(lbd, backend):
    old = backend(helpers.named, "old")
    lbd.start(NAMED, server=old)
    workers = lbd.workers()
    os.mkdir(os.path.join(lbd.dir, "conf.d"))
    with open(lbd.conf_path, "a") as f:
        f.write('@include "conf.d"\n')
    lbd.signal(signal.SIGHUP)
    helpers.wait_until(lambda: not lbd.running() or "reload failed" in lbd.error_log(), 5,
                       what="the reload to fail")
    assert lbd.running(), f"the master died on SIGHUP: {lbd.stderr()!r}"
    lbd.wait_log(log_line("error", "reload failed: .*"))
    assert lbd.workers() == workers
    assert names(lbd.address) == {"old": 10}
