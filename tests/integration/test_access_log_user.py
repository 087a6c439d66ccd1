"""Log files under `user` (SPEC §3.1, §7): the master opens every log file
before forking and, on reopen, opens the new ones and hands them to the
workers, so workers running as nobody log into a directory they cannot
even enter. A log directory that vanishes or a log file deleted under lbd
is said once; lbd keeps serving and logs again after a reopen."""

import os
import re
import time

import pytest

from helpers import connect, wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")

CONF = """
user = "nobody";
listeners = ( { protocol = "http"; listen = "$listen"; name = "web";
  access_log = { path = "$logdir/access.log"; format = "$fmt"; };
  routes = ( { path_prefix = "/"; return = { status = 200; body = "ok\\n"; }; } );
} );
"""


def get(address, path):
    with connect(address) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200"), data
    return data


def read_lines(path):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def wait_lines(path, want, timeout=5):
    return wait_until(lambda: (lambda got: got if set(want) <= set(got) else None)(
        read_lines(path)), timeout, what=f"{want} in {path}")


def uid(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(f.read().split("Uid:")[1].split()[0])


@pytest.fixture
def logdir(lbd):
    """A directory only root may enter, as /var/log/lbd would be."""
    d = os.path.join(lbd.dir, "logs")
    os.mkdir(d, 0o700)
    return d


def start(lbd, logdir, fmt="$uri"):
    lbd.start(CONF, logdir=logdir, fmt=fmt)
    nobody = __import__("pwd").getpwnam("nobody").pw_uid
    for pid in lbd.workers():
        wait_until(lambda: uid(pid) == nobody, 5, what=f"worker {pid} to run as nobody")


def test_workers_running_as_nobody_write_the_access_log(lbd, logdir):
    start(lbd, logdir)
    path = os.path.join(logdir, "access.log")
    for i in range(6):
        get(lbd.address, f"/one{i}")
    wait_lines(path, [f"/one{i}" for i in range(6)])
    assert os.stat(logdir).st_mode & 0o777 == 0o700
    assert "cannot open" not in lbd.error_log()


def test_reopen_after_rename_writes_a_new_file_owned_by_the_master(lbd, logdir):
    start(lbd, logdir)
    path = os.path.join(logdir, "access.log")
    get(lbd.address, "/before")
    wait_lines(path, ["/before"])
    os.rename(path, path + ".1")
    out = lbd.lbctl("reopen")
    assert out.returncode == 0, out.stderr
    wait_until(lambda: os.path.exists(path), 5, what="a new access log")
    lbd.wait_log(r"\[notice\] \d+#\d+: reopening log files$")
    lbd.wait_log(r"\[notice\] \d+#\d+: reopened the access log \"" + re.escape(path) + '"$')
    # the workers take the new file when USR1 reaches them
    time.sleep(0.3)
    for i in range(6):
        get(lbd.address, f"/after{i}")
    wait_lines(path, [f"/after{i}" for i in range(6)])
    assert read_lines(path + ".1") == ["/before"]
    assert os.stat(path).st_uid == 0
    assert "cannot" not in lbd.error_log()


def test_reopen_hands_the_new_error_log_to_the_workers(lbd, logdir):
    start(lbd, logdir)
    rotated = lbd.error_log_path + ".1"
    os.rename(lbd.error_log_path, rotated)
    assert lbd.lbctl("reopen").returncode == 0

    def holds_new(pid):
        fds = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        return lbd.error_log_path in fds and rotated not in fds
    wait_until(lambda: all(holds_new(p) for p in [lbd.master_pid] + lbd.workers()), 5,
               what="every process to hold the new error.log")


def test_reload_opens_the_new_generations_files_in_the_master(lbd, logdir):
    start(lbd, logdir)
    path = os.path.join(logdir, "access.log")
    get(lbd.address, "/old")
    wait_lines(path, ["/old"])
    out = lbd.reload(CONF, logdir=logdir, fmt="new $uri")
    assert out.returncode == 0, out.stderr
    for i in range(6):
        get(lbd.address, f"/n{i}")
    wait_lines(path, [f"new /n{i}" for i in range(6)])
    assert "cannot open" not in lbd.error_log()


def test_a_vanished_log_directory_is_said_once_and_logging_resumes(lbd, logdir):
    start(lbd, logdir)
    path = os.path.join(logdir, "access.log")
    get(lbd.address, "/a")
    wait_lines(path, ["/a"])
    os.rename(logdir, logdir + ".old")
    assert lbd.lbctl("reopen").returncode == 0
    lbd.wait_log(r"\[error\] .*cannot reopen the access log \"" + re.escape(path)
                 + r"\"; it is written where it was until the next reopen "
                   r"\(2: No such file or directory\)")
    for _ in range(4):
        get(lbd.address, "/still")                     # lbd keeps serving
    assert lbd.error_log().count("cannot reopen the access log") == 1
    os.mkdir(logdir, 0o700)
    assert lbd.lbctl("reopen").returncode == 0
    wait_until(lambda: os.path.exists(path), 5, what="the access log in the new directory")
    time.sleep(0.3)
    for i in range(6):
        get(lbd.address, f"/back{i}")
    wait_lines(path, [f"/back{i}" for i in range(6)])
    assert "/still" in read_lines(os.path.join(logdir + ".old", "access.log"))


def test_a_deleted_log_file_is_said_once_and_reopen_brings_it_back(lbd, logdir):
    start(lbd, logdir)
    path = os.path.join(logdir, "access.log")
    get(lbd.address, "/a")
    wait_lines(path, ["/a"])
    os.unlink(path)
    for _ in range(3):
        for _ in range(5):
            get(lbd.address, "/lost")
        time.sleep(1.1)                                 # several flushes
    lbd.wait_log(r"\[warn\] .*the access log \"" + re.escape(path) + r"\" was deleted; "
                 r"its lines are lost until \"lbctl reopen\" creates it again")
    # once per worker at most, not once per flush
    assert lbd.error_log().count("was deleted") <= lbd.nworkers
    assert lbd.lbctl("reopen").returncode == 0
    wait_until(lambda: os.path.exists(path), 5, what="a new access log")
    time.sleep(0.3)
    for i in range(6):
        get(lbd.address, f"/back{i}")
    wait_lines(path, [f"/back{i}" for i in range(6)])
