"""The framing of forwarded messages is lbd's own (SPEC §3.3, §4): an
adversary's Connection field, repeated lengths or trailer fields never
make the next hop see other message boundaries than lbd saw. Also the
deadlines that bound a request: response_head_timeout for a server that
never finishes its head, and request buffering so that slow request
bodies never hold backend connections.

Each attack is checked where it would land: what the backend received
(exactly one request, its framing, one Host) and what the client got."""

import socket
import threading
import time

import pytest

import helpers
from helpers import connect, log_line, wait_until
from http_backend import RecordingBackends
from test_http_listener import Client, exchange
from test_http_proxy import conf, read_response, request, upstream, CLIENT

SMUGGLED = b"GET /admin/secret HTTP/1.1\r\nHost: a\r\n\r\n"
BUFFERING = ["request_buffering = true;", "request_buffering = false;"]


@pytest.fixture
def http_backends():
    with RecordingBackends() as start:
        yield start


def chunked(data, size=7):
    out = b""
    for i in range(0, len(data), size):
        piece = data[i:i + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return out + b"0\r\n\r\n"


# Item 1: a Connection field cannot remove the request's framing ----------------

@pytest.mark.parametrize("listener", BUFFERING, ids=["buffered", "streamed"])
def test_connection_naming_content_length_cannot_smuggle_a_request(lbd, http_backends,
                                                                   listener):
    assert len(SMUGGLED) == 39
    a = http_backends(body=lambda req: req.target)
    lbd.start(conf(listener=listener), a=a)
    c = Client(lbd.address)
    c.send(b"POST /ok HTTP/1.1\r\nHost: t\r\nConnection: Content-Length\r\n"
           b"Content-Length: 39\r\n\r\n" + SMUGGLED)
    assert read_response(c)[2] == b"/ok"
    c.send(request("/after"))
    assert read_response(c)[2] == b"/after"
    assert [r.target for r in a.requests] == ["/ok", "/after"]
    post = a.requests[0]
    assert post.headers("Content-Length") == ["39"] and post.body == SMUGGLED
    assert post.header("Transfer-Encoding") is None
    assert a.requests[1].conn == post.conn      # the pooled connection stayed in step


@pytest.mark.parametrize("listener", BUFFERING, ids=["buffered", "streamed"])
def test_connection_naming_transfer_encoding_cannot_smuggle_a_request(lbd, http_backends,
                                                                      listener):
    a = http_backends(body=lambda req: req.target)
    lbd.start(conf(listener=listener), a=a)
    c = Client(lbd.address)
    c.send(b"POST /ok HTTP/1.1\r\nHost: t\r\nConnection: Transfer-Encoding\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n" + chunked(SMUGGLED))
    assert read_response(c)[2] == b"/ok"
    c.send(request("/after"))
    assert read_response(c)[2] == b"/after"
    assert [r.target for r in a.requests] == ["/ok", "/after"]
    assert a.requests[0].body == SMUGGLED
    framing = (a.requests[0].header("Content-Length"), a.requests[0].header("Transfer-Encoding"))
    assert framing == (("39", None) if "true" in listener else (None, "chunked"))


def test_connection_naming_host_still_sends_exactly_one_host(lbd, http_backends):
    a = http_backends()
    lbd.start(conf(), a=a)
    c = Client(lbd.address)
    c.send(b"GET /h HTTP/1.1\r\nHost: app.test\r\nConnection: Host, X-Forwarded-For\r\n\r\n")
    assert read_response(c)[0] == "HTTP/1.1 200 OK"
    [req] = a.requests
    assert req.headers("Host") == ["app.test"]
    assert req.headers("X-Forwarded-For") == ["127.0.0.1"]


def test_connection_naming_a_forwarding_field_keeps_lbds_own(lbd, http_backends):
    a = http_backends()
    lbd.start(conf(), a=a)
    c = Client(lbd.address)
    c.send(b"GET /h HTTP/1.1\r\nHost: t\r\nConnection: X-Request-ID, X-Real-IP\r\n"
           b"X-Request-ID: abc-123\r\n\r\n")
    assert read_response(c)[0] == "HTTP/1.1 200 OK"
    [req] = a.requests
    assert req.headers("X-Real-IP") == ["127.0.0.1"] and len(req.headers("X-Request-ID")) == 1


# Item 2: the same on responses ------------------------------------------------

def raw_server(answer):
    """A backend that reads one request head at a time and answers each
    with the bytes answer(n) (n = 1, 2, ...), keeping the connection."""
    def handler(conn, backend):
        buf, n = b"", 0
        while True:
            while b"\r\n\r\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            _, _, buf = buf.partition(b"\r\n\r\n")
            n += 1
            conn.sendall(answer(n))
    return handler


def test_response_connection_naming_content_length_keeps_its_framing(lbd, backend):
    app = backend(raw_server(lambda n: b"HTTP/1.1 200 OK\r\nConnection: Content-Length\r\n"
                                       b"Content-Length: 2\r\n\r\n" + (b"%02d" % n)))
    lbd.start(conf(upstreams=upstream("web", "$app")), app=app)
    c = Client(lbd.address)
    c.send(request("/1") + request("/2"))       # pipelined
    first = read_response(c)
    second = read_response(c)
    assert first[2] == b"01" and second[2] == b"02"
    assert first[1]["content-length"] == "2" and second[1]["content-length"] == "2"


# Item 6: response lengths and trailer fields ------------------------------------

def test_repeated_identical_content_length_from_a_server_is_sent_once(lbd, backend):
    app = backend(raw_server(lambda n: b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc"))
    lbd.start(conf(upstreams=upstream("web", "$app")), app=app)
    c = Client(lbd.address)
    c.send(request("/"))
    status, fields, body, raw = read_response(c)
    assert status == "HTTP/1.1 200 OK" and body == b"abc"
    head = raw.partition(b"\r\n\r\n")[0]
    assert head.count(b"Content-Length") == 1 and b"\r\nContent-Length: 3\r\n" in head + b"\r\n"


def test_differing_content_lengths_from_a_server_are_502(lbd, backend):
    app = backend(raw_server(lambda n: b"HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\nabcd"))
    lbd.start(conf(upstreams=upstream("web", "$app")), app=app)
    assert exchange(lbd.address, request("/")).startswith(b"HTTP/1.1 502 ")


def test_framing_fields_in_response_trailers_are_dropped(lbd, http_backends):
    a = http_backends(framing="chunked", chunk_size=3, body="abcdefg",
                      trailers=[("X-Sum", "7"), ("Content-Length", "99"),
                                ("Transfer-Encoding", "gzip"), ("Host", "evil"),
                                ("Connection", "close"), ("Trailer", "X"),
                                ("Set-Cookie", "a=b")])
    lbd.start(conf(), a=a)
    with connect(lbd.address) as s:
        s.sendall(request("/", extra="Connection: close\r\n"))
        data = helpers.recv_all(s)
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    assert body == b"3\r\nabc\r\n3\r\ndef\r\n1\r\ng\r\n0\r\nX-Sum: 7\r\n\r\n"


def test_framing_fields_in_request_trailers_are_dropped(lbd, http_backends):
    a = http_backends()
    lbd.start(conf(listener="request_buffering = false;"), a=a)
    c = Client(lbd.address)
    c.send(b"POST /t HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"3\r\nabc\r\n0\r\nX-Ok: 1\r\nContent-Length: 99\r\nHost: evil\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n")
    assert read_response(c)[0] == "HTTP/1.1 200 OK"
    [req] = a.requests
    assert req.body == b"abc" and req.trailers == [("X-Ok", "1")]


def test_chunk_extensions_never_reach_the_client(lbd, backend):
    app = backend(raw_server(lambda n: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                       b"3;evil=\"x\"\r\nabc\r\n0;z\r\n\r\n"))
    lbd.start(conf(upstreams=upstream("web", "$app")), app=app)
    c = Client(lbd.address)
    c.send(request("/"))
    status, fields, body, raw = read_response(c)
    assert body == b"abc" and raw.endswith(b"\r\n\r\n3\r\nabc\r\n0\r\n\r\n")


# Item 7: response_head_timeout --------------------------------------------------

def dribbling_server(pieces, gap):
    """Reads a request head, then sends pieces one by one with gap seconds
    between them until the peer goes (at most 10 s)."""
    def handler(conn, backend):
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = conn.recv(65536)
            if not data:
                return
            buf += data
        deadline = time.monotonic() + 10
        try:
            for piece in pieces():
                if time.monotonic() > deadline:
                    return
                conn.sendall(piece)
                time.sleep(gap)
        except OSError:
            return
    return handler


def endless_102():
    while True:
        yield b"HTTP/1.1 102 Processing\r\n\r\n"


def head_one_byte_at_a_time():
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Pad: " + b"p" * 200 + b"\r\n\r\nok"
    for i in range(len(head)):
        yield head[i:i + 1]


@pytest.mark.parametrize("pieces,gap", [(endless_102, 0.01), (head_one_byte_at_a_time, 0.2)],
                         ids=["102-every-10ms", "one-byte-at-a-time"])
def test_response_head_timeout_bounds_the_wait_for_the_final_head(lbd, backend, pieces, gap):
    app = backend(dribbling_server(pieces, gap))
    ups = upstream("web", "$app", read_timeout='"3s"', response_head_timeout='"1s"')
    lbd.start(conf(upstreams=ups), app=app)
    start = time.monotonic()
    data = exchange(lbd.address, request("/slow"), timeout=8)
    took = time.monotonic() - start
    assert data.startswith(b"HTTP/1.1 504 "), data[:200]
    assert 0.9 < took < 3, took
    lbd.wait_log(log_line("info", CLIENT + r"504: server 127\.0\.0\.1:\d+ of upstream "
                                           r"\"web\": response_head_timeout expired"))


def test_read_timeout_still_bounds_the_gap_between_reads(lbd, http_backends):
    a = http_backends(delay=2)
    ups = upstream("web", "$a", read_timeout='"500ms"')
    lbd.start(conf(upstreams=ups), a=a)
    start = time.monotonic()
    assert exchange(lbd.address, request("/")).startswith(b"HTTP/1.1 504 ")
    assert time.monotonic() - start < 1.8


# Item 8: slow request bodies ----------------------------------------------------

def trickle(address, n, stop, body_len=1 << 20, gap=0.5):
    """n clients each announcing a body_len body and sending a byte every
    gap seconds until stop is set; returns their sockets."""
    socks = []
    for _ in range(n):
        s = connect(address, timeout=5)
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\nx" % body_len)
        socks.append(s)

    def loop():
        while not stop.wait(gap):
            for s in socks:
                try:
                    s.sendall(b"x")
                except OSError:
                    pass
    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return socks, t


@pytest.mark.parametrize("listener,held", [("", False), ("request_buffering = false;", True)],
                         ids=["buffered", "streamed"])
def test_slow_request_bodies_hold_no_backend_connection(lbd, http_backends, listener, held):
    a = http_backends()
    lbd.start(conf(listener=listener), a=a)
    n = 40
    stop = threading.Event()
    socks, t = trickle(lbd.address, n, stop)
    try:
        time.sleep(1.5)
        c = Client(lbd.address)          # others are still served meanwhile
        c.send(request("/quick"))
        assert read_response(c)[0] == "HTTP/1.1 200 OK"
        if held:
            wait_until(lambda: a.active >= n, 5, what="a backend connection per client")
        else:
            assert a.accepted == 1 and a.max_active == 1
    finally:
        stop.set()
        t.join()
        for s in socks:
            s.close()


def test_body_larger_than_the_buffer_starts_streaming_once_it_is_full(lbd, http_backends):
    a = http_backends(body=lambda req: str(len(req.body)))
    lbd.start(conf(listener='request_buffer_size = "16k";'), a=a)
    c = Client(lbd.address, timeout=10)
    c.send(b"PUT /big HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n")
    c.send(b"a" * 10000)
    time.sleep(0.3)
    assert a.received_bytes == 0            # not full yet: no server chosen
    c.send(b"b" * 10000)
    wait_until(lambda: a.received_bytes > 16384, 5, what="the held part upstream")
    c.send(b"c" * 80000)
    assert read_response(c)[2] == b"100000"
    [req] = a.requests
    assert req.headers("Content-Length") == ["100000"]
    assert req.body == b"a" * 10000 + b"b" * 10000 + b"c" * 80000


def test_large_chunked_body_streams_chunked_after_the_buffer(lbd, http_backends):
    a = http_backends(body=lambda req: str(len(req.body)))
    lbd.start(conf(listener='request_buffer_size = "4k";'), a=a)
    body = bytes(range(256)) * 100
    c = Client(lbd.address, timeout=10)
    c.send(b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           + chunked(body, size=1000))
    assert read_response(c)[2] == b"25600"
    [req] = a.requests
    assert req.chunked and req.body == body


def test_buffering_answers_100_continue_before_choosing_a_server(lbd, http_backends):
    a = http_backends(body=lambda req: req.body)
    lbd.start(conf(), a=a)
    with connect(lbd.address, timeout=5) as s:
        s.sendall(b"POST /e HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        assert helpers.recv_line(s) == b"HTTP/1.1 100 Continue\r\n"
        assert a.accepted == 0
        s.sendall(b"hello")
        [req] = a.wait_requests(1)
    assert req.body == b"hello" and req.header("Expect") is None


def test_buffered_post_is_sent_again_after_a_failed_connect(lbd, http_backends):
    a = http_backends(body=lambda req: req.body)
    dead = helpers.free_port()
    ups = upstream("web", f"127.0.0.1:{dead}", "$a", balance='"round_robin"')
    lbd.start(conf(upstreams=ups), a=a)
    for i in range(4):
        c = Client(lbd.address)
        c.send(request("/p", method="POST", body=b"payload-%d" % i))
        assert read_response(c)[2] == b"payload-%d" % i


def test_client_body_max_time_bounds_a_trickling_body(lbd, http_backends):
    a = http_backends()
    lbd.start(conf(listener='client_body_timeout = "2s"; client_body_max_time = "1s";'), a=a)
    with connect(lbd.address, timeout=5) as s:
        s.sendall(b"POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n")
        start = time.monotonic()
        data = b""
        while time.monotonic() - start < 4:
            try:
                s.sendall(b"x")
            except OSError:
                break
            s.settimeout(0.2)
            try:
                got = s.recv(4096)
            except socket.timeout:
                continue
            if not got:
                break
            data += got
        took = time.monotonic() - start
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert 0.9 < took < 2.5
    assert a.accepted == 0
    lbd.wait_log(log_line("info", CLIENT + r"408: client_body_max_time expired"))
