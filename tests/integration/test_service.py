"""lbd under a service manager: the sd_notify datagrams (READY=1 once the
workers serve, RELOADING=1 then READY=1 around a reload, STOPPING=1),
sent straight to NOTIFY_SOCKET (a path or an abstract name), and
worker_rlimit_nofile raising the open-files limit of every process."""

import os
import socket
import subprocess

import pytest

from helpers import LBD, wait_until

CONF = """
$extra
listeners = ( { protocol = "http"; listen = "$listen";
                routes = ( { return = { status = 200; }; } ); } );
"""


def notifications(sock, until, timeout=10):
    """Datagrams read until one equals `until` (its text)."""
    got = []
    sock.settimeout(timeout)
    while True:
        data = sock.recv(4096).decode()
        got.append(data)
        if data.split("\n")[0] == until:
            return got


@pytest.mark.parametrize("abstract", [False, True])
def test_the_service_manager_hears_ready_reloading_and_stopping(lbd, tmp_path, abstract,
                                                                monkeypatch):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"\0lbd-test-{os.getpid()}-{id(sock)}"
        sock.bind(name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name[1:])
    else:
        path = str(tmp_path / "notify.sock")
        sock.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
    try:
        lbd.start(CONF, extra="")
        assert notifications(sock, "READY=1") == ["READY=1"]
        assert lbd.reload().returncode == 0
        got = notifications(sock, "READY=1")
        assert got[0].startswith("RELOADING=1\nMONOTONIC_USEC="), got
        assert got[-1] == "READY=1"
        lbd.lbctl("quit")
        assert "STOPPING=1" in notifications(sock, "STOPPING=1")
    finally:
        sock.close()


def nofile(pid):
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3]), int(line.split()[4])
    return None


def test_worker_rlimit_nofile_raises_the_limit_of_every_process(lbd):
    # the shell that starts lbd has a low soft limit and a higher hard one
    lbd.start(CONF, extra="", wrapper=["/usr/bin/prlimit", "--nofile=256:4096"])
    for pid in [lbd.master_pid] + lbd.workers():
        assert nofile(pid) == (4096, 4096), "by default: the hard limit"
    lbd.cleanup()


def may_raise_hard_limits():
    """CAP_SYS_RESOURCE (bit 24 of the effective capabilities)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> 24 & 1)
    return False


def test_worker_rlimit_nofile_above_the_hard_limit(lbd_factory):
    lbd = lbd_factory("raised")
    lbd.start(CONF, extra="worker_rlimit_nofile = 8192;",
              wrapper=["/usr/bin/prlimit", "--nofile=256:4096"])
    if may_raise_hard_limits():
        want = (8192, 8192)
    else:
        # not allowed here (a container without CAP_SYS_RESOURCE): the
        # hard limit, and a line that says so
        want = (4096, 4096)
        wait_until(lambda: "cannot raise the open-files limit to 8192" in
                   open(lbd.error_log_path).read(), 5, what="the warning")
    for pid in [lbd.master_pid] + lbd.workers():
        assert nofile(pid) == want


def test_a_bad_rlimit_is_a_load_error(lbd):
    from helpers import lbd_test
    lbd.write_config(CONF, extra="worker_rlimit_nofile = -5;")
    r = lbd_test(lbd.conf_path)
    assert r.returncode == 1 and "worker_rlimit_nofile" in r.stdout + r.stderr
