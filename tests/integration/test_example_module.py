"""The example module (modules/examples/echo) builds into lbd with
./configure --add-module and serves its own listener protocol: the proof
that a module outside the built-in list needs nothing but the public
interface (SPEC §10, docs/modules.md)."""

import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lbd_with_echo(tmp_path_factory):
    src = tmp_path_factory.mktemp("echo-build")
    for name in ("configure", "Makefile", "auto", "core", "modules", "conf"):
        path = os.path.join(ROOT, name)
        if os.path.isdir(path):
            shutil.copytree(path, src / name)
        else:
            shutil.copy2(path, src / name)
    extra = []
    if os.environ.get("LBD_CONFIGURE_ARGS"):
        extra = os.environ["LBD_CONFIGURE_ARGS"].split()
    subprocess.run(["sh", "./configure", "--add-module=modules/examples/echo"] + extra,
                   cwd=src, check=True, stdout=subprocess.DEVNULL, timeout=120)
    subprocess.run(["make", "-s", "-j2", "objs/lbd"], cwd=src, check=True,
                   stdout=subprocess.DEVNULL, timeout=300)
    return src / "objs" / "lbd"


def test_example_module_is_listed_by_lbd_V(lbd_with_echo):
    out = subprocess.run([lbd_with_echo, "-V"], capture_output=True, text=True, check=True)
    assert "example_echo" in out.stdout.splitlines()[-1]


def test_example_module_settings_are_validated(lbd_with_echo, tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text('listeners = ( { protocol = "echo"; listen = "127.0.0.1:1";\n'
                    '  max_byte = "1k"; } );\n')
    out = subprocess.run([lbd_with_echo, "-t", "-p", str(tmp_path), "-c", str(conf)],
                         capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stderr.strip() == (f'{conf}:2: unknown setting "max_byte" in listener '
                                  f'"echo:127.0.0.1:1" (did you mean "max_bytes"?); valid '
                                  f'here: accept_proxy_protocol, allow, banner, deny, '
                                  f'idle_timeout, listen, max_bytes, name, protocol')


def test_example_module_serves_its_protocol(lbd_with_echo, tmp_path):
    port = free_port()
    conf = tmp_path / "echo.conf"
    conf.write_text(f'''
workers = 1;
pid_file = "{tmp_path}/lbd.pid";
error_log = "{tmp_path}/error.log";
listeners = ( {{ protocol = "echo"; listen = "127.0.0.1:{port}";
                banner = "hello\\n"; }} );
''')
    proc = subprocess.Popen([lbd_with_echo, "-f", "-p", str(tmp_path), "-c", str(conf)])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        with sock:
            sock.sendall(b"ping 1234")
            sock.shutdown(socket.SHUT_WR)
            data = b""
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        assert data == b"hello\nping 1234"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
