"""The http listener (SPEC §3.3, §3.4, §4): return and redirect routes,
404, keep-alive and pipelining, request bodies read and discarded, the
limits and timeouts with their generated responses, allow/deny. Byte-exact
checks go through plain sockets."""

import os
import re
import signal
import socket
import time

import pytest

import helpers
from helpers import connect, lbd_test, log_line

# $$ is a literal $ for the helper's string.Template
ROUTES = """
  routes = (
    { path_regex = "^/echo/(.*)$$";
      return = { status = 200;
                 body = "addr=$$remote_addr uri=$$request_uri host=$$host one=$$1\\n"; }; },
    { path = "/ok"; return = { status = 200; body = "ok\\n"; }; },
    { path = "/json"; return = { status = 201; body = "{}";
                                 content_type = "application/json"; }; },
    { path = "/empty"; return = { status = 204; }; },
    { path = "/go"; redirect = { status = 301; location = "https://$$host$$request_uri"; }; }
  );
"""


def http_conf(extra=""):
    return ('listeners = ( { protocol = "http"; listen = "$listen"; name = "web";\n'
            + extra + "\n" + ROUTES + "} );\n")


class Client:
    """One connection, reading responses one at a time."""

    def __init__(self, address, timeout=5.0):
        self.sock = connect(address, timeout=timeout)
        self.buf = b""

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed")
        self.buf += chunk

    def response(self, head=False):
        """(status line, {lowercase name: value}, body, raw bytes)."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head_bytes, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head_bytes.decode("latin-1").split("\r\n")
        fields = {}
        for line in lines[1:]:
            name, value = line.split(":", 1)
            fields[name.strip().lower()] = value.strip()
        length = 0 if head else int(fields.get("content-length", "0"))
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return lines[0], fields, body, head_bytes + b"\r\n\r\n" + body

    def closed(self, timeout=3.0):
        """True when the server closes without sending anything more."""
        if self.buf:
            return False
        return helpers.closed_by_peer(self.sock, timeout)


def exchange(address, request, timeout=5.0):
    """Sends request, returns everything received until the server closes."""
    with connect(address, timeout=timeout) as s:
        s.sendall(request)
        return helpers.recv_all(s)


def get(path, host="example.com", extra=""):
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()


# Routes ------------------------------------------------------------------

def test_return_route_evaluates_its_body_with_variables(lbd):
    lbd.start(http_conf())
    c = Client(lbd.address)
    c.send(get("/echo/abc?x=1", "Example.COM:8080"))
    status, fields, body, _ = c.response()
    assert status == "HTTP/1.1 200 OK"
    assert fields["content-type"] == "text/plain"
    assert fields["content-length"] == str(len(body))
    assert fields["server"] == "lbd"
    assert "connection" not in fields
    assert body == b"addr=127.0.0.1 uri=/echo/abc?x=1 host=example.com one=abc\n"


def test_return_route_is_byte_exact_with_its_content_type(lbd):
    lbd.start(http_conf())
    data = exchange(lbd.address, get("/json", extra="Connection: close\r\n"))
    # Date is the only field that changes: check its form, then the rest byte for byte
    m = re.match(rb"HTTP/1.1 201 Created\r\nServer: lbd\r\n"
                 rb"Date: (Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug"
                 rb"|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT\r\n", data)
    assert m, data
    rest = data[m.end():]
    m = re.match(rb"Content-Type: application/json\r\nContent-Length: 2\r\n"
                 rb"X-Request-ID: [0-9a-f]{32}\r\nConnection: close\r\n\r\n\{\}\Z", rest)
    assert m, rest


def test_204_has_no_body_and_no_content_length(lbd):
    lbd.start(http_conf())
    c = Client(lbd.address)
    c.send(get("/empty") + get("/ok"))
    status, fields, body, _ = c.response()
    assert status == "HTTP/1.1 204 No Content"
    assert "content-length" not in fields and body == b""
    assert c.response()[2] == b"ok\n"


def test_redirect_sends_an_evaluated_location(lbd):
    lbd.start(http_conf())
    c = Client(lbd.address)
    c.send(get("/go?a=b", "www.example.org"))
    status, fields, body, _ = c.response()
    assert status == "HTTP/1.1 301 Moved Permanently"
    assert fields["location"] == "https://www.example.org/go?a=b"
    assert int(fields["content-length"]) == len(body) > 0


def test_redirect_of_a_request_without_host_names_the_address_it_came_to(lbd):
    lbd.start(http_conf())
    data = exchange(lbd.address, b"GET /go?a=b HTTP/1.0\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 301 Moved Permanently\r\n")
    assert b"\r\nLocation: https://127.0.0.1/go?a=b\r\n" in data, data
    # lbctl's dry run agrees
    out = lbd.lbctl("route", "GET", "/go?a=b")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "action: redirect 301 to https://127.0.0.1/go?a=b"


def test_no_matching_route_is_404_with_a_body_and_logged(lbd):
    lbd.start(http_conf())
    c = Client(lbd.address)
    c.send(get("/nowhere"))
    status, fields, body, _ = c.response()
    assert status == "HTTP/1.1 404 Not Found"
    assert body == b"404 Not Found\n"
    # a 404 keeps the connection
    c.send(get("/ok"))
    assert c.response()[2] == b"ok\n"
    lbd.wait_log(log_line("info", r"\*\d+ client 127\.0\.0\.1:\d+: 404: no route matches"))


def test_head_gets_the_headers_only(lbd):
    lbd.start(http_conf())
    c = Client(lbd.address)
    c.send(b"HEAD /ok HTTP/1.1\r\nHost: a\r\n\r\n" + get("/ok"))
    status, fields, body, _ = c.response(head=True)
    assert status == "HTTP/1.1 200 OK" and fields["content-length"] == "3"
    # the next response starts right after the head: no body was sent
    status, _, body, _ = c.response()
    assert status == "HTTP/1.1 200 OK" and body == b"ok\n"


def test_curl_sees_the_return_route(lbd):
    lbd.start(http_conf())
    out = helpers.run(["curl", "-s", "-i", f"http://{lbd.address}/echo/z"])
    assert out.returncode == 0
    assert "HTTP/1.1 200 OK" in out.stdout
    assert out.stdout.endswith("one=z\n")


# Keep-alive and pipelining ------------------------------------------------

def test_two_requests_on_one_connection(lbd):
    lbd.start(http_conf())
    c = Client(lbd.address)
    for path in ("/echo/one", "/echo/two"):
        c.send(get(path))
        status, fields, body, _ = c.response()
        assert status == "HTTP/1.1 200 OK"
        assert body.endswith(f"one={path[6:]}\n".encode())


def test_http10_closes_by_default(lbd):
    lbd.start(http_conf())
    data = exchange(lbd.address, b"GET /ok HTTP/1.0\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nConnection: close\r\n" in data
    assert data.endswith(b"\r\n\r\nok\n")


def test_http10_keep_alive_is_echoed(lbd):
    lbd.start(http_conf())
    c = Client(lbd.address)
    req = b"GET /ok HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    c.send(req)
    assert c.response()[1]["connection"] == "keep-alive"
    c.send(req)
    assert c.response()[2] == b"ok\n"


def test_connection_close_is_honoured(lbd):
    lbd.start(http_conf())
    c = Client(lbd.address)
    c.send(get("/ok", extra="Connection: close\r\n"))
    assert c.response()[1]["connection"] == "close"
    assert c.closed()


def test_keepalive_requests_ends_the_connection(lbd):
    lbd.start(http_conf("keepalive_requests = 2;"))
    c = Client(lbd.address)
    c.send(get("/ok"))
    assert "connection" not in c.response()[1]
    c.send(get("/ok"))
    status, fields, body, _ = c.response()
    assert body == b"ok\n" and fields["connection"] == "close"
    assert c.closed()


def test_ten_pipelined_requests_are_answered_in_order(lbd):
    lbd.start(http_conf())
    c = Client(lbd.address)
    c.send(b"".join(get(f"/echo/{i}") for i in range(10)))
    for i in range(10):
        status, _, body, _ = c.response()
        assert status == "HTTP/1.1 200 OK"
        assert body.endswith(f"one={i}\n".encode())


def test_pipelined_requests_larger_than_the_buffer_are_all_answered(lbd):
    lbd.start(http_conf('max_header_size = "1k";'))
    c = Client(lbd.address)
    c.send(b"".join(get(f"/echo/{i}") for i in range(200)))     # about 9 KiB
    for i in range(200):
        assert c.response()[2].endswith(f"one={i}\n".encode())


def test_pipelined_post_body_is_skipped_before_the_next_request(lbd):
    lbd.start(http_conf())
    c = Client(lbd.address)
    c.send(b"POST /echo/a HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\nGET /x"
           + get("/echo/b"))
    assert c.response()[2].endswith(b"one=a\n")
    assert c.response()[2].endswith(b"one=b\n")


def test_head_sent_a_byte_at_a_time_is_served(lbd):
    lbd.start(http_conf())
    c = Client(lbd.address)
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for b in get("/echo/slow"):
        c.send(bytes([b]))
    assert c.response()[2].endswith(b"one=slow\n")


def test_long_return_body_is_sent_whole(lbd):
    body = "0123456789" * 3000
    lbd.start('listeners = ( { protocol = "http"; listen = "$listen";\n'
              '  routes = ( { return = { status = 200; body = "' + body + '"; }; } ); } );')
    c = Client(lbd.address)
    c.send(get("/") + get("/"))
    assert c.response()[2] == body.encode()
    assert c.response()[2] == body.encode()


def test_responses_to_a_client_that_reads_late_are_all_delivered(lbd):
    """3 MB of responses to 100 pipelined requests: writes block, and lbd
    reads no further request until each response is out."""
    body = "0123456789" * 3000
    lbd.start('listeners = ( { protocol = "http"; listen = "$listen";\n'
              '  routes = ( { path_regex = "^/(.*)$$"; return = { status = 200; body = "$$1 '
              + body + '"; }; } ); } );')
    c = Client(lbd.address, timeout=10)
    c.send(b"".join(get(f"/{i}") for i in range(100)))
    time.sleep(0.5)
    for i in range(100):
        assert c.response()[2] == f"{i} {body}".encode()


def test_idle_keep_alive_connection_is_closed_silently(lbd):
    lbd.start(http_conf('keepalive_timeout = "300ms";'))
    c = Client(lbd.address)
    c.send(get("/ok"))
    c.response()
    start = time.monotonic()
    assert c.closed(timeout=3)
    assert 0.2 < time.monotonic() - start < 2.5


def test_graceful_stop_closes_idle_connections(lbd):
    lbd.start(http_conf(), workers=1)
    c = Client(lbd.address)
    c.send(get("/ok"))
    c.response()
    lbd.signal(signal.SIGQUIT)
    assert c.closed(timeout=5)
    assert lbd.wait_exit(10) == 0


def test_graceful_stop_lets_a_request_in_flight_finish(lbd):
    lbd.start(http_conf(), workers=1)
    c = Client(lbd.address)
    c.send(b"POST /echo/late HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
    time.sleep(0.2)
    lbd.signal(signal.SIGQUIT)
    time.sleep(1.5)                 # past the idle check: this one is not idle
    c.send(b"defghij")
    status, fields, body, _ = c.response()
    assert body.endswith(b"one=late\n") and fields["connection"] == "close"
    assert c.closed()
    assert lbd.wait_exit(10) == 0


# Request bodies -------------------------------------------------------------

def test_content_length_body_is_discarded_and_the_connection_goes_on(lbd):
    lbd.start(http_conf())
    c = Client(lbd.address)
    body = b"x" * 50000
    c.send(b"POST /echo/post HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body)
           + body)
    assert c.response()[2].endswith(b"one=post\n")
    c.send(get("/echo/next"))
    assert c.response()[2].endswith(b"one=next\n")


def test_chunked_body_is_discarded_and_the_connection_goes_on(lbd):
    lbd.start(http_conf())
    c = Client(lbd.address)
    c.send(b"POST /echo/chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n")
    time.sleep(0.1)
    c.send(b"6;ext=1\r\n world\r\n0\r\nX-Trailer: y\r\n\r\n" + get("/echo/after"))
    assert c.response()[2].endswith(b"one=chunked\n")
    assert c.response()[2].endswith(b"one=after\n")


def test_expect_100_continue_is_answered_directly_then_closed(lbd):
    lbd.start(http_conf())
    c = Client(lbd.address)
    c.send(b"PUT /ok HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n")
    status, fields, body, _ = c.response()
    assert status == "HTTP/1.1 200 OK" and fields["connection"] == "close"
    assert c.closed()


def test_content_length_over_max_body_size_is_413(lbd):
    lbd.start(http_conf('max_body_size = "1k";'))
    data = exchange(lbd.address, b"POST /ok HTTP/1.1\r\nHost: a\r\nContent-Length: 1025\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 413 Content Too Large\r\n")
    assert b"\r\nConnection: close\r\n" in data
    lbd.wait_log(log_line("info", r"\*\d+ client 127\.0\.0\.1:\d+: 413: Content-Length "
                                  r"larger than max_body_size"))


def test_chunked_body_over_max_body_size_is_413(lbd):
    lbd.start(http_conf('max_body_size = "1k";'))
    chunk = b"400\r\n" + b"y" * 1024 + b"\r\n"
    data = exchange(lbd.address, b"POST /ok HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked"
                                 b"\r\n\r\n" + chunk + b"1\r\nz\r\n0\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 413 Content Too Large\r\n")


def test_body_at_max_body_size_is_accepted(lbd):
    lbd.start(http_conf('max_body_size = "1k";'))
    c = Client(lbd.address)
    c.send(b"POST /ok HTTP/1.1\r\nHost: a\r\nContent-Length: 1024\r\n\r\n" + b"b" * 1024)
    assert c.response()[0] == "HTTP/1.1 200 OK"


def test_invalid_chunked_body_is_400(lbd):
    lbd.start(http_conf())
    data = exchange(lbd.address, b"POST /ok HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked"
                                 b"\r\n\r\nzz\r\n")
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")


# Limits and malformed requests ------------------------------------------------

def assert_refused(data, status):
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == status, data
    assert b"\r\nConnection: close" in head
    assert body == status[9:] + b"\n"


def test_uri_over_max_uri_is_414(lbd):
    lbd.start(http_conf('max_uri = "100";'))
    assert_refused(exchange(lbd.address, get("/" + "a" * 200)), b"HTTP/1.1 414 URI Too Long")


def test_head_over_max_header_size_is_431(lbd):
    lbd.start(http_conf('max_header_size = "2k";'))
    req = get("/ok", extra="X-Big: " + "b" * 3000 + "\r\n")
    assert_refused(exchange(lbd.address, req),
                   b"HTTP/1.1 431 Request Header Fields Too Large")


def test_too_many_headers_is_431(lbd):
    lbd.start(http_conf("max_headers = 5;"))
    req = get("/ok", extra="".join(f"X-H{i}: v\r\n" for i in range(10)))
    assert_refused(exchange(lbd.address, req),
                   b"HTTP/1.1 431 Request Header Fields Too Large")


MALFORMED = [
    ("no_version", b"GET /\r\n\r\n"),
    ("http2_version", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"),
    ("lowercase_version", b"GET / http/1.1\r\nHost: a\r\n\r\n"),
    ("missing_host", b"GET / HTTP/1.1\r\n\r\n"),
    ("two_hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
    ("space_before_colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"),
    ("obs_fold", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n"),
    ("bare_lf_in_field", b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n"),
    ("control_char", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x01c\r\n\r\n"),
    ("cl_and_te", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n"),
    ("two_content_lengths", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                            b"Content-Length: 4\r\n\r\n"),
    ("bad_content_length", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3x\r\n\r\n"),
    ("fragment_in_target", b"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("space_in_target", b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("te_in_http10", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"),
]


@pytest.mark.parametrize("request_bytes", [m[1] for m in MALFORMED],
                         ids=[m[0] for m in MALFORMED])
def test_malformed_request_is_400_and_closed(lbd, request_bytes):
    lbd.start(http_conf())
    assert_refused(exchange(lbd.address, request_bytes), b"HTTP/1.1 400 Bad Request")


def test_malformed_requests_are_logged_with_the_reason(lbd):
    lbd.start(http_conf())
    exchange(lbd.address, b"GET / HTTP/1.1\r\nHost : a\r\n\r\n")
    lbd.wait_log(log_line("info", r"\*\d+ client 127\.0\.0\.1:\d+: 400: .+"))


def test_unknown_transfer_coding_before_chunked_is_501(lbd):
    lbd.start(http_conf())
    req = b"POST /ok HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    assert_refused(exchange(lbd.address, req), b"HTTP/1.1 501 Not Implemented")


def test_final_transfer_coding_other_than_chunked_is_400(lbd):
    # RFC 9112 §6.3: the length cannot be known; 400 and close (was 501)
    lbd.start(http_conf())
    req = b"POST /ok HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"
    assert_refused(exchange(lbd.address, req), b"HTTP/1.1 400 Bad Request")


# Timeouts -------------------------------------------------------------------

def test_partial_head_gets_408_after_client_header_timeout(lbd):
    lbd.start(http_conf('client_header_timeout = "300ms";'))
    with connect(lbd.address) as s:
        s.sendall(b"GET /ok HTTP/1.1\r\nHo")
        start = time.monotonic()
        data = helpers.recv_all(s)
    assert 0.2 < time.monotonic() - start < 2.5
    assert_refused(data, b"HTTP/1.1 408 Request Timeout")
    lbd.wait_log(log_line("info", r"\*\d+ client 127\.0\.0\.1:\d+: 408: "
                                  r"client_header_timeout expired"))


def test_silent_new_connection_is_closed_without_a_response(lbd):
    lbd.start(http_conf('client_header_timeout = "300ms";'))
    c = Client(lbd.address)
    assert c.closed(timeout=3)


def test_partial_body_gets_408_after_client_body_timeout(lbd):
    lbd.start(http_conf('client_body_timeout = "300ms";'))
    data = exchange(lbd.address, b"POST /ok HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
    assert_refused(data, b"HTTP/1.1 408 Request Timeout")


# allow / deny ---------------------------------------------------------------

def test_denied_client_gets_403_and_is_closed(lbd):
    lbd.start(http_conf('deny = ["127.0.0.0/8"];'))
    assert_refused(exchange(lbd.address, get("/ok")), b"HTTP/1.1 403 Forbidden")
    lbd.wait_log(log_line("info", r"\*\d+ client 127\.0\.0\.1:\d+: 403: denied .*"))


def test_allowed_client_is_served(lbd):
    lbd.start(http_conf('allow = ["127.0.0.1/32"];'))
    c = Client(lbd.address)
    c.send(get("/ok"))
    assert c.response()[2] == b"ok\n"


ACL_ROUTES = """
  routes = (
    { path = "/open"; allow = ["0.0.0.0/0"]; return = { status = 200; body = "open\\n"; }; },
    { path = "/admin"; deny = "127.0.0.1"; error_pages = ( { status = 403; file = "no.html"; } );
      return = { status = 200; body = "admin\\n"; }; },
    { path = "/lan"; allow = ["10.0.0.0/8", "::1"]; return = { status = 200; }; },
    { path = "/ok"; return = { status = 200; body = "ok\\n"; }; }
  );
"""


def test_route_allow_deny_replace_the_listeners(lbd):
    with open(os.path.join(lbd.dir, "no.html"), "w") as f:
        f.write("<p>not you</p>\n")
    lbd.start('listeners = ( { protocol = "http"; listen = "$listen"; name = "web";\n'
              'deny = ["127.0.0.0/8"];\n' + ACL_ROUTES + "} );\n")
    # the route's own allow lets in a client the listener denies
    c = Client(lbd.address)
    c.send(get("/open"))
    assert c.response()[2] == b"open\n"
    # the listener's deny still holds on a route without its own, and for 404
    assert_refused(exchange(lbd.address, get("/ok")), b"HTTP/1.1 403 Forbidden")
    assert_refused(exchange(lbd.address, get("/nowhere")), b"HTTP/1.1 403 Forbidden")
    # a route's deny, answered with the route's error page
    data = exchange(lbd.address, get("/admin"))
    assert data.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"\r\nContent-Type: text/html\r\n" in data
    assert data.endswith(b"\r\n\r\n<p>not you</p>\n")
    lbd.wait_log(log_line("info", r"\*\d+ client 127\.0\.0\.1:\d+: 403: denied by "
                                  r"allow/deny of route #2"))
    assert_refused(exchange(lbd.address, get("/lan")), b"HTTP/1.1 403 Forbidden")


def test_return_body_file_and_listener_error_pages(lbd):
    os.mkdir(os.path.join(lbd.dir, "conf"))
    with open(os.path.join(lbd.dir, "conf", "robots.txt"), "wb") as f:
        f.write(b"User-agent: *\nDisallow: /\n" + b"#" * 5000 + b"\n")
    with open(os.path.join(lbd.dir, "conf", "404.html"), "w") as f:
        f.write("<h1>404: try /robots.txt</h1>\n")
    lbd.start('listeners = ( { protocol = "http"; listen = "$listen";\n'
              '  error_pages = ( { status = 404; file = "conf/404.html"; } );\n'
              '  routes = ( { path = "/robots.txt"; return = { status = 200;'
              ' body_file = "conf/robots.txt"; }; } ); } );\n')
    c = Client(lbd.address)
    c.send(get("/robots.txt"))
    status, fields, body, _ = c.response()
    assert status == "HTTP/1.1 200 OK" and fields["content-type"] == "text/plain"
    assert body.startswith(b"User-agent: *\n") and len(body) == 5027
    c.send(get("/robots.txt", extra="X: 1\r\n").replace(b"GET", b"HEAD", 1))
    status, fields, body, _ = c.response(head=True)
    assert fields["content-length"] == "5027" and body == b""
    c.send(get("/missing"))                          # a 404 keeps the connection
    status, fields, body, _ = c.response()
    assert status == "HTTP/1.1 404 Not Found" and fields["content-type"] == "text/html"
    assert body == b"<h1>404: try /robots.txt</h1>\n"
    c.send(get("/robots.txt"))
    assert len(c.response()[2]) == 5027


# Configuration -------------------------------------------------------------

def test_http_listener_settings_are_checked(lbd):
    path = lbd.write_config("""
listeners = ( { protocol = "http"; listen = "$listen";
  keepalive_timout = "5s"; } );
""")
    r = lbd_test(path)
    assert r.returncode == 1
    assert 'unknown setting "keepalive_timout"' in r.stderr
    assert '(did you mean "keepalive_timeout"?)' in r.stderr
