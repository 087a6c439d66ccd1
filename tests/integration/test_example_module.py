"""The example modules build into lbd with ./configure --add-module: echo
(modules/examples/echo) serves its own listener protocol, count
(modules/examples/count) joins the http log phase beside the access log,
upper (modules/examples/upper) is a body filter on the output path, first
(modules/examples/first) a balancer that `balance = "first"` names. The
proof that a module outside the built-in list needs nothing but the
public interface (SPEC §10, docs/modules.md)."""

import os
import random
import shutil
import signal
import socket
import subprocess
import time

import pytest

from http_backend import RecordingBackend

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
                    "--add-module=modules/examples/count",
                    "--add-module=modules/examples/upper",
                    "--add-module=modules/examples/first"] + extra,
                   cwd=src, check=True, stdout=subprocess.DEVNULL, timeout=120)
    subprocess.run(["make", "-s", "-j2", "objs/lbd"], cwd=src, check=True,
                   stdout=subprocess.DEVNULL, timeout=300)
    return src / "objs" / "lbd"


def test_example_module_is_listed_by_lbd_V(lbd_with_echo):
    out = subprocess.run([lbd_with_echo, "-V"], capture_output=True, text=True, check=True)
    assert ("example_echo example_count example_upper example_first"
            in out.stdout.splitlines()[-1])


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
                                  f'idle_timeout, listen, max_bytes, max_conns_per_ip, name, protocol')


def start(lbd, tmp_path, listeners, top=""):
    """lbd running one worker with the given listeners (port filled in),
    after the top-level settings in top."""
    port = free_port()
    conf = tmp_path / "lbd.conf"
    conf.write_text(f'''{top}
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


def test_a_balancer_module_is_chosen_by_balance(lbd_with_echo, tmp_path):
    # balance = "first": every request goes to the first server written
    # while it is usable, to the next one once it is not
    with RecordingBackend(name="two") as two:
        with RecordingBackend(name="one") as one:
            proc, port = start(lbd_with_echo, tmp_path, """{ protocol = "http";
                listen = "$listen"; routes = ( { upstream = "web"; } ); }""",
                top=f"""upstreams = {{ web = {{ balance = "first"; keepalive = 0;
                    servers = ( {{ address = "127.0.0.1:{one.port}"; }},
                                {{ address = "127.0.0.1:{two.port}"; }} ); }}; }};""")
            try:
                for _ in range(10):
                    assert exchange(port, GET).startswith(b"HTTP/1.1 200")
                assert len(one.requests) == 10 and len(two.requests) == 0
            except BaseException:
                stop(proc)
                raise
        try:
            # one is gone: its refusal sends the request on to two
            for _ in range(3):
                assert exchange(port, GET).startswith(b"HTTP/1.1 200")
            assert len(two.requests) == 3
        finally:
            stop(proc)
    bad = tmp_path / "bad.conf"
    bad.write_text('upstreams = { web = { balance = "firts"; '
                   'servers = ( { address = "127.0.0.1:1"; } ); }; };\n')
    out = subprocess.run([lbd_with_echo, "-t", "-p", str(tmp_path), "-c", str(bad)],
                         capture_output=True, text=True)
    assert out.returncode == 1
    assert ('invalid value "firts" for "balance" (did you mean "first"?); expected one of: '
            'round_robin, least_conn, random_two, hash, first') in out.stderr


GET = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"


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


# The upper example: a header filter decides, a body filter upper-cases ----

MIXED = "Hello, World: abc xyz \u00e9t\u00e9 0123\n".encode()   # non-ASCII stays as it is
# larger than the send buffer the kernel grows for lbd on loopback (1 MB
# fits in it whole): the client's slowness must reach the filter
BIG_SIZE = 4 << 20


def big_body():
    """BIG_SIZE bytes of mixed-case text, the same every time."""
    letters = b"abcdefghijklmnopqrstuvwxyzABCXYZ 0123\n"
    return random.Random(5).randbytes(BIG_SIZE).translate(
        bytes(letters[i % len(letters)] for i in range(256)))


def upper_behaviour(req):
    """The backend's answer per path: text/plain (with a charset) unless
    the path names another type."""
    if req.target == "/big":
        return {"body": big_body()}
    if req.target == "/chunked":
        return {"body": MIXED, "framing": "chunked", "chunk_size": 5,
                "trailers": [("X-Sum", "abc")]}
    if req.target == "/html":
        return {"body": MIXED, "fields": {"Content-Type": "text/html"}}
    if req.target == "/plainer":
        return {"body": MIXED, "fields": {"Content-Type": "text/plainer"}}
    return {"body": MIXED, "fields": {"Content-Type": "Text/Plain; charset=utf-8"}}


@pytest.fixture
def upper_lbd(lbd_with_echo, tmp_path):
    """lbd with a backend behind /up/ (upper = true) and /as-is/ (not), a
    return route with upper = true and one without."""
    with RecordingBackend(upper_behaviour) as backend:
        proc, port = start(lbd_with_echo, tmp_path, '''{ protocol = "http";
            listen = "$listen";
            routes = (
              { path_regex = "^/up(/.*)$"; rewrite = "$1"; upstream = "web"; upper = true; },
              { path_regex = "^/as-is(/.*)$"; rewrite = "$1"; upstream = "web"; },
              { path = "/said"; upper = true;
                return = { status = 200; body = "Said: $method ok\\n"; }; },
              { path = "/said-as-is"; return = { status = 200; body = "Said: ok\\n"; }; }
            ); }''', top=f'upstreams = {{ web = {{ servers = ( {{ address = '
                        f'"{backend.address}"; }} ); }}; }};')
        try:
            yield port
        finally:
            stop(proc)


def get(port, path, rcvbuf=None, pause=0.0):
    """(status line, head fields, body as sent) of GET path on its own
    connection; with rcvbuf, a small receive buffer and a pause before
    reading: lbd must wait for the client."""
    sock = socket.socket()
    with sock:
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(20)
        sock.connect(("127.0.0.1", port))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode())
        time.sleep(pause)
        data = bytearray()
        while True:
            chunk = sock.recv(rcvbuf or 65536)
            if not chunk:
                break
            data += chunk
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
    return lines[0], fields, body


def get_body(port, path):
    """The body of a 200 to GET path."""
    status, _, body = get(port, path)
    assert status.startswith("HTTP/1.1 200 "), status
    return body


def dechunk(body):
    """(data, trailer lines) of a chunked body."""
    data, rest = b"", body
    while True:
        line, _, rest = rest.partition(b"\r\n")
        size = int(line, 16)
        if size == 0:
            break
        assert rest[size:size + 2] == b"\r\n"
        data, rest = data + rest[:size], rest[size + 2:]
    assert rest.endswith(b"\r\n")
    return data, rest[:-2].split(b"\r\n")[:-1]


def test_upper_upper_cases_a_proxied_text_plain_body(upper_lbd):
    status, fields, body = get(upper_lbd, "/up/plain")
    assert status == "HTTP/1.1 200 OK"
    assert body == MIXED.upper() and body != MIXED
    assert fields["content-length"] == str(len(MIXED))
    assert fields["content-type"] == "Text/Plain; charset=utf-8"


def test_upper_upper_cases_a_return_body(upper_lbd):
    status, fields, body = get(upper_lbd, "/said")
    assert body == b"SAID: GET OK\n" and fields["content-length"] == str(len(body))


def test_upper_leaves_routes_that_do_not_ask_alone(upper_lbd):
    assert get_body(upper_lbd, "/as-is/plain") == MIXED
    assert get_body(upper_lbd, "/said-as-is") == b"Said: ok\n"


def test_upper_leaves_other_types_alone(upper_lbd):
    assert get_body(upper_lbd, "/up/html") == MIXED
    assert get_body(upper_lbd, "/up/plainer") == MIXED


def test_upper_keeps_up_with_a_slow_client_on_a_large_body(upper_lbd):
    # 4 MB through the proxy to a client with a 4 KiB receive buffer that
    # starts reading late: the filter's output waits for the writer, and
    # no byte is lost, doubled or left as it was
    status, fields, body = get(upper_lbd, "/up/big", rcvbuf=4096, pause=0.5)
    assert fields["content-length"] == str(BIG_SIZE)
    assert len(body) == BIG_SIZE and body == big_body().upper()


def test_upper_keeps_the_trailers_of_a_chunked_response(upper_lbd):
    status, fields, body = get(upper_lbd, "/up/chunked")
    assert fields["transfer-encoding"] == "chunked"
    assert dechunk(body) == (MIXED.upper(), [b"X-Sum: abc"])


def test_upper_at_listener_level_covers_routes_and_errors(lbd_with_echo, tmp_path):
    # a route that says nothing follows its listener, one that says false
    # does not; lbd's own 404 is a text/plain response like any other
    proc, port = start(lbd_with_echo, tmp_path, '''{ protocol = "http";
        listen = "$listen"; upper = true;
        routes = (
          { path = "/a"; return = { status = 200; body = "a-b"; }; },
          { path = "/b"; upper = false; return = { status = 200; body = "a-b"; }; }
        ); }''')
    try:
        assert get_body(port, "/a") == b"A-B"
        assert get_body(port, "/b") == b"a-b"
        status, _, body = get(port, "/c")
        assert status == "HTTP/1.1 404 Not Found" and body == b"404 NOT FOUND\n"
    finally:
        stop(proc)
