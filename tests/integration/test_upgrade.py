"""Binary upgrade by descriptor handoff (SPEC §8, docs/operations.md): under
load not one request fails and not one connection is refused; the pid
files; tcp, udp and admin sockets go over; two upgrades in a row between two
builds; every failure (no binary, not lbd, a configuration it cannot load,
a new master that dies or never gets ready, a corrupt handoff) leaves the
old master serving with every socket and says why; a second upgrade while
one is under way is refused; lbd -f as PID 1 of a new PID namespace stays
as a supervisor across upgrades and rollbacks."""

import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

import pytest

import helpers
from helpers import LBD, LBCTL, alive, children, wait_until
from test_admin import admin_json

CONF = """
upgrade_timeout = "$timeout";
upstreams = { echo = { servers = ( { address = "$echo"; } ); }; };
listeners = (
  { name = "web"; protocol = "http"; listen = "$listen";
    routes = ( { path_prefix = "/"; return = { status = 200; body = "ok\\n"; }; } ); },
  { name = "tcp"; protocol = "tcp"; listen = "127.0.0.1:$tcp"; upstream = "echo"; }
);
"""


@pytest.fixture
def echo_backend():
    b = helpers.Backend(helpers.echo)
    yield b
    b.stop()


def start(lbd, echo, timeout="10s", foreground=False):
    tcp = helpers.free_port()
    lbd.start(CONF, echo=echo, tcp=tcp, timeout=timeout, foreground=foreground,
              ports=[lbd.port, tcp])
    lbd.tcp_address = f"127.0.0.1:{tcp}"
    return lbd


def build_copy(lbd, name="lbd-b"):
    """A second build: a copy of the binary at another path."""
    path = os.path.join(lbd.dir, name)
    shutil.copy2(LBD, path)
    return path


def script(lbd, name, body):
    path = os.path.join(lbd.dir, name)
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body + "\n")
    os.chmod(path, 0o755)
    return path


get = helpers.http_get


def upgrade(lbd, binary=None, timeout=60):
    args = ["upgrade"] + (["--binary", binary] if binary else [])
    return lbd.lbctl(*args, timeout=timeout)


def new_master(lbd, r):
    m = re.search(r"new master (\d+)", r.stdout)
    assert r.returncode == 0 and m, (r.stdout, r.stderr)
    pid = int(m.group(1))
    old = lbd.master_pid
    lbd.follow(pid)
    return old, pid


def test_upgrade_under_load_loses_nothing(lbd, echo_backend):
    start(lbd, echo_backend)
    old_workers = lbd.workers()
    # a request begun before the handoff, finished after it
    waiting = socket.create_connection(("127.0.0.1", lbd.port), timeout=10)
    waiting.sendall(b"GET / HTTP/1.1\r\n")
    with helpers.Load(lbd.address, threads=4, duration=4.0,
                      action=lambda a: get(a)[0]) as load:
        time.sleep(0.5)
        r = upgrade(lbd, build_copy(lbd))
        old, new = new_master(lbd, r)
        time.sleep(1.0)
    assert load.failures == [], load.failures[:5]
    assert len(load.attempts) > 100
    assert all(a.value == 200 for a in load.attempts)
    waiting.sendall(b"Host: x\r\nConnection: close\r\n\r\n")
    assert waiting.recv(100).startswith(b"HTTP/1.1 200")
    waiting.close()
    # the old master and its workers go; the pid files say who is who
    wait_until(lambda: not alive(old) and not any(alive(w) for w in old_workers), 15,
               what="the old master and its workers to exit")
    assert int(open(lbd.pid_file).read()) == new
    assert not os.path.exists(lbd.pid_file + ".oldbin")
    log = open(lbd.error_log_path).read()
    assert f"binary upgrade: new master {new}" in log and "handed over" in log
    # every listener and the admin socket are the new master's now
    with socket.create_connection(("127.0.0.1", int(lbd.tcp_address.split(":")[1])), 5) as s:
        s.sendall(b"ping")
        assert s.recv(4) == b"ping"
    status, body = admin_json(lbd, "GET", "/status")
    assert status == 200 and body["master_pid"] == new


def test_two_upgrades_in_a_row_between_two_builds(lbd, echo_backend):
    start(lbd, echo_backend)
    b = build_copy(lbd)
    _, first = new_master(lbd, upgrade(lbd, b))
    wait_until(lambda: not os.path.exists(lbd.pid_file + ".oldbin"), 15, what="handover")
    _, second = new_master(lbd, upgrade(lbd, LBD))
    assert first != second
    wait_until(lambda: not alive(first), 15, what="the first new master to go")
    assert os.path.realpath(f"/proc/{second}/exe") == os.path.realpath(LBD)
    assert get(lbd.address)[0] == 200


def test_an_upgrade_under_way_refuses_another(lbd, echo_backend):
    start(lbd, echo_backend, timeout="3s")
    slow = script(lbd, "slow.sh", "sleep 20")
    first = subprocess.Popen([LBCTL, "-c", lbd.conf_path, "-p", lbd.dir + "/", "upgrade",
                              "--binary", slow], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    wait_until(lambda: os.path.exists(lbd.pid_file + ".oldbin"), 5, what="the upgrade to start")
    r = upgrade(lbd, LBD)
    assert r.returncode == 1 and "an upgrade is under way" in r.stderr, r.stderr
    out, err = first.communicate(timeout=30)
    assert first.returncode == 1
    assert get(lbd.address)[0] == 200


@pytest.mark.parametrize("case", ["missing", "directory", "not_lbd", "timeout", "crash",
                                  "never_ready"])
def test_a_failed_upgrade_leaves_the_old_master_serving(lbd, echo_backend, case):
    start(lbd, echo_backend, timeout="2s")
    master, workers = lbd.master_pid, lbd.workers()
    if case == "missing":
        # lbctl itself finds no such file: the master is not asked
        binary, reason = os.path.join(lbd.dir, "no-such-lbd"), "cannot run"
    elif case == "directory":
        # lbctl can search it; the master's exec fails
        binary = os.path.join(lbd.dir, "a-directory")
        os.mkdir(binary)
        reason = "could not be run"
    elif case == "not_lbd":
        binary = script(lbd, "exit3.sh", "exit 3")
        reason = "not lbd"
    elif case == "timeout":
        binary = script(lbd, "sleep.sh", "sleep 30")
        reason = "not lbd"
    elif case == "crash":
        # says hello, takes the sockets, then dies before it is ready
        binary = script(lbd, "crash.sh", f"exec {sys.executable} {os.path.abspath(__file__)} "
                        "--fake-new-master crash")
        reason = "died before it was ready"
    else:
        # says hello, takes the sockets, never says it is ready
        binary = script(lbd, "hang.sh", f"exec {sys.executable} {os.path.abspath(__file__)} "
                        "--fake-new-master hang")
        reason = "not ready within upgrade_timeout"
    t0 = time.monotonic()
    r = upgrade(lbd, binary)
    assert r.returncode == 1, r.stdout
    assert reason in r.stderr, r.stderr
    assert case == "missing" or "keeps serving" in r.stderr
    assert time.monotonic() - t0 < 20
    assert int(open(lbd.pid_file).read()) == master
    assert not os.path.exists(lbd.pid_file + ".oldbin")
    assert lbd.workers() == workers
    assert get(lbd.address)[0] == 200
    with socket.create_connection(("127.0.0.1", int(lbd.tcp_address.split(":")[1])), 5) as s:
        s.sendall(b"ping")
        assert s.recv(4) == b"ping"
    assert case == "missing" or "binary upgrade failed" in open(lbd.error_log_path).read()
    # and a real upgrade still works after it
    _, new = new_master(lbd, upgrade(lbd, LBD))
    assert get(lbd.address)[0] == 200


def test_a_configuration_the_new_binary_cannot_load(lbd, echo_backend):
    """USR2 straight to the master (lbctl would refuse the file itself)."""
    start(lbd, echo_backend)
    master = lbd.master_pid
    with open(lbd.conf_path, "a") as f:
        f.write("\nbogus_setting = 1;\n")
    os.kill(master, signal.SIGUSR2)
    wait_until(lambda: "binary upgrade failed" in open(lbd.error_log_path).read(), 15,
               what="the failure line")
    log = open(lbd.error_log_path).read()
    assert re.search(r'binary upgrade failed: .*unknown setting "bogus_setting"', log), log[-2000:]
    assert int(open(lbd.pid_file).read()) == master
    assert get(lbd.address)[0] == 200
    r = upgrade(lbd)
    assert r.returncode == 1 and "bogus_setting" in r.stderr


def test_a_corrupt_handoff_makes_the_new_master_give_up(tmp_path):
    """A fake old master hands lbd garbage: it says why and exits, listening
    on nothing."""
    port = helpers.free_port()
    conf = tmp_path / "lbd.conf"
    conf.write_text(f"""
workers = 1; pid_file = "{tmp_path}/lbd.pid"; error_log = "{tmp_path}/error.log";
admin_socket = "{tmp_path}/admin.sock";
listeners = ( {{ protocol = "http"; listen = "127.0.0.1:{port}";
                 routes = ( {{ return = {{ status = 200; }}; }} ); }} );
""")
    for garbage in [b"S" + b"LBDUPGRD" + b"\x01" + b"\x00\x00\x00\x05\x00\x00\x00\x00" + b"\x07",
                    b"S" + b"NOTLBD!!" + b"\x01" * 9,
                    b"S" + b"LBDUPGRD" + b"\x09" + b"\x00" * 8,
                    b"Q"]:
        old, new = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(os.environ, LBD_UPGRADE_FD=str(new.fileno()))
        p = subprocess.Popen([LBD, "-f", "-c", str(conf), "-p", str(tmp_path)], env=env,
                             pass_fds=[new.fileno()], stderr=subprocess.PIPE,
                             stdout=subprocess.DEVNULL)
        new.close()
        old.settimeout(10)
        hello = old.recv(64)
        assert hello[:2] == b"H\x01" and struct.unpack(">I", hello[2:6])[0] == p.pid
        try:
            old.send(garbage)
            if garbage != b"Q":
                old.send(b"E")
        except OSError:
            pass                        # it gave up already
        answer = old.recv(1024)
        assert answer[:1] == b"X", answer
        assert p.wait(10) != 0
        err = p.stderr.read().decode()
        assert "binary upgrade" in err or "handoff" in answer.decode(errors="replace")
        assert helpers.listening_sockets(port) == 0
        old.close()


def test_a_descriptor_of_the_wrong_kind_is_refused(tmp_path):
    """A well-formed handoff whose descriptor is not what it says: a
    regular file, then a datagram socket named as a listening stream."""
    port = helpers.free_port()
    conf = tmp_path / "lbd.conf"
    conf.write_text(f"""
workers = 1; pid_file = "{tmp_path}/lbd.pid"; error_log = "{tmp_path}/error.log";
admin_socket = "{tmp_path}/admin.sock";
listeners = ( {{ protocol = "http"; listen = "127.0.0.1:{port}";
                 routes = ( {{ return = {{ status = 200; }}; }} ); }} );
""")
    sin = struct.pack("=H", socket.AF_INET) + struct.pack(">H", port) \
        + socket.inet_aton("127.0.0.1") + b"\0" * 8
    text = f"127.0.0.1:{port}".encode()
    record = b"\x01" + struct.pack(">I", 1) + struct.pack(">H", len(sin)) + sin + b"\x00" \
        + struct.pack(">H", len(text)) + text
    message = b"S" + b"LBDUPGRD" + b"\x01" + struct.pack(">II", 1, 0) + record
    wrong = [open(conf, "rb"), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)]
    wrong[1].bind(("127.0.0.1", port))
    for fake in wrong:
        old, new = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(os.environ, LBD_UPGRADE_FD=str(new.fileno()))
        p = subprocess.Popen([LBD, "-f", "-c", str(conf), "-p", str(tmp_path)], env=env,
                             pass_fds=[new.fileno()], stderr=subprocess.PIPE,
                             stdout=subprocess.DEVNULL)
        new.close()
        old.settimeout(10)
        assert old.recv(64)[:1] == b"H"
        old.send(message)
        old.sendmsg([b"F" + struct.pack(">I", 1)],
                    [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fake.fileno()))])
        try:
            old.send(b"E")
        except OSError:
            pass
        answer = old.recv(1024)
        assert answer[:1] == b"X" and b"is not a listening stream socket" in answer, answer
        assert p.wait(10) != 0
        assert helpers.listening_sockets(port) == 0
        old.close()
        fake.close()


def fake_new_master(mode):
    """Run as the new binary by a test: speaks the handoff, then misbehaves."""
    fd = int(os.environ["LBD_UPGRADE_FD"])
    s = socket.socket(fileno=fd)
    s.send(b"H\x01" + struct.pack(">I", os.getpid()))
    s.settimeout(10)
    while True:
        msg, anc, flags, addr = s.recvmsg(1 << 18, socket.CMSG_SPACE(4 * 256))
        if not msg or msg[:1] == b"E":
            break
    if mode == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    time.sleep(60)              # "hang": the old master gives up and stops it


# PID 1 of a new PID namespace --------------------------------------------------

def unshare_available():
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nsenter"):
        return False
    r = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"],
                       capture_output=True, timeout=10)
    return r.returncode == 0


@pytest.mark.skipif(not unshare_available(), reason="unshare --pid needs root and util-linux")
def test_pid1_in_a_namespace_supervises_across_upgrades(lbd, echo_backend):
    tcp = helpers.free_port()
    lbd.write_config(CONF, echo=echo_backend, tcp=tcp, timeout="3s")
    outer = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", LBD, "-f",
                              "-c", lbd.conf_path, "-p", lbd.dir + "/"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # unshare forks lbd: the namespace's PID 1 is unshare's child
        pid1 = wait_until(lambda: (children(outer.pid) or [None])[0], 10, what="PID 1")
        lbd._remember(pid1)
        wait_until(lambda: helpers.listening_sockets(lbd.port) >= 2, 15, what="lbd to listen")
        assert open(lbd.pid_file).read().strip() == "1"
        # from outside, the pid file's "1" is the host's init: lbctl refuses
        r = lbd.lbctl("reload")
        assert r.returncode == 1 and "not lbd" in r.stderr, r.stderr

        def inside(*args):
            return subprocess.run(["nsenter", "-t", str(pid1), "-p", "-m", LBCTL, "-c",
                                   lbd.conf_path, "-p", lbd.dir + "/"] + list(args),
                                  capture_output=True, text=True, timeout=60)
        r = inside("upgrade", "--binary", build_copy(lbd))
        assert r.returncode == 0, r.stderr
        # PID 1 stays: the supervisor; the new master is its child
        wait_until(lambda: open(f"/proc/{pid1}/comm").read().strip() == "lbd-supervisor", 15,
                   what="PID 1 to become the supervisor")
        assert get(lbd.address)[0] == 200
        ns_master = open(lbd.pid_file).read().strip()
        assert ns_master != "1"
        # a failed upgrade leaves it serving; a second upgrade works
        r = inside("upgrade", "--binary", script(lbd, "bad.sh", "exit 1"))
        assert r.returncode == 1 and "keeps serving" in r.stderr
        assert get(lbd.address)[0] == 200
        r = inside("upgrade", "--binary", LBD)
        assert r.returncode == 0, r.stderr
        assert get(lbd.address)[0] == 200
        for pid in children(pid1):
            lbd._remember(pid)
        # TERM to PID 1 (docker stop): forwarded, the master stops, all exit
        os.kill(pid1, signal.SIGTERM)
        assert outer.wait(20) == 0
        assert helpers.listening_sockets(lbd.port) == 0
    finally:
        if outer.poll() is None:
            outer.kill()
            outer.wait(5)


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--fake-new-master":
    fake_new_master(sys.argv[2])
