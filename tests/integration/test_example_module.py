"""The example modules build into lbd with ./configure --add-module: echo
(modules/examples/echo) serves its own listener protocol, count
(modules/examples/count) joins the http log phase beside the access log.
The proof that a module outside the built-in list needs nothing but the
public interface (SPEC §10, docs/modules.md)."""

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
    subprocess.run(["sh", "./configure", "--add-module=modules/examples/echo",
                    "--add-module=modules/examples/count"] + extra,
                   cwd=src, check=True, stdout=subprocess.DEVNULL, timeout=120)
    subprocess.run(["make", "-s", "-j2", "objs/lbd"], cwd=src, check=True,
                   stdout=subprocess.DEVNULL, timeout=300)
    return src / "objs" / "lbd"


def test_example_module_is_listed_by_lbd_V(lbd_with_echo):
    out = subprocess.run([lbd_with_echo, "-V"], capture_output=True, text=True, check=True)
    assert "example_echo example_count" in out.stdout.splitlines()[-1]


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


def start(lbd, tmp_path, listeners):
    """lbd running one worker with the given listeners (port filled in)."""
    port = free_port()
    conf = tmp_path / "lbd.conf"
    conf.write_text(f'''
workers = 1;
pid_file = "{tmp_path}/lbd.pid";
error_log = "{tmp_path}/error.log";
listeners = ( {listeners.replace("$listen", f"127.0.0.1:{port}")} );
''')
    proc = subprocess.Popen([lbd, "-f", "-p", str(tmp_path), "-c", str(conf)])
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            return proc, port
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                stop(proc)
                raise
            time.sleep(0.05)


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def exchange(port, data):
    """Sends data on a new connection, ends our side; all the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return got
            got += chunk


def test_example_module_serves_its_protocol(lbd_with_echo, tmp_path):
    proc, port = start(lbd_with_echo, tmp_path, '''{ protocol = "echo"; listen = "$listen";
                banner = "hello\\n"; }''')
    try:
        assert exchange(port, b"ping 1234") == b"hello\nping 1234"
    finally:
        stop(proc)


def logged_count(port, path="/ok"):
    """The X-Logged field of a response to GET path on its own connection."""
    data = exchange(port, f"GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                    .encode())
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in head[1:])
    return int(head[0].split()[1]), int(fields["X-Logged"])


def test_a_second_module_joins_the_log_phase(lbd_with_echo, tmp_path):
    # the count module's log handler runs once per finished request, after
    # its response (so a response shows the requests before it), beside
    # the access log, for answered, refused and cut-off requests alike
    proc, port = start(lbd_with_echo, tmp_path, '''{ protocol = "http"; listen = "$listen";
        count_header = "X-Logged";
        access_log = { path = "access.log"; format = "$request_uri $status"; };
        routes = ( { path = "/ok"; return = { status = 200; body = "ok"; }; } ); }''')
    try:
        assert logged_count(port) == (200, 0)
        assert logged_count(port) == (200, 1)
        assert logged_count(port, "/missing") == (404, 2)
        # no request line: no log phase
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        # a request whose client leaves in the middle of its body
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"POST /ok HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
            s.shutdown(socket.SHUT_WR)
        access_log = tmp_path / "access.log"
        deadline = time.monotonic() + 10       # the access log is flushed within 1s
        while not access_log.exists() or len(access_log.read_text().splitlines()) < 4:
            assert time.monotonic() < deadline, "4 lines in the access log"
            time.sleep(0.05)
        assert logged_count(port) == (200, 4)
        stop(proc)
        assert access_log.read_text().splitlines() == [
            "/ok 200", "/ok 200", "/missing 404", "/ok ", "/ok 200"]
    finally:
        stop(proc)
