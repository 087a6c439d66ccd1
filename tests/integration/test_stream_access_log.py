"""Access logs of tcp, tls and udp listeners (SPEC §3.3, §7): one line per
session when it ends, in the default format, json or a custom format with
stream variables, naming the client, the listener, the server, the bytes
each way, the duration and how the session ended. Each end reason is
produced for real."""

import json
import os
import re
import socket
import time

import pytest

import helpers
from helpers import connect, free_port, lbd_test, wait_until
from test_tls import client_ctx, pki, read_to_eof, tls_connect, tls_group  # noqa: F401 (pki: fixture)
from test_udp_proxy import UdpBackend, echo as udp_echo, start as udp_start

DEFAULT_RE = (r"(?P<addr>\S+) (?P<port>\d+) \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d "
              r"[+-]\d{4}\] (?P<proto>\w+) \"(?P<name>[^\"]*)\" (?P<up>\S+) "
              r"(?P<rx>\d+) (?P<tx>\d+) (?P<time>\d+\.\d{3}) (?P<end>\w+)")


def conf(protocol, server, log, extra="", upstream_extra=""):
    return (f'workers = 1;\nupstreams = {{ u = {{ servers = ( {{ address = "{server}"; }} ); '
            f'retries = 0; connect_timeout = "1s"; {upstream_extra} }}; }};\n'
            f'listeners = ( {{ protocol = "{protocol}"; listen = "$listen"; name = "db"; '
            f'upstream = "u";\n  access_log = {log};\n  {extra} }} );\n')


def log_path(lbd):
    return os.path.join(lbd.dir, "s.log")


def log_lines(lbd, n, timeout=5):
    def ready():
        try:
            with open(log_path(lbd)) as f:
                got = f.read().splitlines()
        except FileNotFoundError:
            return None
        return got if len(got) >= n else None
    return wait_until(ready, timeout, what=f"{n} lines in the stream access log")


def default_line(lbd):
    [line] = log_lines(lbd, 1)
    m = re.fullmatch(DEFAULT_RE, line)
    assert m, line
    return m


def json_line(lbd):
    [line] = log_lines(lbd, 1)
    return json.loads(line)


DEFAULT = '{ path = "$dir/s.log"; }'
JSON = '{ path = "$dir/s.log"; format = "json"; }'


def server_says_bye(conn, backend):
    conn.sendall(b"bye\n")
    conn.close()


# tcp --------------------------------------------------------------------------------


def test_tcp_default_line_when_the_client_closes(lbd, backend):
    server = backend(helpers.echo)
    lbd.start(conf("tcp", server.address, DEFAULT))
    with connect(lbd.address) as s:
        port = s.getsockname()[1]
        s.sendall(b"hello")
        assert s.recv(5) == b"hello"
        time.sleep(0.2)
    m = default_line(lbd)
    assert (m["addr"], int(m["port"]), m["proto"], m["name"], m["up"]) == \
        ("127.0.0.1", port, "tcp", "db", server.address)
    assert (int(m["rx"]), int(m["tx"]), m["end"]) == (5, 5, "client_closed")
    assert 0.15 <= float(m["time"]) < 5


def test_tcp_json_line_when_the_server_closes(lbd, backend):
    server = backend(server_says_bye)
    lbd.start(conf("tcp", server.address, JSON))
    with connect(lbd.address) as s:
        port = s.getsockname()[1]
        assert helpers.recv_all(s) == b"bye\n"
    got = json_line(lbd)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", got.pop("time"))
    assert isinstance(got.pop("session_time"), float)
    assert got == {"remote_addr": "127.0.0.1", "remote_port": port, "server_name": "db",
                   "protocol": "tcp", "upstream_addr": server.address,
                   "bytes_received": 0, "bytes_sent": 4, "end_reason": "server_closed"}


def test_tcp_custom_format_on_idle_timeout(lbd, backend):
    server = backend(helpers.echo)
    lbd.start(conf("tcp", server.address,
                   '{ path = "$dir/s.log"; format = "$$server_name|$${end_reason}|'
                   '$$bytes_received|$$session_time|$$$$"; }', 'idle_timeout = "300ms";'))
    with connect(lbd.address) as s:
        s.sendall(b"abc")
        assert s.recv(3) == b"abc"
        assert helpers.closed_by_peer(s)
    [line] = log_lines(lbd, 1)
    name, end, rx, took, dollar = line.split("|")
    assert (name, end, rx, dollar) == ("db", "idle_timeout", "3", "$")
    assert 0.25 <= float(took) < 3


def test_tcp_connect_failed_names_the_server_tried(lbd):
    down = f"127.0.0.1:{free_port()}"
    lbd.start(conf("tcp", down, DEFAULT))
    with connect(lbd.address) as s:
        assert helpers.closed_by_peer(s)
    m = default_line(lbd)
    assert (m["up"], m["rx"], m["tx"], m["end"]) == (down, "0", "0", "connect_failed")


def test_tcp_denied_by_deny(lbd, backend):
    server = backend(helpers.echo)
    lbd.start(conf("tcp", server.address, JSON, 'deny = ["127.0.0.0/8"];'))
    with connect(lbd.address) as s:
        assert helpers.closed_by_peer(s)
    got = json_line(lbd)
    assert (got["end_reason"], got["upstream_addr"], got["bytes_sent"]) == ("denied", None, 0)


# tls --------------------------------------------------------------------------------


def test_tls_listener_logs_its_sessions(lbd, backend, pki):  # noqa: F811
    server = backend(helpers.echo)
    lbd.start(conf("tls", server.address, DEFAULT, tls_group(pki)))
    with tls_connect(lbd.address, client_ctx(pki)) as s:
        s.sendall(b"secret")
        assert s.recv(6) == b"secret"
    m = default_line(lbd)
    assert (m["proto"], m["name"], m["up"], m["rx"], m["tx"], m["end"]) == \
        ("tls", "db", server.address, "6", "6", "client_closed")


def test_tls_listener_json_on_server_close(lbd, backend, pki):  # noqa: F811
    server = backend(server_says_bye)
    lbd.start(conf("tls", server.address, JSON, tls_group(pki)))
    with tls_connect(lbd.address, client_ctx(pki)) as s:
        assert read_to_eof(s) == b"bye\n"
    got = json_line(lbd)
    assert (got["protocol"], got["bytes_sent"], got["end_reason"]) == \
        ("tls", 4, "server_closed")


# udp --------------------------------------------------------------------------------


@pytest.fixture
def udp_server():
    made = []

    def start(reply=udp_echo):
        made.append(UdpBackend(reply))
        return made[-1]
    yield start
    for b in made:
        b.stop()


def udp_client():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    s.bind(("127.0.0.1", 0))
    return s


def udp_send(lbd, s, data):
    host, port = lbd.address.rsplit(":", 1)
    s.sendto(data, (host, int(port)))


def test_udp_json_line_after_the_responses(lbd, udp_server):
    server = udp_server()
    udp_start(lbd, conf("udp", server.address, JSON, "responses = 1;"))
    with udp_client() as s:
        udp_send(lbd, s, b"ping!")
        assert s.recv(100) == b"ping!"
        port = s.getsockname()[1]
    got = json_line(lbd)
    got.pop("time"), got.pop("session_time")
    assert got == {"remote_addr": "127.0.0.1", "remote_port": port, "server_name": "db",
                   "protocol": "udp", "upstream_addr": server.address,
                   "bytes_received": 5, "bytes_sent": 5, "end_reason": "responses"}


def test_udp_default_line_at_session_timeout(lbd, udp_server):
    server = udp_server()
    udp_start(lbd, conf("udp", server.address, DEFAULT, 'session_timeout = "300ms";'))
    with udp_client() as s:
        for data in (b"a", b"bb", b"ccc"):
            udp_send(lbd, s, data)
            assert s.recv(100) == data
        port = s.getsockname()[1]
    m = default_line(lbd)
    assert (int(m["port"]), m["proto"], m["up"], m["rx"], m["tx"], m["end"]) == \
        (port, "udp", server.address, "6", "6", "session_timeout")
    assert float(m["time"]) >= 0.25


def test_udp_denied_datagram(lbd, udp_server):
    server = udp_server()
    udp_start(lbd, conf("udp", server.address, DEFAULT, 'deny = ["127.0.0.1/32"];'))
    with udp_client() as s:
        udp_send(lbd, s, b"nope")
        with pytest.raises(socket.timeout):
            s.recv(100)
    m = default_line(lbd)
    assert (m["up"], m["rx"], m["tx"], m["end"]) == ("-", "4", "0", "denied")


def test_udp_server_not_listening_is_connect_failed(lbd):
    down = f"127.0.0.1:{free_port()}"
    udp_start(lbd, conf("udp", down, JSON))
    with udp_client() as s:
        udp_send(lbd, s, b"hello?")
        with pytest.raises(socket.timeout):
            s.recv(100)
    got = json_line(lbd)
    assert (got["upstream_addr"], got["bytes_received"], got["end_reason"]) == \
        (down, 6, "connect_failed")


# configuration -----------------------------------------------------------------------


def test_unknown_stream_variable_is_an_error_at_its_line(lbd):
    path = lbd.write_config(conf("tcp", "127.0.0.1:1",
                                 '{ path = "$dir/s.log";\n format = "$$end_reasn"; }'))
    out = lbd_test(path)
    line = lbd.line_of('format = "$end_reasn"')
    assert out.returncode != 0
    assert (f'{path}:{line}: access_log format: unknown variable "$end_reasn" '
            f'(did you mean "$end_reason"?)') in out.stderr, out.stderr


def test_an_http_variable_is_unknown_on_a_stream_listener(lbd):
    path = lbd.write_config(conf("udp", "127.0.0.1:1",
                                 '{ path = "$dir/s.log"; format = "$$request_uri"; }'))
    out = lbd_test(path)
    assert out.returncode != 0
    assert 'unknown variable "$request_uri"' in out.stderr, out.stderr


def test_http_and_tcp_listeners_share_one_file(lbd, backend):
    server = backend(helpers.echo)
    http_port = free_port()
    body = conf("tcp", server.address, '{ path = "$dir/s.log"; format = "tcp $$end_reason"; }')
    body = body.replace("} );\n", "},\n  { protocol = \"http\"; listen = \"127.0.0.1:"
                        f"{http_port}\"; access_log = {{ path = \"$dir/s.log\"; "
                        "format = \"http $$status\"; };\n  routes = ( { return = { status = 200; "
                        "body = \"ok\"; }; } ); } );\n")
    lbd.start(body, ports=[lbd.port, http_port])
    with connect(lbd.address) as s:
        s.sendall(b"x")
        assert s.recv(1) == b"x"
    with connect(f"127.0.0.1:{http_port}") as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        helpers.recv_all(s)
    assert sorted(log_lines(lbd, 2)) == ["http 200", "tcp client_closed"]
