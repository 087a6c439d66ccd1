"""The Makefile's user-facing targets (SPEC §1): `make install` with DESTDIR
and PREFIX, and `make run` on ports given with PORT and BACKEND_PORTS. Both
run make in the source tree on the binaries already built; `make run` is
started in its own process group and always ended by that group's id."""

import os
import signal
import subprocess
import time

import helpers

ROOT = helpers.ROOT


def make_env():
    """The environment without the outer make's: a test run from `make
    test` must not join its jobserver or think it is a sub-make."""
    env = dict(os.environ)
    for name in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "PREFIX"):
        env.pop(name, None)
    return env


def make(*args, timeout=300):
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, env=make_env(),
                          capture_output=True, text=True, timeout=timeout)


def test_make_install_honours_destdir_and_prefix(tmp_path):
    dest = tmp_path / "stage"
    out = make("install", f"DESTDIR={dest}", "PREFIX=/opt/x")
    assert out.returncode == 0, out.stdout + out.stderr
    root = dest / "opt" / "x"
    for name in ("lbd", "lbctl"):
        assert os.access(root / "sbin" / name, os.X_OK)
    assert (root / "conf" / "lbd.conf").read_bytes() == (
        open(os.path.join(ROOT, "conf", "lbd.conf"), "rb").read())
    assert (root / "conf" / "examples" / "lbd.conf").is_file()
    assert (root / "logs").is_dir()
    # the installed programs default to the prefix they were installed under
    usage = helpers.run([root / "sbin" / "lbd", "-h"]).stdout
    assert "prefix for relative paths (default /opt/x)" in usage
    # a second install keeps the configuration in place
    (root / "conf" / "lbd.conf").write_text("# mine\n")
    out = make("install", f"DESTDIR={dest}", "PREFIX=/opt/x/")
    assert out.returncode == 0, out.stdout + out.stderr
    assert (root / "conf" / "lbd.conf").read_text() == "# mine\n"
    assert "keeping the existing" in out.stdout


def test_make_install_refuses_a_relative_prefix(tmp_path):
    out = make("install", f"DESTDIR={tmp_path}", "PREFIX=opt/x")
    assert out.returncode != 0
    assert 'PREFIX must be an absolute directory, not "opt/x"' in out.stderr
    assert list(tmp_path.iterdir()) == []


def get(port):
    """The body of GET / on 127.0.0.1:port, or None while nothing answers."""
    try:
        with helpers.connect(f"127.0.0.1:{port}", timeout=2) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n")
            data = helpers.recv_all(s)
    except OSError:
        return None
    return data.split(b"\r\n\r\n", 1)[1].decode() if b"\r\n\r\n" in data else None


def test_make_run_listens_on_PORT_before_BACKEND_PORTS():
    port = helpers.free_port()
    while helpers.free_port() != port + 1:  # PORT + 1 is the tcp listener's
        port = helpers.free_port()
    backends = [helpers.free_port(), helpers.free_port()]
    proc = subprocess.Popen(["make", "--no-print-directory", "run", f"PORT={port}",
                             "BACKEND_PORTS=%d %d" % tuple(backends)],
                            cwd=ROOT, env=make_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        seen = set()
        deadline = time.monotonic() + 60
        while len(seen) < 2:
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "make run did not answer on PORT"
            body = get(port)
            if body:
                seen.add(body)
            else:
                time.sleep(0.1)
        assert seen == {f"hello from backend {p}\n" for p in backends}
        assert helpers.listening_sockets(port + 1) > 0       # the tcp listener
    finally:
        # Ctrl-C: the whole group (make, the script, lbd, the backends)
        os.killpg(proc.pid, signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate(timeout=10)
    text = out.decode()
    assert f"curl http://127.0.0.1:{port}/" in text
    for p in [port] + backends:
        assert helpers.listening_sockets(p) == 0
