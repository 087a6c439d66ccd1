"""The master and its workers (SPEC §2, §5): startup errors, worker
supervision, the stop signals, the pid file and daemon mode."""

import os
import re
import signal
import socket
import time

import pytest

import helpers
from helpers import connect, log_line, pattern_digest, processes_with_arg, wait_until
from http_backend import RecordingBackends
from test_http_listener import Client
from test_udp_proxy import UdpBackend

PROXY = """
upstreams = { backend = { servers = ( { address = "$server"; } ); }; };
listeners = ( { protocol = "tcp"; listen = "$listen"; upstream = "backend"; } );
"""


def assert_nothing_left(lbd):
    assert processes_with_arg(lbd.conf_path) == []
    assert not os.path.exists(lbd.pid_file)


# Startup errors -----------------------------------------------------------------

def test_listen_address_in_use_stops_startup_with_one_line(lbd, backend):
    server = backend(helpers.echo)
    with socket.socket() as holder:        # no SO_REUSEPORT: lbd may not share it
        holder.bind(("127.0.0.1", lbd.port))
        holder.listen()
        lbd.start(PROXY, server=server, wait=False)
        assert lbd.wait_exit(10) == 1
        lines = lbd.stderr().splitlines()
        assert len(lines) == 1, lines
        assert re.match(log_line("error", re.escape(
            f'cannot listen on {lbd.address} for listener "tcp:{lbd.address}" '
            '(98: Address already in use)')), lines[0]), lines[0]
        assert helpers.listening_sockets(lbd.port) == 1
    assert_nothing_left(lbd)


def test_pid_file_in_a_missing_directory_stops_startup_with_one_line(lbd, backend):
    server = backend(helpers.echo)
    lbd.start('pid_file = "$dir/missing/lbd.pid";\n' + PROXY, server=server, wait=False)
    assert lbd.wait_exit(10) == 1
    assert lbd.stderr() == (f'lbd: cannot write pid file "{lbd.dir}/missing/lbd.pid": '
                            'No such file or directory\n')
    assert helpers.listening_sockets(lbd.port) == 0
    assert_nothing_left(lbd)


def test_error_log_in_a_missing_directory_stops_startup_with_one_line(lbd, backend):
    server = backend(helpers.echo)
    lbd.start('error_log = "$dir/missing/error.log";\n' + PROXY, server=server, wait=False)
    assert lbd.wait_exit(10) == 1
    assert lbd.stderr() == (f'lbd: cannot open error log "{lbd.dir}/missing/error.log": '
                            'No such file or directory\n')
    assert helpers.listening_sockets(lbd.port) == 0
    assert_nothing_left(lbd)


# Workers --------------------------------------------------------------------------

@pytest.mark.parametrize("setting,count", [("1", 1), ("2", 2), ('"auto"', os.cpu_count())])
def test_workers_setting_starts_that_many_workers(lbd, backend, setting, count):
    server = backend(helpers.echo)
    lbd.start(f"workers = {setting};\n" + PROXY, server=server)
    workers = lbd.workers()
    assert len(workers) == count
    log = lbd.error_log()
    for pid in workers:
        assert re.search(log_line("notice", rf"started worker {pid} in slot \d+ "
                                  r"\(generation \d+\)"), log, re.M)
    assert helpers.listening_sockets(lbd.port) == count


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_user_setting_runs_workers_as_that_user(lbd, backend):
    import pwd
    nobody = pwd.getpwnam("nobody")
    server = backend(helpers.echo)
    lbd.start('user = "nobody";\n' + PROXY, server=server)

    def ids(pid):
        with open(f"/proc/{pid}/status") as f:
            fields = {line.split(":")[0]: line.split()[1:] for line in f}
        return int(fields["Uid"][0]), int(fields["Gid"][0])

    # a worker drops privileges early in its start, but the master's
    # sockets are ready before that: give a slow (sanitizer) start a moment
    want = (nobody.pw_uid, nobody.pw_gid)
    for pid in lbd.workers():
        wait_until(lambda: ids(pid) == want, 5, what=f"worker {pid} to run as nobody")
    with open(f"/proc/{lbd.master_pid}/status") as f:
        assert f.read().split("Uid:")[1].split()[0] == "0"     # the master stays root
    with connect(lbd.address) as sock:                         # and it still relays
        sock.sendall(b"ping")
        assert sock.recv(4) == b"ping"


def test_killed_worker_is_replaced_and_no_connection_is_refused(lbd, backend):
    server = backend(helpers.echo)
    lbd.start(PROXY, server=server)
    before = lbd.workers()
    assert len(before) == 2
    # one sequential client and three concurrent ones, 3 seconds
    with helpers.Load(lbd.address, threads=4, duration=3.0) as load:
        # a worker younger than 1s is restarted only after a 1s pause
        time.sleep(max(0.8, lbd.started_at + 1.3 - time.monotonic()))
        victim = before[0]
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        after = lbd.wait_workers(lambda w: len(w) == 2 and victim not in w, timeout=1,
                                 what="the slot to be refilled within 1s")
        load.wait()
    replacement = (set(after) - set(before)).pop()
    slot = lbd.wait_log(log_line("error", rf"worker {victim} \(slot (\d+)\) exited on "
                                 r"signal 9")).group(1)
    lbd.wait_log(log_line("notice", rf"started worker {replacement} in slot {slot} "
                          r"\(generation \d+\)"))
    assert len(load.attempts) > 100
    assert [a for a in load.attempts if a.refused] == []
    # only connections the victim held when it died may break
    assert load.failures == [a for a in load.failures if a.start < killed_at]
    assert len(load.failures) <= 4
    assert len(load.started_after(killed_at + 1)) > 50


# Stopping ---------------------------------------------------------------------------

@pytest.mark.parametrize("signo", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_fast_stop_signal_stops_the_master_and_its_workers(lbd, backend, signo):
    server = backend(helpers.echo)
    lbd.start(PROXY, server=server)
    workers = lbd.workers()
    lbd.signal(signo)
    assert lbd.wait_exit(5) == 0
    assert [pid for pid in workers if helpers.alive(pid)] == []
    assert_nothing_left(lbd)
    assert helpers.listening_sockets(lbd.port) == 0
    lbd.wait_log(log_line("notice", "fast shutdown"))


def test_sigquit_lets_an_in_flight_stream_finish(lbd, backend):
    # 24 chunks of 256k, one every 50ms: about 1.2s of transfer
    server = backend(helpers.slow_source(24, 256 * 1024, 0.05, seed=40))
    lbd.start(PROXY, server=server)
    workers = lbd.workers()
    total = 24 * 256 * 1024
    at_half = []        # was lbd running when half the stream had arrived?
    with connect(lbd.address) as s:
        first = s.recv(65536)
        assert first
        lbd.signal(signal.SIGQUIT)
        lbd.wait_log(log_line("notice", "graceful shutdown"))
        got = helpers.recv_digest(
            s, prefix=first,
            progress=lambda n: n > total // 2 and not at_half and at_half.append(lbd.running()))
    assert got == (total, pattern_digest(total, seed=40))
    assert at_half == [True]
    assert lbd.wait_exit(5) == 0
    assert [pid for pid in workers if helpers.alive(pid)] == []
    assert_nothing_left(lbd)


# On QUIT the master closes its listening sockets and each worker keeps only
# its own slot's, so new clients are refused at once instead of queueing.
def test_graceful_stop_turns_new_connections_away_at_once(lbd, backend):
    server = backend(helpers.slow_source(30, 1024, 0.1))       # 3s of stream
    lbd.start(PROXY, server=server)
    with connect(lbd.address) as busy:
        assert busy.recv(1024)
        lbd.signal(signal.SIGQUIT)
        lbd.wait_log(log_line("notice", "graceful shutdown"))
        # a connection a worker accepted before it saw QUIT is served;
        # once every worker says it stopped accepting, new ones must be
        # turned away (with one line waited for, the other worker could
        # still accept the late one, and serve it)
        wait_until(lambda: len(re.findall(r"stopped accepting; finishing \d+ connections",
                                          open(lbd.error_log_path).read())) >= lbd.nworkers,
                   10, what="every worker to stop accepting")
        try:
            with connect(lbd.address, timeout=1) as late:
                assert helpers.closed_by_peer(late, timeout=1), \
                    "a connection made during the graceful stop hangs"
        except ConnectionRefusedError:
            pass


def test_graceful_stop_closes_streams_left_at_shutdown_timeout(lbd, backend):
    # 40 chunks, one every 100ms: 4s of transfer, twice shutdown_timeout
    server = backend(helpers.slow_source(40, 1024, 0.1))
    lbd.start('shutdown_timeout = "1s";\n' + PROXY, server=server)
    with connect(lbd.address) as s:
        assert s.recv(65536)
        quit_at = time.monotonic()
        lbd.signal(signal.SIGQUIT)
        count, _ = helpers.recv_digest(s)
        cut_after = time.monotonic() - quit_at
    assert count < 40 * 1024
    assert 0.8 < cut_after < 3
    assert lbd.wait_exit(5) == 0
    lbd.wait_log(log_line("warn", r"shutdown_timeout reached with \d+ connections? still open; "
                                  r"closing them"))
    assert_nothing_left(lbd)


def test_graceful_stop_ends_idle_work_at_once(lbd):
    # what only waits for work -- an idle keep-alive client connection, an
    # idle connection in an upstream's keepalive pool, a udp session -- ends
    # when the stop begins (the modules' stop hook), not at shutdown_timeout
    with RecordingBackends() as http_backend:
        web = http_backend()
        dns = UdpBackend(lambda data, addr: data)
        try:
            udp_port = helpers.free_port()
            lbd.start(f"""
workers = 1;
shutdown_timeout = "30s";
upstreams = {{ web = {{ servers = ( {{ address = "$web"; }} ); }};
               dns = {{ servers = ( {{ address = "$dns"; }} ); }}; }};
listeners = ( {{ protocol = "http"; listen = "$listen"; routes = ( {{ upstream = "web"; }} ); }},
              {{ protocol = "udp"; listen = "127.0.0.1:{udp_port}"; upstream = "dns"; }} );
""", web=web, dns=dns)
            client = Client(lbd.address)
            client.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert client.response()[0] == "HTTP/1.1 200 OK"
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.settimeout(5)
                u.sendto(b"ping", ("127.0.0.1", udp_port))
                assert u.recvfrom(100)[0] == b"ping"
            quit_at = time.monotonic()
            lbd.signal(signal.SIGQUIT)
            assert lbd.wait_exit(10) == 0
            assert time.monotonic() - quit_at < 0.9
            assert client.closed(timeout=1)
        finally:
            dns.stop()
    assert_nothing_left(lbd)


def test_pid_file_holds_the_master_pid_and_is_removed_at_exit(lbd, backend):
    server = backend(helpers.echo)
    lbd.start(PROXY, server=server)
    with open(lbd.pid_file) as f:
        assert f.read() == f"{lbd.master_pid}\n"
    lbd.signal(signal.SIGTERM)
    assert lbd.wait_exit(5) == 0
    assert not os.path.exists(lbd.pid_file)


def test_daemon_writes_its_pid_file_and_lbctl_stop_stops_it(lbd, backend):
    server = backend(helpers.echo)
    lbd.start(PROXY, server=server, foreground=False)
    assert lbd.proc.returncode == 0
    assert lbd.master_pid != lbd.proc.pid
    with open(lbd.pid_file) as f:
        assert f.read() == f"{lbd.master_pid}\n"
    workers = lbd.workers()
    assert len(workers) == 2
    helpers.echo_roundtrip(lbd.address, b"hello daemon\n")
    out = lbd.lbctl("stop")
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")
    assert not helpers.alive(lbd.master_pid)
    assert [pid for pid in workers if helpers.alive(pid)] == []
    assert_nothing_left(lbd)


def test_second_lbd_with_the_same_pid_file_refuses_to_start(lbd, lbd_factory, backend):
    server = backend(helpers.echo)
    lbd.start(PROXY, server=server)
    second = lbd_factory("second")
    second.start(f'pid_file = "{lbd.pid_file}";\n' + PROXY, server=server, wait=False)
    assert second.wait_exit(10) == 1
    assert second.stderr() == (f'lbd: already running with pid {lbd.master_pid} (pid file '
                               f'"{lbd.pid_file}"); stop it first or use another pid_file\n')
    assert helpers.listening_sockets(second.port) == 0
    with open(lbd.pid_file) as f:
        assert f.read() == f"{lbd.master_pid}\n"
    assert lbd.running()


def test_lbctl_without_a_running_lbd_says_so(lbd):
    lbd.write_config(PROXY, server="127.0.0.1:9")
    out = lbd.lbctl("stop")
    assert (out.returncode, out.stdout, out.stderr) == (
        1, "", f'lbctl: cannot read pid file "{lbd.pid_file}": No such file or directory '
               "(is lbd running?)\n")


def test_lbctl_quit_stops_lbd(lbd, backend):
    server = backend(helpers.echo)
    lbd.start(PROXY, server=server)
    out = lbd.lbctl("quit")
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")
    assert lbd.wait_exit(5) == 0
    assert_nothing_left(lbd)
