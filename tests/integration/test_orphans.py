"""Workers whose master is gone (SPEC §5): after `kill -9` of the master,
every worker stops accepting, finishes what it has in flight for up to
shutdown_timeout and exits, so a new lbd can take the ports at once."""

import os
import pwd
import re
import signal
import time

import pytest

import helpers
from helpers import connect, log_line, pattern_digest, wait_until

PROXY = """
shutdown_timeout = "2s";
upstreams = { backend = { servers = ( { address = "$server"; } ); }; };
listeners = ( { protocol = "tcp"; listen = "$listen"; upstream = "backend"; } );
"""
SHUTDOWN_TIMEOUT = 2.0


def kill_master(lbd):
    """SIGKILL to the master; the time it was sent."""
    killed_at = time.monotonic()
    os.kill(lbd.master_pid, signal.SIGKILL)
    lbd.wait_exit(5)
    return killed_at


def wait_gone(pids, killed_at, timeout=SHUTDOWN_TIMEOUT + 1):
    """Waits until every pid has exited, at most timeout after killed_at."""
    left = max(0.0, killed_at + timeout - time.monotonic())
    wait_until(lambda: not [p for p in pids if helpers.alive(p)], left,
               what=f"workers {pids} to exit within {timeout}s of the master's death")


def assert_master_gone_logged(lbd, workers):
    """Each worker said why it stops, in one line."""
    line = re.compile(r"^\S+ \S+ \[warn\] (\d+)#\d+: master process %d is gone; stopped "
                      r"accepting, finishing \d+ connections? \(up to shutdown_timeout\) "
                      r"before exiting$" % lbd.master_pid, re.M)
    wait_until(lambda: sorted(int(p) for p in line.findall(lbd.error_log())) == workers, 5,
               what="one 'master process is gone' line from each worker")


def assert_new_lbd_serves(lbd, lbd_factory, server):
    """A second lbd on the first one's port starts and relays."""
    second = lbd_factory("second")
    second.port, second.address = lbd.port, lbd.address
    second.start(PROXY, server=server)
    helpers.echo_roundtrip(second.address, b"after the orphans\n")


def test_workers_exit_when_the_master_is_killed(lbd, lbd_factory, backend):
    server = backend(helpers.echo)
    lbd.start(PROXY, server=server)
    workers = lbd.workers()
    assert len(workers) == 2
    killed_at = kill_master(lbd)
    wait_gone(workers, killed_at)
    assert_master_gone_logged(lbd, workers)
    assert helpers.listening_sockets(lbd.port) == 0
    assert_new_lbd_serves(lbd, lbd_factory, server)


def test_orphaned_worker_finishes_an_in_flight_stream(lbd, backend):
    # 10 chunks of 64k, one every 100ms: about 1s, within shutdown_timeout
    server = backend(helpers.slow_source(10, 64 * 1024, 0.1, seed=91))
    lbd.start(PROXY, server=server)
    workers = lbd.workers()
    total = 10 * 64 * 1024
    with connect(lbd.address) as s:
        first = s.recv(65536)
        assert first
        killed_at = kill_master(lbd)
        # the workers stop accepting at once...
        wait_until(lambda: helpers.listening_sockets(lbd.port) == 0, 1,
                   what="the workers to close their listening sockets")
        with pytest.raises(ConnectionRefusedError):
            connect(lbd.address, timeout=1).close()
        # ...and the stream they carry still completes
        got = helpers.recv_digest(s, prefix=first)
    assert got == (total, pattern_digest(total, seed=91))
    wait_gone(workers, killed_at)


def test_orphaned_worker_closes_what_is_left_at_shutdown_timeout(lbd, backend):
    # 50 chunks, one every 100ms: 5s of stream, past shutdown_timeout
    server = backend(helpers.slow_source(50, 1024, 0.1))
    lbd.start(PROXY, server=server)
    workers = lbd.workers()
    with connect(lbd.address) as s:
        assert s.recv(65536)
        killed_at = kill_master(lbd)
        count, _ = helpers.recv_digest(s)
        cut_after = time.monotonic() - killed_at
    assert count < 50 * 1024
    assert SHUTDOWN_TIMEOUT - 0.3 < cut_after < SHUTDOWN_TIMEOUT + 1
    wait_gone(workers, killed_at)
    lbd.wait_log(log_line("warn", r"shutdown_timeout reached with \d+ connections? still "
                                  r"open; closing them"))


def test_old_and_new_generation_exit_when_the_master_dies_after_a_reload(lbd, backend):
    server = backend(helpers.slow_source(10, 64 * 1024, 0.1, seed=92))
    lbd.start(PROXY, server=server)
    old = lbd.workers()
    total = 10 * 64 * 1024
    with connect(lbd.address) as s:
        first = s.recv(65536)
        out = lbd.reload(PROXY.replace('"2s"', '"2500ms"'), server=server)
        assert (out.returncode, out.stderr) == (0, "")
        new = lbd.wait_workers(lambda w: len(set(w) - set(old)) == 2, what="new workers")
        killed_at = kill_master(lbd)
        got = helpers.recv_digest(s, prefix=first)
    assert got == (total, pattern_digest(total, seed=92))
    wait_gone(sorted(set(old) | set(new)), killed_at, timeout=2.5 + 1)


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_workers_running_as_another_user_exit_when_the_master_is_killed(lbd, lbd_factory,
                                                                        backend):
    nobody = pwd.getpwnam("nobody")
    server = backend(helpers.echo)
    lbd.start('user = "nobody";\n' + PROXY, server=server)
    workers = lbd.workers()

    def uid(pid):
        with open(f"/proc/{pid}/status") as f:
            return int(re.search(r"^Uid:\s+(\d+)", f.read(), re.M).group(1))

    for pid in workers:
        wait_until(lambda: uid(pid) == nobody.pw_uid, 5, what=f"worker {pid} to run as nobody")
    killed_at = kill_master(lbd)
    wait_gone(workers, killed_at)
    assert_master_gone_logged(lbd, workers)
    assert_new_lbd_serves(lbd, lbd_factory, server)


def test_no_descriptor_of_lbd_survives_exec(lbd, backend):
    """Every descriptor past stdio is close-on-exec, in the master and in
    the workers: the watch pipe and the shared zones included."""
    server = backend(helpers.echo)
    lbd.start(PROXY, server=server)
    for pid in [lbd.master_pid] + lbd.workers():
        for fd in os.listdir(f"/proc/{pid}/fd"):
            if int(fd) <= 2:
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                flags = int(re.search(r"^flags:\s+(\d+)", f.read(), re.M).group(1), 8)
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            assert flags & os.O_CLOEXEC, f"fd {fd} ({target}) of {pid} survives exec"
