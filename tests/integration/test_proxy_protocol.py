"""The PROXY protocol (HAProxy's proxy-protocol.txt, v1 and v2) both ways:
listeners with accept_proxy_protocol take the client address from the
header (tcp and http: relay, allow/deny, X-Forwarded-For, X-Real-IP, the
access log), refuse connections without a valid one and say why in the
error log; tcp upstreams with proxy_protocol = 1 or 2 send one, which a
backend here parses and checks."""

import os
import re
import socket
import struct

import pytest

import helpers
from helpers import connect, lbd_test, log_line
from http_backend import RecordingBackends
from test_http_access_log import lines

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(src, dst, sport, dport, proto="TCP4"):
    return f"PROXY {proto} {src} {dst} {sport} {dport}\r\n".encode()


def v2(src, dst, sport, dport, command=0x21, tlvs=b""):
    family = socket.AF_INET6 if ":" in src else socket.AF_INET
    addrs = (socket.inet_pton(family, src) + socket.inet_pton(family, dst)
             + struct.pack("!HH", sport, dport))
    fam = 0x21 if family == socket.AF_INET6 else 0x11
    body = addrs + tlvs
    return V2_SIG + bytes([command, fam]) + struct.pack("!H", len(body)) + body


def v2_local():
    return V2_SIG + b"\x20\x00\x00\x00"


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"EOF after {len(data)} of {n} bytes")
        data += chunk
    return data


def read_proxy_header(conn):
    """Reads one PROXY header off conn: (version, src, sport, dst, dport),
    addresses as text."""
    first = recv_exact(conn, 16)
    if first.startswith(V2_SIG):
        (n,) = struct.unpack("!H", first[14:16])
        body = recv_exact(conn, n)
        assert first[12] == 0x21, first
        if first[13] == 0x11:
            return (2, socket.inet_ntop(socket.AF_INET, body[0:4]), struct.unpack("!H", body[8:10])[0],
                    socket.inet_ntop(socket.AF_INET, body[4:8]), struct.unpack("!H", body[10:12])[0])
        assert first[13] == 0x21, first
        return (2, socket.inet_ntop(socket.AF_INET6, body[0:16]),
                struct.unpack("!H", body[32:34])[0],
                socket.inet_ntop(socket.AF_INET6, body[16:32]),
                struct.unpack("!H", body[34:36])[0])
    line = first
    while not line.endswith(b"\r\n"):
        line += recv_exact(conn, 1)
        assert len(line) <= 107, line
    parts = line.decode().split()
    assert parts[0] == "PROXY" and parts[1] in ("TCP4", "TCP6"), line
    return (1, parts[2], int(parts[4]), parts[3], int(parts[5]))


def proxy_echo(conn, backend):
    """Records the PROXY header it gets, then echoes like helpers.echo."""
    backend.record(read_proxy_header(conn))
    helpers.echo(conn, backend)


TCP = """
upstreams = { backend = { servers = ( { address = "$server"; } ); $pp }; };
listeners = ( { protocol = "tcp"; listen = "$listen"; upstream = "backend";
                accept_proxy_protocol = $accept; $extra } );
"""


def start_tcp(lbd, server, accept="true", pp="", extra=""):
    lbd.start(TCP, server=server.address, accept=accept, pp=pp, extra=extra)


def roundtrip(address, header, payload=b"hello through PROXY\n"):
    """Sends header and payload in one write; returns what comes back."""
    with connect(address) as s:
        s.sendall(header + payload)
        s.shutdown(socket.SHUT_WR)
        return helpers.recv_all(s)


# Accepting ---------------------------------------------------------------------

@pytest.mark.parametrize("header", [
    v1("203.0.113.7", "198.51.100.1", 40000, 443),
    v1("2001:db8::7", "2001:db8::1", 40000, 443, proto="TCP6"),
    b"PROXY UNKNOWN\r\n",
    b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
    v2("203.0.113.7", "198.51.100.1", 40000, 443),
    v2("2001:db8::7", "2001:db8::1", 40000, 443),
    v2("203.0.113.7", "198.51.100.1", 40000, 443, tlvs=b"\x04\x00\x03abc"),
    v2_local(),
], ids=["v1-tcp4", "v1-tcp6", "v1-unknown", "v1-unknown-addrs", "v2-inet", "v2-inet6",
        "v2-tlv", "v2-local"])
def test_header_is_taken_off_and_payload_relayed(lbd, backend, header):
    server = backend(helpers.echo)
    start_tcp(lbd, server)
    assert roundtrip(lbd.address, header) == b"hello through PROXY\n"


def test_header_written_byte_by_byte_is_read(lbd, backend):
    server = backend(helpers.echo)
    start_tcp(lbd, server)
    header = v2("203.0.113.7", "198.51.100.1", 40000, 443)
    with connect(lbd.address) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(header)):
            s.sendall(header[i:i + 1])
        s.sendall(b"after")
        s.shutdown(socket.SHUT_WR)
        assert helpers.recv_all(s) == b"after"


def test_source_address_is_what_allow_and_deny_see(lbd, backend):
    server = backend(helpers.echo)
    start_tcp(lbd, server, extra='allow = "203.0.113.0/24";')
    assert roundtrip(lbd.address, v1("203.0.113.7", "198.51.100.1", 1, 2)) != b""
    with connect(lbd.address) as s:
        s.sendall(v1("192.0.2.9", "198.51.100.1", 1234, 2) + b"x")
        assert helpers.closed_by_peer(s)
    lbd.wait_log(log_line("info", r"\*\d+ client 192\.0\.2\.9:1234: denied by allow/deny .*"))


def test_source_address_travels_on_to_a_proxy_protocol_upstream(lbd, backend):
    server = backend(proxy_echo)
    start_tcp(lbd, server, pp="proxy_protocol = 2;")
    roundtrip(lbd.address, v1("203.0.113.7", "198.51.100.1", 40000, 443))
    [(version, src, sport, dst, dport)] = server.wait_records(1)
    assert (version, src, sport) == (2, "203.0.113.7", 40000)
    assert (dst, dport) == ("127.0.0.1", lbd.port)


BAD = [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "not a PROXY protocol header"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "v1 header has a bare LF"),
    (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "v1 protocol is not TCP4, TCP6 or UNKNOWN"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", "v1 port is not a number from 0 to 65535"),
    (b"PROXY TCP4 ::1 ::2 1 2\r\n", "v1 TCP4 address is not an IPv4 address"),
    (b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", "v1 header does not have four fields"),
    (b"PROXY " + b"A" * 120, "v1 header has no CRLF within 107 bytes"),
    (V2_SIG + b"\x31\x11\x00\x0c" + bytes(12), "v2 header has a version other than 2"),
    (V2_SIG + b"\x22\x11\x00\x0c" + bytes(12), "v2 command is neither LOCAL nor PROXY"),
    (V2_SIG + b"\x21\x41\x00\x0c" + bytes(12), "v2 address family or transport is invalid"),
    (V2_SIG + b"\x21\x11\x08\x00" + bytes(64), "v2 header is longer than 1040 bytes"),
    (V2_SIG + b"\x21\x11\x00\x08" + bytes(8), "v2 length is too short for its address family"),
    (V2_SIG + b"\x21\x11\x00\x0e" + bytes(14), "v2 TLV is truncated"),
]


@pytest.mark.parametrize("data,why", BAD, ids=[w for _, w in BAD])
def test_invalid_header_is_refused_and_logged(lbd, backend, data, why):
    server = backend(helpers.echo)
    start_tcp(lbd, server)
    with connect(lbd.address) as s:
        s.sendall(data)
        assert helpers.closed_by_peer(s)
    lbd.wait_log(log_line("info", r"\*\d+ client 127\.0\.0\.1:\d+: " + re.escape(why)
                          + r'.* on listener "tcp:127\.0\.0\.1:\d+" \(accept_proxy_protocol '
                          r"is on\); closing"))
    assert server.accepted == 0


def test_connection_closed_in_the_middle_of_a_header_is_logged(lbd, backend):
    server = backend(helpers.echo)
    start_tcp(lbd, server)
    with connect(lbd.address) as s:
        s.sendall(b"PROXY TCP4 1.2.3.4")
        s.shutdown(socket.SHUT_WR)
        assert helpers.closed_by_peer(s)
    lbd.wait_log(r"connection closed in the middle of a PROXY protocol header")


def test_silent_client_is_closed_after_5s(lbd, backend):
    server = backend(helpers.echo)
    start_tcp(lbd, server)
    with connect(lbd.address) as s:
        assert not helpers.closed_by_peer(s, timeout=3.5)
        assert helpers.closed_by_peer(s, timeout=4)
    lbd.wait_log(r"no complete PROXY protocol header within 5s")


def test_listener_without_the_setting_relays_the_header_as_data(lbd, backend):
    server = backend(helpers.echo)
    start_tcp(lbd, server, accept="false")
    header = v1("203.0.113.7", "198.51.100.1", 1, 2)
    assert roundtrip(lbd.address, header) == header + b"hello through PROXY\n"


# http listeners ----------------------------------------------------------------

HTTP = """
workers = 1;
upstreams = { web = { servers = ( { address = "$a"; } ); }; };
listeners = ( { protocol = "http"; listen = "$listen"; accept_proxy_protocol = true;
                access_log = { path = "$dir/access.log"; };
                routes = ( { upstream = "web"; } ); } );
"""


@pytest.fixture
def http_backends():
    with RecordingBackends() as start:
        yield start


@pytest.mark.parametrize("make", [v1, v2], ids=["v1", "v2"])
def test_http_client_address_comes_from_the_header(lbd, http_backends, make):
    a = http_backends()
    lbd.start(HTTP, a=a.address)
    request = b"GET /x HTTP/1.1\r\nHost: ex.test\r\nConnection: close\r\n\r\n"
    answer = roundtrip(lbd.address, make("203.0.113.7", "198.51.100.1", 40000, 80), request)
    assert answer.startswith(b"HTTP/1.1 200"), answer
    [req] = a.requests
    assert req.header("X-Forwarded-For") == "203.0.113.7"
    assert req.header("X-Real-IP") == "203.0.113.7"
    [line] = lines(os.path.join(lbd.dir, "access.log"), 1)
    assert line.startswith("203.0.113.7 "), line


def test_http_request_without_a_header_is_closed(lbd, http_backends):
    a = http_backends()
    lbd.start(HTTP, a=a.address)
    with connect(lbd.address) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert helpers.closed_by_peer(s)
    lbd.wait_log(r"not a PROXY protocol header on listener")
    assert a.requests == []


# Sending -----------------------------------------------------------------------

@pytest.mark.parametrize("version", [1, 2])
def test_tcp_upstream_gets_a_header_with_client_and_listener_addresses(lbd, backend, version):
    server = backend(proxy_echo)
    start_tcp(lbd, server, accept="false", pp=f"proxy_protocol = {version};")
    with connect(lbd.address) as s:
        s.sendall(b"payload")
        s.shutdown(socket.SHUT_WR)
        assert helpers.recv_all(s) == b"payload"
        client = s.getsockname()
    [record] = server.wait_records(1)
    assert record == (version, client[0], client[1], "127.0.0.1", lbd.port)


def proxy_http(conn, backend):
    """Records the PROXY header of a connection, then answers each request
    on it with 200 until the peer closes."""
    backend.record(read_proxy_header(conn))
    data = b""
    while True:
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        _, data = data.split(b"\r\n\r\n", 1)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


@pytest.mark.parametrize("version", [1, 2])
def test_http_upstream_gets_a_header_per_connection_never_shared(lbd, backend, version):
    server = backend(proxy_http)
    lbd.start("""
workers = 1;
upstreams = { web = { servers = ( { address = "$server"; } ); keepalive = 8;
                      proxy_protocol = $version; }; };
listeners = ( { protocol = "http"; listen = "$listen"; routes = ( { upstream = "web"; } ); } );
""", server=server.address, version=str(version))
    clients = []
    for _ in range(2):
        with connect(lbd.address) as s:
            for _ in range(2):          # two requests on one client connection
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = b""
                while not (b"\r\n\r\n" in answer and answer.endswith(b"ok")):
                    chunk = s.recv(4096)
                    assert chunk, answer
                    answer += chunk
                assert answer.startswith(b"HTTP/1.1 200"), answer
            clients.append(s.getsockname())
    records = server.wait_records(2)
    # a connection that carries one client's address is never reused for
    # another: one per client connection at least, each naming its client
    assert server.accepted >= 2
    assert {(r[1], r[2]) for r in records} >= {(c[0], c[1]) for c in clients}
    assert all(r[0] == version and r[3:] == ("127.0.0.1", lbd.port) for r in records)


# Configuration -----------------------------------------------------------------

def test_proxy_protocol_version_is_checked(tmp_path):
    conf = tmp_path / "lbd.conf"
    conf.write_text('upstreams = { b = { servers = ( { address = "127.0.0.1:1"; } );\n'
                    '  proxy_protocol = 3; }; };\n'
                    'listeners = ( { protocol = "tcp"; listen = "127.0.0.1:8999"; upstream = "b"; } );\n')
    out = lbd_test(conf)
    assert out.returncode != 0
    assert f"{conf}:2: " in out.stderr and "proxy_protocol" in out.stderr, out.stderr
