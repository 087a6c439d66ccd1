"""SNI passthrough on tcp listeners (SPEC §3.3 sni_routes): lbd reads the
TLS ClientHello without terminating TLS and picks the upstream by server
name (exact, then wildcard, then the listener's upstream); the TLS session
is between the client and the backend. Backends are python ssl servers
with their own self-signed certificates, made with the openssl CLI in the
test's directory."""

import re
import socket
import ssl
import subprocess
import time

import pytest

import helpers
from helpers import connect, lbd_test, log_line


def make_cert(directory, cn):
    cert, key = directory / f"{cn}.crt", directory / f"{cn}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                    "-subj", f"/CN={cn}", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def tls_named(cert, key):
    """A Backend handler: TLS server with cert, sends its name, echoes one
    line, closes."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)

    def handler(conn, backend):
        with ctx.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(backend.name.encode() + b"\n")
            backend.record(tls.recv(100))
    return handler


@pytest.fixture
def certs(tmp_path):
    return {cn: make_cert(tmp_path, cn) for cn in ("a.example.com", "b.example.org", "default")}


@pytest.fixture
def tls_backends(backend, certs):
    return {name: backend(tls_named(*certs[cn]), name=name)
            for name, cn in (("A", "a.example.com"), ("B", "b.example.org"),
                             ("D", "default"))}


SNI = """
upstreams = {
  a = { servers = ( { address = "$a"; } ); };
  b = { servers = ( { address = "$b"; } ); };
  d = { servers = ( { address = "$d"; } ); $pp };
};
listeners = ( { protocol = "tcp"; listen = "$listen"; upstream = "d";
  sni_routes = ( { server_name = "a.example.com"; upstream = "a"; },
                 { server_name = "*.example.org"; upstream = "b"; } ); } );
"""


@pytest.fixture
def sni_lbd(lbd, tls_backends):
    lbd.start(SNI, a=tls_backends["A"].address, b=tls_backends["B"].address,
              d=tls_backends["D"].address, pp="")
    return lbd


def client_context(certs):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    for cert, _ in certs.values():
        ctx.load_verify_locations(cert)
    return ctx


def visit(address, certs, server_name):
    """TLS through lbd: (backend name, certificate CN)."""
    with connect(address) as raw:
        with client_context(certs).wrap_socket(raw, server_hostname=server_name) as tls:
            cn = dict(x[0] for x in tls.getpeercert()["subject"])["commonName"]
            name = helpers.recv_line(tls).decode().strip()
            tls.sendall(b"bye\n")
    return name, cn


@pytest.mark.parametrize("server_name,expected", [
    ("a.example.com", ("A", "a.example.com")),
    ("A.Example.COM", ("A", "a.example.com")),
    ("x.example.org", ("B", "b.example.org")),
    ("deep.sub.example.org", ("B", "b.example.org")),
    ("example.org", ("D", "default")),
    ("unknown.test", ("D", "default")),
    (None, ("D", "default")),
], ids=["exact", "case", "wildcard", "wildcard-two-labels", "wildcard-base", "unknown",
        "no-sni"])
def test_server_name_picks_the_backend(sni_lbd, certs, server_name, expected):
    assert visit(sni_lbd.address, certs, server_name) == expected


def test_openssl_s_client_reaches_backend_a(sni_lbd):
    host, port = sni_lbd.address.rsplit(":", 1)
    out = subprocess.run(["openssl", "s_client", "-connect", f"{host}:{port}",
                          "-servername", "a.example.com"],
                         input=b"", capture_output=True, timeout=20)
    text = out.stdout.decode("latin-1")
    assert re.search(r"subject=\s*CN\s*=\s*a\.example\.com", text), text


def client_hello(server_name):
    """The first flight of a python TLS client, and its live state."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read(), tls, incoming, outgoing


def finish(sock, tls, incoming, outgoing):
    """Completes the handshake over sock; the backend's first line."""
    deadline = time.monotonic() + 10
    data = b""
    while time.monotonic() < deadline:
        try:
            if not tls.server_side and tls.version() is not None:
                data += tls.read(100)
                if data.endswith(b"\n"):
                    return data.decode().strip()
            else:
                tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        if outgoing.pending:
            sock.sendall(outgoing.read())
        chunk = sock.recv(65536)
        if not chunk:
            break
        incoming.write(chunk)
    raise AssertionError(f"no line from the backend (got {data!r})")


def records(handshake, size):
    """Re-frames the handshake bytes of one record into records of size."""
    assert handshake[0] == 22
    body = handshake[5:]
    return b"".join(handshake[0:3] + len(body[i:i + size]).to_bytes(2, "big") + body[i:i + size]
                    for i in range(0, len(body), size))


@pytest.mark.parametrize("split", ["bytes", "records"])
def test_client_hello_in_pieces_still_routes(sni_lbd, split):
    hello, tls, incoming, outgoing = client_hello("z.example.org")
    if split == "records":
        hello = records(hello, 37)
    with connect(sni_lbd.address, timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if split == "bytes":
            for i in range(len(hello)):
                s.sendall(hello[i:i + 1])
                time.sleep(0.001)
        else:
            s.sendall(hello)
        assert finish(s, tls, incoming, outgoing) == "B"


@pytest.mark.parametrize("data,why", [
    (b"GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n",
     "not TLS: the first byte is not a handshake record"),
    (b"\x80\x2e\x01\x03\x01" + bytes(43), "an SSLv2-style ClientHello"),
    (b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00", "the first handshake message is not a ClientHello"),
], ids=["http", "sslv2", "not-client-hello"])
def test_garbage_first_packet_is_closed_and_logged(sni_lbd, tls_backends, data, why):
    with connect(sni_lbd.address) as s:
        s.sendall(data)
        assert helpers.closed_by_peer(s)
    sni_lbd.wait_log(log_line("info", r"\*\d+ client 127\.0\.0\.1:\d+: not a TLS ClientHello \("
                              + re.escape(why) + r".*\) on listener .* with sni_routes; closing"))
    assert sum(b.accepted for b in tls_backends.values()) == 0


def test_client_closing_before_the_hello_is_logged(sni_lbd):
    with connect(sni_lbd.address) as s:
        s.sendall(b"\x16\x03\x01\x02\x00\x01")
        s.shutdown(socket.SHUT_WR)
        assert helpers.closed_by_peer(s)
    sni_lbd.wait_log(r"connection closed in the middle of the TLS ClientHello")


def test_hello_goes_after_a_proxy_protocol_header(lbd, backend, tls_backends):
    def proxy_then_hello(conn, b):
        from test_proxy_protocol import read_proxy_header
        b.record(read_proxy_header(conn))
        b.record(conn.recv(5))
    d = backend(proxy_then_hello, name="pp")
    lbd.start(SNI, a=tls_backends["A"].address, b=tls_backends["B"].address,
              d=d.address, pp="proxy_protocol = 1;")
    hello, *_ = client_hello("other.test")
    with connect(lbd.address) as s:
        s.sendall(hello)
        header, first = d.wait_records(2)
        assert header[0] == 1 and header[1] == "127.0.0.1"
        assert first[:3] == hello[:3]


# Configuration -----------------------------------------------------------------

def check(tmp_path, routes, listener_extra=""):
    conf = tmp_path / "lbd.conf"
    conf.write_text('upstreams = { alpha = { servers = ( { address = "127.0.0.1:1"; } ); }; };\n'
                    'listeners = ( { protocol = "tcp"; listen = "127.0.0.1:8998"; '
                    f'upstream = "alpha"; {listener_extra}\n'
                    f"  sni_routes = ( {routes} ); }} );\n")
    return conf, lbd_test(conf)


@pytest.mark.parametrize("routes,message", [
    ('{ server_name = "a.test"; upstream = "alpah"; }',
     'unknown upstream "alpah" in sni_routes entry #1 of listener "tcp:127.0.0.1:8998" '
     '(did you mean "alpha"?)'),
    ('{ upstream = "alpha"; }', 'entry #1 of "sni_routes" in listener "tcp:127.0.0.1:8998" '
     'needs "server_name"'),
    ('{ server_name = "a.test"; }', 'needs "upstream"'),
    ('{ server_name = "a.test"; upstream = "alpha"; },\n'
     '                 { server_name = "A.test."; upstream = "alpha"; }',
     'server_name "A.test." appears twice'),
    ('{ server_name = "a..test"; upstream = "alpha"; }', 'server_name "a..test" in listener'),
    ('{ server_name = "a.test"; upstrem = "alpha"; upstream = "alpha"; }',
     'unknown setting "upstrem" in entry #1 of "sni_routes" in listener "tcp:127.0.0.1:8998" '
     '(did you mean "upstream"?); valid here: server_name, upstream'),
], ids=["unknown-upstream", "no-name", "no-upstream", "duplicate", "bad-name", "typo"])
def test_bad_sni_routes_are_refused_with_file_and_line(tmp_path, routes, message):
    conf, out = check(tmp_path, routes)
    assert out.returncode != 0
    assert re.search(rf"^{re.escape(str(conf))}:\d+: .*{re.escape(message)}", out.stderr,
                     re.M), out.stderr
