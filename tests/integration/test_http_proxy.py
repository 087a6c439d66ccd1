"""The http reverse proxy (SPEC §3.2-§3.5, §4): requests forwarded to real
HTTP/1.1 backends (http_backend.RecordingBackend, which records what it
receives) and their responses relayed back: routes and rewrites, header
edits, forwarding fields, request ids, chunked bodies both ways,
pipelining, 100-continue, upgrades, upstream keep-alive, retries, the
generated errors and the access log. Byte-exact checks go through plain
sockets; curl where a real client is the natural one. Every lbd runs one
worker, so that one keep-alive pool sees every request."""

import hashlib
import json
import os
import re
import socket
import time

import pytest

import helpers
from helpers import connect, free_port, log_line, wait_until
from http_backend import Behaviour, RecordingBackends
from test_http_access_log import lines
from test_http_listener import Client, exchange

@pytest.fixture
def http_backends():
    """http_backends(behaviour=None, name="http", **options): a started
    RecordingBackend, stopped at teardown."""
    with RecordingBackends() as start:
        yield start


# Configurations ----------------------------------------------------------------
# Written for Lbd.config (string.Template): $a, $b... are backends, $listen
# is lbd's port and $$ is a literal $.


def upstream(name, *servers, **settings):
    """One member of `upstreams`: servers are addresses ("$a") or
    (address, "extra server settings;"); settings are written as given."""
    entries = []
    for s in servers:
        address, extra = (s, "") if isinstance(s, str) else s
        entries.append(f'{{ address = "{address}"; {extra} }}')
    rest = "".join(f" {k} = {v};" for k, v in settings.items())
    return f"{name} = {{ servers = ( {', '.join(entries)} );{rest} }};"


def conf(routes='{ upstream = "web"; }', upstreams=None, listener=""):
    upstreams = upstreams or upstream("web", "$a")
    return ("workers = 1;\n"
            "upstreams = { " + upstreams + " };\n"
            'listeners = ( { protocol = "http"; listen = "$listen"; name = "web";\n'
            + listener + "\n  routes = ( " + routes + " );\n} );\n")


# Requests and responses ----------------------------------------------------------

def request(path="/", host="t.test", extra="", method="GET", version="HTTP/1.1", body=None):
    """Request bytes; a body gets its Content-Length."""
    head = f"{method} {path} {version}\r\n"
    if host is not None:
        head += f"Host: {host}\r\n"
    head += extra
    if body is not None:
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode("latin-1") + b"\r\n" + (body or b"")


def _line(c):
    while b"\r\n" not in c.buf:
        c._fill()
    line, c.buf = c.buf.split(b"\r\n", 1)
    return line


def _take(c, n):
    while len(c.buf) < n:
        c._fill()
    out, c.buf = c.buf[:n], c.buf[n:]
    return out


def read_chunked(c):
    """(decoded body, raw chunked bytes) from a Client."""
    body, raw = [], []
    while True:
        line = _line(c)
        raw.append(line + b"\r\n")
        size = int(line.split(b";")[0], 16)
        if size == 0:
            break
        data = _take(c, size + 2)
        assert data.endswith(b"\r\n"), data
        raw.append(data)
        body.append(data[:-2])
    while True:                     # trailers, then the empty line
        line = _line(c)
        raw.append(line + b"\r\n")
        if not line:
            return b"".join(body), b"".join(raw)


def read_response(c, head_request=False):
    """The next response on a Client, whatever its framing: (status line,
    {lowercase name: value}, body (de-chunked), raw bytes)."""
    status, fields, _, raw = c.response(head=True)
    code = int(status.split()[1])
    if head_request or code < 200 or code in (204, 304):
        return status, fields, b"", raw
    if fields.get("transfer-encoding", "").lower() == "chunked":
        body, raw_body = read_chunked(c)
    elif "content-length" in fields:
        body = raw_body = _take(c, int(fields["content-length"]))
    else:
        while True:                 # delimited by the end of the connection
            try:
                c._fill()
            except EOFError:
                break
        body = raw_body = c.buf
        c.buf = b""
    return status, fields, body, raw + raw_body


def ask(address, data, head_request=False):
    """One request on a new connection: its response (see read_response)."""
    c = Client(address)
    try:
        c.send(data)
        return read_response(c, head_request)
    finally:
        c.close()


def fields_of(raw):
    """[(name, value)] of a raw response head, in order, duplicates kept."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    return [(n, v.strip()) for n, _, v in (line.partition(":") for line in head)]


def values(raw, name):
    return [v for n, v in fields_of(raw) if n.lower() == name.lower()]


def assert_generated(data, status):
    """A response lbd made itself: the status, its short body, closed."""
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == status, data
    assert b"\r\nConnection: close\r\n" in head + b"\r\n"
    assert body == status[9:] + b"\n"


HEX32 = re.compile(r"[0-9a-f]{32}")
CLIENT = r"\*\d+ client 127\.0\.0\.1:\d+: "


# Forwarding basics -----------------------------------------------------------------

def test_method_target_fields_and_body_reach_the_backend(lbd, http_backends):
    a = http_backends(status=201, fields=[("X-Made", "yes"), ("Set-Cookie", "s=1")],
                      body="created\n")
    lbd.start(conf(), a=a)
    status, fields, body, raw = ask(lbd.address, request(
        "/items/7?q=a%20b&r", "Shop.Example:8080", method="POST", body=b"name=thing",
        extra="X-Custom: v1\r\nX-Custom: v2\r\nContent-Type: text/x-test\r\n"))
    assert status == "HTTP/1.1 201 Created"
    assert fields["x-made"] == "yes" and fields["set-cookie"] == "s=1"
    assert fields["content-length"] == "8" and fields["x-backend"] == "http"
    assert body == b"created\n"
    [req] = a.requests
    assert (req.method, req.target, req.version) == ("POST", "/items/7?q=a%20b&r", "HTTP/1.1")
    assert req.body == b"name=thing" and req.header("Content-Length") == "10"
    assert req.header("Host") == "Shop.Example:8080"
    assert req.headers("X-Custom") == ["v1", "v2"]
    assert req.header("Content-Type") == "text/x-test"


def test_the_request_line_sent_upstream_is_http11(lbd, http_backends):
    a = http_backends()
    lbd.start(conf(), a=a)
    data = exchange(lbd.address, request("/old", version="HTTP/1.0"))
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\nhttp\n")
    assert b"\r\nConnection: close\r\n" in data
    assert a.requests[0].raw_head.startswith(b"GET /old HTTP/1.1\r\n")


def test_http10_request_without_host_gets_the_upstreams_name(lbd, http_backends):
    a = http_backends()
    lbd.start(conf(), a=a)
    exchange(lbd.address, request("/", host=None, version="HTTP/1.0"))
    assert a.requests[0].headers("Host") == ["web"]


def test_absolute_form_target_is_sent_as_a_path(lbd, http_backends):
    a = http_backends()
    lbd.start(conf(), a=a)
    status = ask(lbd.address, request("http://t.test/abs/x?y=1"))[0]
    assert status == "HTTP/1.1 200 OK"
    assert a.requests[0].target == "/abs/x?y=1"


def test_hop_by_hop_request_fields_are_not_forwarded(lbd, http_backends):
    a = http_backends()
    lbd.start(conf(), a=a)
    status = ask(lbd.address, request("/", extra=(
        "Connection: keep-alive, X-Hop-One\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n"
        "Proxy-Connection: keep-alive\r\nX-Hop-One: 1\r\nConnection: x-hop-two\r\n"
        "X-Hop-Two: 2\r\nUpgrade: h2c\r\nX-Kept: 3\r\n")))[0]
    assert status == "HTTP/1.1 200 OK"
    [req] = a.requests
    names = {n.lower() for n, _ in req.fields}
    for hop in ("connection", "keep-alive", "te", "proxy-connection", "x-hop-one",
                "x-hop-two", "upgrade"):
        assert hop not in names, req.raw_head
    assert req.header("X-Kept") == "3"


def test_hop_by_hop_response_fields_are_not_relayed(lbd, http_backends):
    a = http_backends(fields=[("Connection", "X-Secret"), ("X-Secret", "s"),
                              ("Keep-Alive", "timeout=5"), ("Proxy-Connection", "x"),
                              ("X-Public", "p")])
    lbd.start(conf(), a=a)
    c = Client(lbd.address)
    c.send(request("/"))
    _, fields, body, raw = read_response(c)
    assert body == b"http\n" and fields["x-public"] == "p"
    for hop in ("connection", "x-secret", "keep-alive", "proxy-connection"):
        assert hop not in fields, raw
    # the backend's Connection named only X-Secret: the client connection goes on
    c.send(request("/again"))
    assert read_response(c)[2] == b"http\n"


def test_request_id_is_generated_forwarded_and_echoed(lbd, http_backends):
    a = http_backends(fields=[("X-Request-ID", "from-the-backend")])
    lbd.start(conf(), a=a)
    ids = []
    for _ in range(2):
        _, _, _, raw = ask(lbd.address, request("/"))
        [rid] = values(raw, "X-Request-ID")     # the backend's own is dropped
        assert HEX32.fullmatch(rid)
        ids.append(rid)
    assert ids[0] != ids[1]
    assert [r.headers("X-Request-ID") for r in a.requests] == [[ids[0]], [ids[1]]]


def test_head_response_has_no_body_and_the_connection_goes_on(lbd, http_backends):
    a = http_backends(body="five\n")
    lbd.start(conf(), a=a)
    c = Client(lbd.address)
    c.send(request("/h", method="HEAD") + request("/g"))
    status, fields, _, _ = read_response(c, head_request=True)
    assert status == "HTTP/1.1 200 OK" and fields["content-length"] == "5"
    status, _, body, _ = read_response(c)
    assert status == "HTTP/1.1 200 OK" and body == b"five\n"
    assert [r.method for r in a.requests] == ["HEAD", "GET"]


def test_http10_client_never_sees_transfer_encoding_even_for_head(lbd, http_backends):
    a = http_backends(framing="chunked")
    lbd.start(conf(), a=a)
    data = exchange(lbd.address, request("/", method="HEAD", version="HTTP/1.0"))
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in data


def test_http10_server_response_is_relayed_as_http11(lbd, http_backends):
    a = http_backends(raw=b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
    lbd.start(conf(), a=a)
    c = Client(lbd.address)
    for _ in range(3):
        c.send(request("/"))
        status, fields, body, _ = read_response(c)
        assert status == "HTTP/1.1 200 OK" and body == b"ok\n" and "connection" not in fields
    assert a.accepted == 3          # an HTTP/1.0 server closes: nothing to reuse


def test_client_half_closing_after_its_request_still_gets_the_response(lbd, http_backends):
    a = http_backends(delay=0.3)
    lbd.start(conf(), a=a)
    with connect(lbd.address) as s:
        s.sendall(request("/"))
        s.shutdown(socket.SHUT_WR)
        data = helpers.recv_all(s)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\nhttp\n")


def test_204_and_304_are_relayed_without_a_body(lbd, http_backends):
    a = http_backends(lambda req: Behaviour(status=int(req.target[1:])))
    lbd.start(conf(), a=a)
    c = Client(lbd.address)
    c.send(request("/204") + request("/304") + request("/200"))
    assert read_response(c)[0] == "HTTP/1.1 204 No Content"
    assert read_response(c)[0] == "HTTP/1.1 304 Not Modified"
    status, _, body, _ = read_response(c)
    assert status == "HTTP/1.1 200 OK" and body == b"http\n"


def test_interim_responses_of_the_server_are_dropped(lbd, http_backends):
    a = http_backends(interim=[b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n",
                               b"HTTP/1.1 100 Continue\r\n\r\n"])
    lbd.start(conf(), a=a)
    data = exchange(lbd.address, request("/", extra="Connection: close\r\n"))
    assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data
    assert b"Early Hints" not in data and b"Link:" not in data and b"Continue" not in data
    assert data.endswith(b"\r\n\r\nhttp\n")


def test_response_delimited_by_close_reaches_the_client_whole(lbd, http_backends):
    a = http_backends(framing="close", body="until the end\n")
    lbd.start(conf(), a=a)
    c = Client(lbd.address)
    c.send(request("/"))
    status, fields, body, _ = read_response(c)
    assert status == "HTTP/1.1 200 OK" and body == b"until the end\n"
    assert fields["connection"] == "close"


def test_server_asking_to_close_is_not_reused_but_the_client_keeps_its_connection(
        lbd, http_backends):
    a = http_backends(close=True)
    lbd.start(conf(), a=a)
    c = Client(lbd.address)
    for i in range(3):
        c.send(request(f"/{i}"))
        status, fields, body, _ = read_response(c)
        assert body == b"http\n" and "connection" not in fields
    assert a.accepted == 3


def test_http10_client_asking_for_keep_alive_keeps_it(lbd, http_backends):
    a = http_backends()
    lbd.start(conf(), a=a)
    c = Client(lbd.address)
    for _ in range(2):
        c.send(request("/", version="HTTP/1.0", extra="Connection: keep-alive\r\n"))
        status, fields, body, _ = read_response(c)
        assert body == b"http\n" and fields["connection"] == "keep-alive"


def test_curl_gets_a_response_through_the_proxy(lbd, http_backends):
    a = http_backends(body=lambda req: req.body.upper())
    lbd.start(conf(), a=a)
    out = helpers.run(["curl", "-s", "-i", "-d", "a=1&b=2", f"http://{lbd.address}/form"])
    assert out.returncode == 0
    assert out.stdout.startswith("HTTP/1.1 200 OK\n")        # text mode: \r\n is \n
    assert out.stdout.endswith("\n\nA=1&B=2")
    [req] = a.requests
    assert req.method == "POST" and req.body == b"a=1&b=2"
    assert req.header("Content-Type") == "application/x-www-form-urlencoded"
    assert req.header("User-Agent").startswith("curl/")


# Routes (SPEC §3.4) ----------------------------------------------------------------

ROUTES = r"""
    { host = "api.example.com"; upstream = "ua"; },
    { host = "*.example.org"; upstream = "ub"; },
    { host = "~^img[0-9]+\\.example\\.net$$"; upstream = "uc"; },
    { path = "/exact"; upstream = "ua"; },
    { path_prefix = "/prefix/"; upstream = "ub"; },
    { path_regex = "^/re/[0-9]+$$"; upstream = "uc"; },
    { path_prefix = "/m/"; method = ["PUT", "DELETE"]; upstream = "ua"; },
    { path_prefix = "/m/"; method = ["GET"]; upstream = "ub"; },
    { path_prefix = "/h/"; header = "X-Tenant: acme"; upstream = "ua"; },
    { path_prefix = "/h/"; header = "X-Tenant: ~^be"; upstream = "ub"; },
    { path_prefix = "/h/"; header = "X-Tenant"; upstream = "uc"; },
    { path_prefix = "/c/"; cookie = "beta: 1"; upstream = "ua"; },
    { path_prefix = "/c/"; cookie = "beta: ~^[2-9]$$"; upstream = "ub"; },
    { path_prefix = "/c/"; cookie = "beta"; upstream = "uc"; },
    { path_prefix = "/q/"; query = "lang: fr"; upstream = "ua"; },
    { path_prefix = "/q/"; query = "lang: ~^(de|it)$$"; upstream = "ub"; },
    { path_prefix = "/q/"; query = "lang"; upstream = "uc"; },
    { path_prefix = "/eq/"; cookie = "canary=1"; upstream = "ua"; },
    { path_prefix = "/eq/"; query = "lang=fr"; upstream = "ub"; },
    { path_prefix = "/eq/"; query = ["lang=~^(de|it)$$", "x="]; upstream = "uc"; },
    { path = "/all"; host = "all.test"; method = ["POST"]; header = "X-A";
      query = "k: v"; upstream = "uc"; },
    { path = "/ret"; return = { status = 418; body = "short and stout\n"; }; },
    { path = "/redir"; redirect = { status = 302;
                                    location = "http://$$host/new$$request_uri"; }; }
"""


@pytest.fixture
def routed(lbd, http_backends):
    """route(path, host=..., extra=..., method=...) -> the name of the
    backend that served the request ("a", "b", "c") or lbd's status."""
    backends = [http_backends(name=n) for n in "abc"]
    lbd.start(conf(ROUTES, " ".join(upstream("u" + b.name, "$" + b.name) for b in backends)),
              a=backends[0], b=backends[1], c=backends[2])

    def route(path, host="t.test", extra="", method="GET"):
        before = [len(b.requests) for b in backends]
        received = sum(b.received_bytes for b in backends)
        status, _, body, _ = ask(lbd.address, request(path, host, extra, method))
        after = [len(b.requests) for b in backends]
        if not status.startswith("HTTP/1.1 200 "):
            assert after == before and sum(b.received_bytes for b in backends) == received
            return int(status.split()[1])
        name = body.decode().strip()
        served = backends["abc".index(name)]
        assert after[backends.index(served)] == before[backends.index(served)] + 1
        assert sum(after) == sum(before) + 1
        assert served.requests[-1].target == path and served.requests[-1].method == method
        return name
    return route


def test_route_by_host_exact_wildcard_and_regex(routed):
    assert routed("/", "api.example.com") == "a"
    assert routed("/", "API.Example.COM:8080") == "a"       # case and port do not count
    assert routed("/", "api.example.com.") == "a"
    assert routed("/", "v1.api.example.com") == 404
    assert routed("/", "www.example.org") == "b"
    assert routed("/", "a.b.example.org:81") == "b"
    assert routed("/", "example.org") == 404                # the wildcard needs a label
    assert routed("/", "img12.example.net") == "c"
    assert routed("/", "img.example.net") == 404
    assert routed("/", "img1.example.net.evil") == 404


def test_route_by_path_prefix_and_regex(routed):
    assert routed("/exact") == "a"
    assert routed("/exact?x=1") == "a"                      # the query is not the path
    assert routed("/exact/") == 404
    assert routed("/exactly") == 404
    assert routed("/prefix/x/y") == "b"
    assert routed("/prefix/") == "b"
    assert routed("/prefix") == 404
    assert routed("/re/123") == "c"
    assert routed("/re/12a") == 404


def test_route_by_method(routed):
    assert routed("/m/x", method="PUT") == "a"
    assert routed("/m/x", method="DELETE") == "a"
    assert routed("/m/x", method="GET") == "b"
    assert routed("/m/x", method="POST") == 404


def test_route_by_header_in_three_forms(routed):
    assert routed("/h/", extra="X-Tenant: acme\r\n") == "a"
    assert routed("/h/", extra="x-tenant: acme\r\n") == "a"    # names in any case
    assert routed("/h/", extra="X-Tenant: beta\r\n") == "b"
    assert routed("/h/", extra="X-Tenant: acme2\r\n") == "c"   # exact is exact
    assert routed("/h/", extra="X-Tenant: \r\n") == "c"
    assert routed("/h/", extra="X-Other: acme\r\n") == 404


def test_route_by_cookie_in_three_forms(routed):
    assert routed("/c/", extra="Cookie: a=0; beta=1\r\n") == "a"
    assert routed("/c/", extra="Cookie: x=1\r\nCookie: beta=7\r\n") == "b"
    assert routed("/c/", extra="Cookie: beta=x\r\n") == "c"
    assert routed("/c/", extra="Cookie: xbeta=1\r\n") == 404
    assert routed("/c/", extra="X-Beta: 1\r\n") == 404


def test_route_by_query_in_three_forms(routed):
    assert routed("/q/?lang=fr") == "a"
    assert routed("/q/?x=1&lang=de") == "b"
    assert routed("/q/?lang=en") == "c"
    assert routed("/q/?lang") == "c"
    assert routed("/q/?language=fr") == 404
    assert routed("/q/") == 404


def test_route_by_cookie_and_query_written_as_on_the_wire(routed):
    assert routed("/eq/", extra="Cookie: a=0; canary=1\r\n") == "a"
    assert routed("/eq/?lang=fr", extra="Cookie: canary=2\r\n") == "b"
    assert routed("/eq/?lang=de&x=") == "c"
    assert routed("/eq/?lang=de&x=1") == 404                # "x=" is x with an empty value
    assert routed("/eq/?lang=fr2") == 404
    assert routed("/eq/?canary=1") == 404                   # a query parameter is no cookie


def test_route_needs_every_condition(routed):
    ok = dict(host="all.test", extra="X-A: 1\r\n", method="POST")
    assert routed("/all?k=v", **ok) == "c"
    assert routed("/all?k=w", **ok) == 404
    assert routed("/all?k=v", **dict(ok, method="PUT")) == 404
    assert routed("/all?k=v", **dict(ok, host="other.test")) == 404
    assert routed("/all?k=v", **dict(ok, extra="")) == 404


def test_return_and_redirect_routes_never_reach_a_backend(routed, lbd):
    assert routed("/ret") == 418
    status, fields, body, _ = ask(lbd.address, request("/ret"))
    assert body == b"short and stout\n"
    assert routed("/redir?x=1", host="go.test") == 302
    status, fields, body, _ = ask(lbd.address, request("/redir?x=1", "go.test"))
    assert fields["location"] == "http://go.test/new/redir?x=1"
    assert routed("/nowhere") == 404


def test_rewrite_uses_captures_and_keeps_the_query(lbd, http_backends):
    a = http_backends()
    lbd.start(conf(r"""
        { path_regex = "^/api/(orders|users)/(.*)$$"; rewrite = "/v2/$$1/id/$$2";
          upstream = "web"; },
        { path_prefix = "/static/"; rewrite = "/assets$$uri"; upstream = "web"; }
        """), a=a)
    for path in ("/api/users/42?full=1&x=%20", "/api/orders/7/items", "/api/users/?",
                 "/static/app.js?v=3", "/api/other/1"):
        ask(lbd.address, request(path))
    assert [r.target for r in a.requests] == [
        "/v2/users/id/42?full=1&x=%20", "/v2/orders/id/7/items", "/v2/users/id/?",
        "/assets/static/app.js?v=3"]


# Header edits (SPEC §3.5) ----------------------------------------------------------

HEADER_EDITS = """
  request_headers = { set = ["X-Env: prod", "X-Both: listener"];
                      add = ["X-Trace: $$request_id", "X-Client: $$remote_addr:$$remote_port",
                             "X-Host: $$host", "X-Where: $$method $$request_uri"];
                      remove = ["X-Debug"]; };
  response_headers = { set = ["X-Frame-Options: DENY", "X-Both-Resp: listener"];
                       add = ["X-Resp-Id: $$request_id"]; remove = ["Server"]; };
"""
EDIT_ROUTES = """
    { path_prefix = "/r/"; upstream = "web";
      request_headers = { set = ["X-Both: route"]; add = ["X-Route: one"];
                          remove = ["X-Env"]; };
      response_headers = { set = ["X-Both-Resp: route"]; add = ["X-Route-Resp: one"]; }; },
    { path_prefix = "/s/"; upstream = "web";
      request_headers = { add = ["X-Route: two"]; }; },
    { upstream = "web"; }
"""


def test_listener_header_edits_apply_with_variables(lbd, http_backends):
    a = http_backends()
    lbd.start(conf(EDIT_ROUTES, listener=HEADER_EDITS), a=a)
    c = Client(lbd.address)
    c.send(request("/x?y=1", "Www.Example.COM:8080",
                   extra="X-Env: dev\r\nX-Env: test\r\nX-Debug: 1\r\nX-Trace: client\r\n"))
    _, fields, body, raw = read_response(c)
    [req] = a.requests
    rid = fields["x-request-id"]
    port = c.sock.getsockname()[1]
    assert req.headers("X-Env") == ["prod"]                  # set replaces every one
    assert req.headers("X-Both") == ["listener"]
    assert req.headers("X-Trace") == ["client", rid]         # add adds one more
    assert req.header("X-Client") == f"127.0.0.1:{port}"
    assert req.header("X-Host") == "www.example.com"
    assert req.header("X-Where") == "GET /x?y=1"
    assert req.header("X-Debug") is None
    assert body == b"http\n"
    assert values(raw, "X-Frame-Options") == ["DENY"]
    assert values(raw, "X-Both-Resp") == ["listener"]
    assert values(raw, "X-Resp-Id") == [rid]
    assert values(raw, "Server") == []
    assert values(raw, "X-Backend") == ["http"]


def test_route_header_edits_merge_with_the_listeners(lbd, http_backends):
    a = http_backends()
    lbd.start(conf(EDIT_ROUTES, listener=HEADER_EDITS), a=a)
    _, fields, _, raw = ask(lbd.address, request("/r/1", extra="X-Debug: 1\r\n"))
    [req] = a.requests
    # the route's edits of X-Both and X-Env win; the listener's others still apply
    assert req.headers("X-Both") == ["route"]
    assert req.headers("X-Env") == []
    assert req.header("X-Route") == "one"
    assert req.header("X-Trace") == fields["x-request-id"]
    assert req.header("X-Debug") is None
    assert values(raw, "X-Both-Resp") == ["route"]
    assert values(raw, "X-Frame-Options") == ["DENY"]
    assert values(raw, "X-Route-Resp") == ["one"]
    assert values(raw, "Server") == []


def test_route_adding_one_field_keeps_every_listener_edit(lbd, http_backends):
    a = http_backends()
    lbd.start(conf(EDIT_ROUTES, listener=HEADER_EDITS), a=a)
    _, fields, _, raw = ask(lbd.address, request("/s/1", extra="X-Debug: 1\r\nX-Env: dev\r\n"))
    [req] = a.requests
    assert req.headers("X-Route") == ["two"]
    assert req.headers("X-Env") == ["prod"] and req.headers("X-Both") == ["listener"]
    assert req.header("X-Trace") == fields["x-request-id"] and req.header("X-Debug") is None
    assert values(raw, "X-Frame-Options") == ["DENY"] and values(raw, "Server") == []


def test_request_headers_can_change_the_forwarding_fields(lbd, http_backends):
    a = http_backends()
    lbd.start(conf(listener="""
        request_headers = { set = ["X-Forwarded-Proto: https"]; remove = ["X-Real-IP"]; };
        """), a=a)
    ask(lbd.address, request("/"))
    [req] = a.requests
    assert req.headers("X-Forwarded-Proto") == ["https"]
    assert req.headers("X-Real-IP") == []


# Forwarding fields ------------------------------------------------------------------

@pytest.mark.parametrize("mode,sent,expected", [
    ("append", [], ["127.0.0.1"]),
    ("append", ["1.2.3.4"], ["1.2.3.4, 127.0.0.1"]),
    ("append", [""], ["127.0.0.1"]),
    ("append", ["1.1.1.1", "2.2.2.2, 3.3.3.3"], ["1.1.1.1, 2.2.2.2, 3.3.3.3, 127.0.0.1"]),
    ("replace", ["1.2.3.4"], ["127.0.0.1"]),
    ("off", ["1.2.3.4"], ["1.2.3.4"]),
    ("off", [], []),
])
def test_x_forwarded_for(lbd, http_backends, mode, sent, expected):
    a = http_backends()
    lbd.start(conf(listener=f'xff = "{mode}";'), a=a)
    ask(lbd.address, request("/", extra="".join(f"X-Forwarded-For: {v}\r\n" for v in sent)))
    assert a.requests[0].headers("X-Forwarded-For") == expected


def test_forwarding_fields_replace_what_the_client_claims(lbd, http_backends):
    a = http_backends()
    lbd.start(conf(), a=a)
    ask(lbd.address, request("/", "Example.COM:8080", extra=(
        "X-Forwarded-Proto: https\r\nX-Forwarded-Port: 1\r\nX-Forwarded-Host: evil\r\n"
        "X-Real-IP: 6.6.6.6\r\n")))
    [req] = a.requests
    assert req.headers("X-Forwarded-Proto") == ["http"]
    assert req.headers("X-Forwarded-Port") == [str(lbd.port)]
    assert req.headers("X-Forwarded-Host") == ["Example.COM:8080"]
    assert req.headers("X-Real-IP") == ["127.0.0.1"]


@pytest.mark.parametrize("trusted,xff,real_ip", [
    ('["127.0.0.1/32", "10.0.0.0/8"]', ["1.2.3.4, 10.0.0.1"], "1.2.3.4"),
    ('["127.0.0.1/32", "10.0.0.0/8"]', ["1.2.3.4", "10.0.0.1"], "1.2.3.4"),
    ('["127.0.0.1/32", "10.0.0.0/8"]', ["10.0.0.7, 10.0.0.1"], "10.0.0.7"),
    ('["127.0.0.1/32"]', ["1.2.3.4, 10.0.0.1"], "10.0.0.1"),
    ('["10.0.0.0/8"]', ["1.2.3.4, 10.0.0.1"], "127.0.0.1"),    # the peer is not trusted
    (None, ["1.2.3.4"], "127.0.0.1"),                          # nobody is
], ids=["chain", "two-fields", "all-trusted", "peer-only", "peer-untrusted", "none"])
def test_x_real_ip_behind_trusted_proxies(lbd, http_backends, trusted, xff, real_ip):
    a = http_backends()
    lbd.start(conf(listener=f"trusted_proxies = {trusted};" if trusted else ""), a=a)
    ask(lbd.address, request("/", extra="".join(f"X-Forwarded-For: {v}\r\n" for v in xff)))
    [req] = a.requests
    assert req.headers("X-Real-IP") == [real_ip]
    assert req.headers("X-Forwarded-For") == [", ".join(xff + ["127.0.0.1"])]


def test_xff_replace_behind_trusted_proxies_names_the_real_client(lbd, http_backends):
    a = http_backends()
    lbd.start(conf(listener='xff = "replace"; trusted_proxies = ["127.0.0.1/32", '
                            '"10.0.0.0/8"];'), a=a)
    ask(lbd.address, request("/", extra="X-Forwarded-For: 9.9.9.9, 1.2.3.4, 10.0.0.1\r\n"))
    assert a.requests[0].headers("X-Forwarded-For") == ["1.2.3.4"]


# X-Request-ID and the access log ----------------------------------------------------

def id_conf(log_format):
    return conf(listener='access_log = { path = "$dir/access.log"; format = "' + log_format
                + '"; };')


@pytest.mark.parametrize("sent,kept", [
    ("my-Id_1.2", True),
    ("a" * 64, True),
    ("a" * 65, False),
    ("bad id", False),
    ("bad/id", False),
    ("", False),
    (None, False),
], ids=["valid", "64-bytes", "65-bytes", "space", "slash", "empty", "absent"])
def test_request_id_kept_when_valid_else_generated(lbd, http_backends, sent, kept):
    a = http_backends()
    lbd.start(id_conf("$$request_id $$status"), a=a)
    extra = f"X-Request-ID: {sent}\r\n" if sent is not None else ""
    _, _, _, raw = ask(lbd.address, request("/", extra=extra))
    [rid] = values(raw, "X-Request-ID")
    if kept:
        assert rid == sent
    else:
        assert HEX32.fullmatch(rid) and rid != sent
    assert a.requests[0].headers("X-Request-ID") == [rid]
    assert lines(os.path.join(lbd.dir, "access.log"), 1) == [f"{rid} 200"]


def test_access_log_combined_for_a_proxied_request(lbd, http_backends):
    a = http_backends(status=201)
    lbd.start(conf(listener='access_log = { path = "$dir/access.log"; };'), a=a)
    _, _, _, raw = ask(lbd.address, request("/logged?x=1", extra="Referer: http://r.test/\r\n"
                                            "User-Agent: t/1.0\r\n"))
    [line] = lines(os.path.join(lbd.dir, "access.log"), 1)
    assert re.fullmatch(r'127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
                        r'"GET /logged\?x=1 HTTP/1\.1" 201 %d "http://r\.test/" "t/1\.0"'
                        % len(raw), line), (line, len(raw))


def test_access_log_json_for_a_proxied_request(lbd, http_backends):
    a = http_backends(status=202, body="accepted\n")
    lbd.start(conf(listener='access_log = { path = "$dir/access.json"; format = "json"; };'),
              a=a)
    _, fields, _, raw = ask(lbd.address, request("/j?k=v", "Log.Test"))
    [line] = lines(os.path.join(lbd.dir, "access.json"), 1)
    entry = json.loads(line)
    assert entry["status"] == 202 and entry["uri"] == "/j?k=v" and entry["method"] == "GET"
    assert entry["upstream_addr"] == a.address
    assert entry["request_id"] == fields["x-request-id"]
    assert entry["bytes_sent"] == len(raw)
    assert entry["host"] == "log.test"


def test_access_log_format_with_upstream_variables(lbd, http_backends):
    a = http_backends(status=203, delay=0.2)
    lbd.start(id_conf("$$upstream_addr $$status $$request_id $$upstream_response_time"), a=a)
    _, fields, _, _ = ask(lbd.address, request("/"))
    [line] = lines(os.path.join(lbd.dir, "access.log"), 1)
    addr, status, rid, took = line.split(" ")
    assert (addr, status, rid) == (a.address, "203", fields["x-request-id"])
    assert 0.15 <= float(took) < 3


# Chunked bodies -----------------------------------------------------------------------

def test_chunked_request_body_is_forwarded_chunked(lbd, http_backends):
    """request_buffering = false: the body streams, chunked as lbd writes it
    (its own chunk lines, no extensions), the trailer field kept."""
    a = http_backends(body=lambda req: req.body)
    lbd.start(conf(listener="request_buffering = false;"), a=a)
    c = Client(lbd.address)
    c.send(b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    time.sleep(0.1)
    c.send(b"7;ext=1\r\n, world\r\n0\r\nX-Trailer: yes\r\n\r\n")
    status, _, body, _ = read_response(c)
    assert status == "HTTP/1.1 200 OK" and body == b"hello, world"
    [req] = a.requests
    assert req.chunked and req.body == b"hello, world"
    assert req.headers("Transfer-Encoding") == ["chunked"]
    assert req.header("Content-Length") is None
    assert req.trailers == [("X-Trailer", "yes")]
    assert b"ext=1" not in req.raw_body
    # the connection goes on
    c.send(request("/next"))
    assert read_response(c)[2] == b""
    assert a.requests[1].target == "/next"


def test_buffered_chunked_request_body_goes_with_its_length(lbd, http_backends):
    """request_buffering (the default): a chunked body that fits in
    request_buffer_size is read whole and sent with Content-Length."""
    a = http_backends(body=lambda req: req.body)
    lbd.start(conf(), a=a)
    c = Client(lbd.address)
    c.send(b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    time.sleep(0.1)
    c.send(b"7;ext=1\r\n, world\r\n0\r\nX-Trailer: yes\r\n\r\n")
    status, _, body, _ = read_response(c)
    assert status == "HTTP/1.1 200 OK" and body == b"hello, world"
    [req] = a.requests
    assert not req.chunked and req.body == b"hello, world"
    assert req.headers("Content-Length") == ["12"]
    assert req.header("Transfer-Encoding") is None
    c.send(request("/next"))
    assert read_response(c)[2] == b""
    assert a.requests[1].target == "/next"


def test_chunked_request_pipelined_with_the_next_one(lbd, http_backends):
    a = http_backends(body=lambda req: req.body or req.target)
    lbd.start(conf(), a=a)
    c = Client(lbd.address)
    c.send(b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"3\r\nabc\r\n0\r\n\r\n" + request("/next"))
    assert read_response(c)[2] == b"abc"
    assert read_response(c)[2] == b"/next"
    assert [r.target for r in a.requests] == ["/up", "/next"]


def test_curl_chunked_upload_of_a_large_body(lbd, http_backends, tmp_path):
    a = http_backends(body=lambda req: hashlib.sha256(req.body).hexdigest())
    lbd.start(conf(), a=a)
    data = b"".join(helpers.pattern(3 * 1024 * 1024 + 17, seed=5))
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    out = helpers.run(["curl", "-s", "-H", "Transfer-Encoding: chunked", "--data-binary",
                       f"@{path}", f"http://{lbd.address}/up"])
    assert out.returncode == 0 and out.stdout == hashlib.sha256(data).hexdigest()
    assert a.requests[0].chunked and len(a.requests[0].body) == len(data)


def test_large_content_length_bodies_stream_both_ways(lbd, http_backends):
    size = 8 * 1024 * 1024 + 3
    a = http_backends(lambda req: Behaviour(big=size, seed=9, fields=[
        ("X-Got", hashlib.sha256(req.body).hexdigest())]))
    lbd.start(conf(), a=a)
    c = Client(lbd.address, timeout=20)
    upload = b"".join(helpers.pattern(5 * 1024 * 1024, seed=4))
    c.send(request("/big", method="PUT", body=upload))
    status, fields, _, _ = c.response(head=True)
    assert fields["x-got"] == hashlib.sha256(upload).hexdigest()
    assert int(fields["content-length"]) == size
    h = hashlib.sha256(c.buf)
    got = len(c.buf)
    while got < size:
        chunk = c.sock.recv(1 << 18)
        assert chunk, f"closed after {got} of {size} bytes"
        h.update(chunk)
        got += len(chunk)
    assert got == size and h.hexdigest() == helpers.pattern_digest(size, seed=9)


def test_chunked_response_is_relayed_chunked_to_http11(lbd, http_backends):
    a = http_backends(framing="chunked", chunk_size=4, body="The quick brown fox\n",
                      trailers=[("X-Sum", "1")])
    lbd.start(conf(), a=a)
    c = Client(lbd.address)
    c.send(request("/one"))
    status, fields, body, raw = read_response(c)
    assert status == "HTTP/1.1 200 OK"
    assert fields["transfer-encoding"] == "chunked" and "content-length" not in fields
    assert body == b"The quick brown fox\n"
    assert "connection" not in fields
    c.send(request("/two"))
    assert read_response(c)[2] == b"The quick brown fox\n"


def test_chunked_response_is_dechunked_for_http10_and_closed(lbd, http_backends):
    a = http_backends(framing="chunked", chunk_size=3, body="hello old client\n",
                      trailers=[("X-Sum", "1")])
    lbd.start(conf(), a=a)
    data = exchange(lbd.address, request("/", version="HTTP/1.0",
                                         extra="Connection: keep-alive\r\n"))
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Transfer-Encoding" not in head and b"Content-Length" not in head
    assert b"\r\nConnection: close" in head
    assert body == b"hello old client\n"


def test_large_chunked_response_is_dechunked_for_http10(lbd, http_backends):
    size = 3 * 1024 * 1024 + 5
    a = http_backends(big=size, seed=7, framing="chunked", chunk_size=50000)
    lbd.start(conf(), a=a)
    with connect(lbd.address, timeout=20) as s:
        s.sendall(request("/", version="HTTP/1.0"))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            assert chunk
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        count, digest = helpers.recv_digest(s, prefix=rest)
    assert b"Transfer-Encoding" not in head
    assert count == size and digest == helpers.pattern_digest(size, seed=7)


# Pipelining, 100-continue, upgrades ---------------------------------------------------

def test_ten_pipelined_requests_get_ten_responses_in_order(lbd, http_backends):
    a = http_backends(body=lambda req: f"{req.method} {req.target} {req.body.decode()}")
    lbd.start(conf(), a=a)
    c = Client(lbd.address)
    reqs = [request(f"/p/{i}") if i % 3 else request(f"/p/{i}", method="POST",
                                                      body=b"body%d" % i)
            for i in range(10)]
    c.send(b"".join(reqs))
    for i in range(10):
        status, _, body, _ = read_response(c)
        assert status == "HTTP/1.1 200 OK"
        assert body == (f"POST /p/{i} body{i}" if i % 3 == 0 else f"GET /p/{i} ").encode()
    assert [r.target for r in a.requests] == [f"/p/{i}" for i in range(10)]


def test_pipelined_proxied_and_answered_requests_stay_in_order(lbd, http_backends):
    a = http_backends(body=lambda req: req.target)
    lbd.start(conf('{ path = "/ret"; return = { status = 200; body = "returned"; }; },'
                   '{ upstream = "web"; }'), a=a)
    c = Client(lbd.address)
    c.send(request("/p1") + request("/ret") + request("/p2") + request("/nothing", "x")
           + request("/ret") + request("/p3"))
    assert [read_response(c)[2] for _ in range(6)] == [
        b"/p1", b"returned", b"/p2", b"/nothing", b"returned", b"/p3"]


def test_pipelined_requests_larger_than_the_buffer_are_all_proxied(lbd, http_backends):
    a = http_backends(body=lambda req: req.target)
    lbd.start(conf(listener='max_header_size = "1k";'), a=a)
    c = Client(lbd.address)
    c.send(b"".join(request(f"/{i}") for i in range(300)))     # about 5 times the buffer
    for i in range(300):
        assert read_response(c)[2] == f"/{i}".encode()


def test_expect_100_continue_is_answered_by_lbd_and_not_forwarded(lbd, http_backends):
    a = http_backends(body=lambda req: b"got " + req.body)
    lbd.start(conf(), a=a)
    c = Client(lbd.address)
    c.send(b"PUT /up HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    status, _, _, raw = c.response(head=True)
    assert raw == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert a.requests == []
    c.send(b"hello")
    status, _, body, _ = read_response(c)
    assert status == "HTTP/1.1 200 OK" and body == b"got hello"
    [req] = a.requests
    assert req.header("Expect") is None and req.body == b"hello"


def test_expect_with_the_body_already_sent_gets_no_100(lbd, http_backends):
    a = http_backends()
    lbd.start(conf(), a=a)
    c = Client(lbd.address)
    c.send(b"PUT /up HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
           b"hello" + request("/after"))
    assert read_response(c)[0] == "HTTP/1.1 200 OK"
    assert read_response(c)[0] == "HTTP/1.1 200 OK"
    assert [r.body for r in a.requests] == [b"hello", b""]


def test_curl_expect_100_continue(lbd, http_backends, tmp_path):
    a = http_backends(body=lambda req: str(len(req.body)))
    lbd.start(conf(), a=a)
    path = tmp_path / "body"
    path.write_bytes(b"x" * 100000)
    out = helpers.run(["curl", "-sv", "--expect100-timeout", "5", "-H", "Expect: 100-continue",
                       "--data-binary", f"@{path}", f"http://{lbd.address}/e"])
    assert out.returncode == 0 and out.stdout == "100000"
    assert "< HTTP/1.1 100 Continue" in out.stderr


def test_websocket_upgrade_tunnels_bytes_both_ways(lbd, http_backends):
    a = http_backends(upgrade=True)
    lbd.start(conf(), a=a)
    with connect(lbd.address) as s:
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                  b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  b"\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(1)
            assert chunk, head
            head += chunk
        assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
        assert ("Upgrade", "websocket") in fields_of(head)
        assert [v.lower() for v in values(head, "Connection")] == ["upgrade"]
        for message in (b"ping", b"\x00\xff binary \r\n\r\n", b"z" * 200000):
            s.sendall(message)
            got = b""
            while len(got) < len(message):
                chunk = s.recv(65536)
                assert chunk, got
                got += chunk
            assert got == message
        s.shutdown(socket.SHUT_WR)
        assert helpers.recv_all(s) == b""           # the backend's end comes through
    [req] = a.requests
    assert req.header("Upgrade") == "websocket"
    assert req.header("Connection").lower() == "upgrade"
    assert req.header("Sec-WebSocket-Key") == "dGhlIHNhbXBsZSBub25jZQ=="


def test_bytes_sent_before_the_101_go_through_the_tunnel(lbd, http_backends):
    a = http_backends(upgrade=True)
    lbd.start(conf(), a=a)
    with connect(lbd.address) as s:
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: x-raw\r\n\r\n"
                  b"early bytes")
        s.shutdown(socket.SHUT_WR)
        data = helpers.recv_all(s)
    assert data.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert data.endswith(b"\r\n\r\nearly bytes")


def test_101_to_a_request_without_upgrade_is_502(lbd, http_backends):
    a = http_backends(upgrade=True)
    lbd.start(conf(), a=a)
    assert_generated(exchange(lbd.address, request("/")), b"HTTP/1.1 502 Bad Gateway")
    lbd.wait_log(log_line("info", CLIENT + r'502: server .* answered 101 to a request '
                                           r'without Upgrade'))


# Upstream keep-alive ----------------------------------------------------------------

def test_upstream_connection_is_reused_across_client_connections(lbd, http_backends):
    a = http_backends()
    lbd.start(conf(upstreams=upstream("web", "$a", keepalive=4)), a=a)
    for i in range(3):
        c = Client(lbd.address)
        for j in range(5):
            c.send(request(f"/{i}/{j}"))
            assert read_response(c)[2] == b"http\n"
        c.close()
    assert len(a.requests) == 15
    assert a.accepted == 1 and {r.conn for r in a.requests} == {1}


def test_client_closing_its_connection_keeps_the_upstream_one(lbd, http_backends):
    a = http_backends()
    lbd.start(conf(), a=a)
    for i in range(3):
        data = exchange(lbd.address, request(f"/{i}", extra="Connection: close\r\n"))
        assert b"\r\nConnection: close\r\n" in data and data.endswith(b"http\n")
    assert a.accepted == 1


def test_server_closing_its_idle_connections_is_harmless(lbd, http_backends):
    a = http_backends(raw=b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
    lbd.start(conf(), a=a)
    c = Client(lbd.address)
    for i in range(5):
        c.send(request(f"/{i}"))
        status, _, body, _ = read_response(c)
        assert status == "HTTP/1.1 200 OK" and body == b"ok\n"
        time.sleep(0.05 * (i % 2))      # lbd sees the close, or finds it sending
    assert a.accepted == 5


def test_keepalive_0_opens_one_connection_per_request(lbd, http_backends):
    a = http_backends()
    lbd.start(conf(upstreams=upstream("web", "$a", keepalive=0)), a=a)
    c = Client(lbd.address)
    for i in range(6):
        c.send(request(f"/{i}"))
        assert read_response(c)[2] == b"http\n"
    assert a.accepted == 6
    assert [r.conn for r in a.requests] == [1, 2, 3, 4, 5, 6]


# lbd's own errors: response_headers and error_pages (SPEC §3.3) --------------------

HSTS = 'response_headers = { set = ["Strict-Transport-Security: max-age=31536000"]; };'


def test_generated_errors_carry_the_response_headers_and_error_pages(lbd, http_backends):
    dead = free_port()
    a = http_backends()
    for name, text in (("50x.html", "<h1>down</h1>\n"), ("404.html", "<h1>nowhere</h1>\n"),
                       ("route502.html", "<h1>api down</h1>\n")):
        with open(os.path.join(lbd.dir, name), "w") as f:
            f.write(text)
    routes = (f'{{ path_prefix = "/api/"; upstream = "dead";'
              ' response_headers = { add = ["X-Route: api"]; };'
              ' error_pages = ( { status = 502; file = "route502.html"; } ); },'
              ' { path_prefix = "/plain/"; upstream = "dead"; error_pages = (); },'
              ' { path = "/up"; upstream = "web"; },'
              ' { path_prefix = "/"; upstream = "dead"; }')
    listener = (HSTS + ' error_pages = ( { status = [502, 504]; file = "50x.html"; },'
                ' { status = 404; file = "404.html"; } );')
    lbd.start(conf(routes, upstream("dead", f"127.0.0.1:{dead}") + " " + upstream("web", "$a"),
                   listener=listener), a=a)
    assert ask(lbd.address, request("/up"))[0] == "HTTP/1.1 200 OK"

    def answer(path, req=None):
        data = exchange(lbd.address, req or request(path))
        head, _, body = data.partition(b"\r\n\r\n")
        return head.decode("latin-1"), body

    # the listener's page and HSTS on a 502 of the listener's route
    head, body = answer("/x")
    assert head.startswith("HTTP/1.1 502 Bad Gateway\r\n")
    assert body == b"<h1>down</h1>\n"
    assert "\r\nContent-Type: text/html\r\n" in head
    assert f"\r\nContent-Length: {len(body)}\r\n" in head
    assert "\r\nStrict-Transport-Security: max-age=31536000" in head
    assert "\r\nConnection: close" in head
    # a route's pages replace the listener's; its header edits add to them
    head, body = answer("/api/x")
    assert head.startswith("HTTP/1.1 502 ") and body == b"<h1>api down</h1>\n"
    assert "\r\nStrict-Transport-Security: " in head and "\r\nX-Route: api" in head
    head, body = answer("/plain/x")                 # error_pages = (): none at all
    assert head.startswith("HTTP/1.1 502 ") and body == b"502 Bad Gateway\n"
    assert "\r\nContent-Type: text/plain\r\n" in head
    # a HEAD gets the page's length and no body
    head, body = answer("/x", request("/x", method="HEAD"))
    assert head.startswith("HTTP/1.1 502 ") and body == b""
    assert "\r\nContent-Length: 14\r\n" in head
    # before a route is chosen only the listener's apply: a bad head (no page for 400)
    head, body = answer("", b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    assert head.startswith("HTTP/1.1 400 Bad Request\r\n") and body == b"400 Bad Request\n"
    assert "\r\nStrict-Transport-Security: " in head and "X-Route" not in head


# Retries ---------------------------------------------------------------------------

def test_failed_connect_is_retried_on_another_server(lbd, http_backends):
    a = http_backends()
    dead = free_port()
    lbd.start(conf(upstreams=upstream("web", f"127.0.0.1:{dead}", "$a", retries=1)), a=a)
    c = Client(lbd.address)
    for i in range(6):
        c.send(request(f"/{i}"))
        status, _, body, _ = read_response(c)
        assert status == "HTTP/1.1 200 OK" and body == b"http\n"
    assert len(a.requests) == 6
    lbd.wait_log(log_line("warn", CLIENT + r'connect\(\) failed to 127\.0\.0\.1:%d in upstream '
                                           r'"web"; trying another server .*' % dead))


def test_retries_0_tries_one_server_only(lbd, http_backends):
    a = http_backends()
    dead = free_port()
    lbd.start(conf(upstreams=upstream("web", f"127.0.0.1:{dead}", "$a", retries=0)), a=a)
    # smooth round robin with equal weights starts with the first server
    assert_generated(exchange(lbd.address, request("/")), b"HTTP/1.1 502 Bad Gateway")
    assert ask(lbd.address, request("/"))[0] == "HTTP/1.1 200 OK"


def test_only_dead_servers_is_502(lbd):
    dead1, dead2 = free_port(), free_port()
    lbd.start(conf(upstreams=upstream("web", f"127.0.0.1:{dead1}", f"127.0.0.1:{dead2}",
                                      retries=3)))
    data = exchange(lbd.address, request("/"))
    assert_generated(data, b"HTTP/1.1 502 Bad Gateway")
    assert re.search(rb"\r\nX-Request-ID: [0-9a-f]{32}\r\n", data)
    lbd.wait_log(log_line("info", CLIENT + r'502: upstream "web": .*'))
    for port in (dead1, dead2):
        lbd.wait_log(log_line("warn", CLIENT + r'connect\(\) failed to 127\.0\.0\.1:%d .*' % port))


def test_get_is_sent_again_when_a_server_closes_without_answering(lbd, http_backends):
    a = http_backends(name="a", close_without_answer=1)
    b = http_backends(name="b")
    lbd.start(conf(upstreams=upstream("web", "$a", "$b", retries=1)), a=a, b=b)
    status, _, body, _ = ask(lbd.address, request("/idem"))
    assert status == "HTTP/1.1 200 OK" and body == b"b\n"
    assert [r.target for r in a.requests] == ["/idem"]
    assert [r.target for r in b.requests] == ["/idem"]
    lbd.wait_log(log_line("info", CLIENT + r'server 127\.0\.0\.1:%d of upstream "web" closed '
                                           r'the connection before a response; sending the '
                                           r'request again to another server' % a.port))


@pytest.mark.parametrize("next_upstream,method,served_by", [
    (None, "GET", "a"),                             # default: error and timeout only
    ('["error", "timeout", "503"]', "GET", "b"),
    ('["error", "timeout", "503"]', "POST", "a"),   # not idempotent: never twice
    ('"503"', "GET", "b"),
])
def test_next_upstream_sends_a_listed_status_to_another_server(lbd, http_backends,
                                                               next_upstream, method,
                                                               served_by):
    a = http_backends(name="a", status=503)
    b = http_backends(name="b")
    settings = {"retries": 1, "keepalive": 0}
    if next_upstream:
        settings["next_upstream"] = next_upstream
    lbd.start(conf(upstreams=upstream("web", "$a", "$b", **settings)), a=a, b=b)
    status, _, body, _ = ask(lbd.address, request("/x", method=method,
                                                 body=b"x=1" if method == "POST" else None))
    assert body == served_by.encode() + b"\n"
    assert status == ("HTTP/1.1 200 OK" if served_by == "b" else
                      "HTTP/1.1 503 Service Unavailable")
    assert len(a.requests) == 1 and len(b.requests) == (served_by == "b")
    if served_by == "b":
        lbd.wait_log(log_line("info", CLIENT + r'server 127\.0\.0\.1:%d of upstream "web" '
                                               r'answered 503; sending the request again to '
                                               r'another server' % a.port))


def test_the_last_server_answer_is_passed_on_when_retries_run_out(lbd, http_backends):
    a = http_backends(name="a", status=503)
    b = http_backends(name="b", status=503)
    lbd.start(conf(upstreams=upstream("web", "$a", "$b", retries=1, keepalive=0,
                                      next_upstream='["503"]')), a=a, b=b)
    status, _, body, _ = ask(lbd.address, request("/x"))
    assert status == "HTTP/1.1 503 Service Unavailable" and body in (b"a\n", b"b\n")
    assert len(a.requests) + len(b.requests) == 2


def test_next_upstream_off_answers_the_first_failure(lbd, http_backends):
    b = http_backends(name="b")
    dead = f"127.0.0.1:{helpers.free_port()}"
    lbd.start(conf(upstreams=upstream("web", dead, "$b", retries=1, next_upstream='"off"')),
              b=b)
    answers = [ask(lbd.address, request("/x"))[0] for _ in range(2)]
    # round robin: one of the two goes to the dead server first and is not retried
    assert "HTTP/1.1 502 Bad Gateway" in answers
    lbd.wait_log(log_line("warn", CLIENT + r'connect\(\) failed to %s in upstream "web"; not '
                                           r'trying another server \(next_upstream\) '
                                           r'\(111: Connection refused\)' % re.escape(dead)))
    bad = lbd.write_config(conf(upstreams=upstream("web", "$b", next_upstream='["503", "off"]')),
                           b=b)
    out = helpers.lbd_test(bad)
    assert out.returncode == 1 and '"next_upstream": "off" stands alone' in out.stderr
    bad = lbd.write_config(conf(upstreams=upstream("web", "$b", next_upstream='["eror"]')),
                           b=b)
    out = helpers.lbd_test(bad)
    assert ('invalid value "eror" in "next_upstream" (did you mean "error"?)'
            in out.stderr), out.stderr


def test_post_is_not_sent_again_when_a_server_closes_without_answering(lbd, http_backends):
    a = http_backends(name="a", close_without_answer=1)
    b = http_backends(name="b")
    lbd.start(conf(upstreams=upstream("web", "$a", "$b", retries=1)), a=a, b=b)
    data = exchange(lbd.address, request("/once", method="POST", body=b"x=1"))
    assert_generated(data, b"HTTP/1.1 502 Bad Gateway")
    assert [r.body for r in a.requests] == [b"x=1"]
    assert b.received_bytes == 0
    lbd.wait_log(log_line("info", CLIENT + r'502: server 127\.0\.0\.1:%d of upstream "web" '
                                           r'closed the connection before a response' % a.port))


def test_get_on_a_stale_keepalive_connection_is_sent_again(lbd, http_backends):
    a = http_backends(close_without_answer={2})
    lbd.start(conf(upstreams=upstream("web", "$a", retries=0)), a=a)
    c = Client(lbd.address)
    for path in ("/first", "/second"):
        c.send(request(path))
        status, _, body, _ = read_response(c)
        assert status == "HTTP/1.1 200 OK" and body == b"http\n"
    assert [(r.target, r.conn) for r in a.requests] == [
        ("/first", 1), ("/second", 1), ("/second", 2)]


def test_post_on_a_stale_keepalive_connection_is_502(lbd, http_backends):
    a = http_backends(close_without_answer={2})
    lbd.start(conf(upstreams=upstream("web", "$a", retries=0)), a=a)
    c = Client(lbd.address)
    c.send(request("/first"))
    assert read_response(c)[0] == "HTTP/1.1 200 OK"
    c.send(request("/second", method="POST", body=b"once"))
    assert read_response(c)[0] == "HTTP/1.1 502 Bad Gateway"
    assert [r.method for r in a.requests] == ["GET", "POST"]


# Generated errors ---------------------------------------------------------------------

def test_no_usable_server_is_503(lbd, http_backends):
    a = http_backends(lambda req: Behaviour(delay=1.0 if req.target == "/slow" else 0))
    lbd.start(conf(upstreams=upstream("web", ("$a", "max_conns = 1;"))), a=a)
    slow = Client(lbd.address)
    slow.send(request("/slow"))
    a.wait_requests(1)
    data = exchange(lbd.address, request("/other"))
    assert_generated(data, b"HTTP/1.1 503 Service Unavailable")
    lbd.wait_log(log_line("info", CLIENT + r'503: upstream "web": no usable server .*'))
    assert read_response(slow)[0] == "HTTP/1.1 200 OK"
    # the server is usable again once the slow request is done
    assert ask(lbd.address, request("/other"))[0] == "HTTP/1.1 200 OK"
    assert [r.target for r in a.requests] == ["/slow", "/other"]


def test_server_that_never_answers_is_504_after_read_timeout(lbd, http_backends):
    a = http_backends(never_answer=True)
    lbd.start(conf(upstreams=upstream("web", "$a", read_timeout='"300ms"')), a=a)
    start = time.monotonic()
    data = exchange(lbd.address, request("/"))
    assert 0.25 < time.monotonic() - start < 3
    assert_generated(data, b"HTTP/1.1 504 Gateway Timeout")
    lbd.wait_log(log_line("info", CLIENT + r'504: server 127\.0\.0\.1:%d of upstream "web": '
                                           r'read_timeout expired' % a.port))
    assert len(a.requests) == 1


def test_slow_answer_within_read_timeout_is_relayed(lbd, http_backends):
    a = http_backends(delay=0.3, chunk_delay=0.2, chunk_size=4, framing="chunked",
                      body="slow but steady")
    lbd.start(conf(upstreams=upstream("web", "$a", read_timeout='"1s"')), a=a)
    status, _, body, _ = ask(lbd.address, request("/"))
    assert status == "HTTP/1.1 200 OK" and body == b"slow but steady"


def test_early_answer_before_the_body_closes_both_connections(lbd, http_backends):
    a = http_backends(status=413, body="too big for me\n", early=True)
    lbd.start(conf(listener="request_buffering = false;"), a=a)
    c = Client(lbd.address)
    c.send(b"PUT /up HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1000)
    status, fields, body, _ = read_response(c)
    assert status.startswith("HTTP/1.1 413 ") and body == b"too big for me\n"
    assert fields["connection"] == "close"
    c.send(b"y" * 1000)             # the rest is read and dropped, then the end
    assert c.closed(timeout=5)
    assert len(a.requests) == 1


def test_body_over_max_body_size_is_413_and_never_forwarded(lbd, http_backends):
    a = http_backends()
    lbd.start(conf(listener='max_body_size = "1k";'), a=a)
    data = exchange(lbd.address, request("/", method="POST", body=b"z" * 1025))
    assert_generated(data, b"HTTP/1.1 413 Content Too Large")
    assert ask(lbd.address, request("/", method="POST", body=b"z" * 1024))[0] == \
        "HTTP/1.1 200 OK"
    assert [len(r.body) for r in a.requests] == [1024]


def test_chunked_body_over_max_body_size_is_413(lbd, http_backends):
    a = http_backends()
    lbd.start(conf(listener='max_body_size = "1k";'), a=a)
    data = exchange(lbd.address, b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                                 b"\r\n400\r\n" + b"y" * 1024 + b"\r\n1\r\nz\r\n0\r\n\r\n")
    assert_generated(data, b"HTTP/1.1 413 Content Too Large")
    assert a.requests == []
    lbd.wait_log(log_line("info", CLIENT + r"413: chunked body larger than max_body_size"))


def test_client_reading_slowly_is_not_a_read_timeout(lbd, http_backends):
    size = 8 * 1024 * 1024
    a = http_backends(big=size, seed=3)
    lbd.start(conf(upstreams=upstream("web", "$a", read_timeout='"300ms"')), a=a)
    with connect(lbd.address, timeout=20) as s:
        s.sendall(request("/", extra="Connection: close\r\n"))
        time.sleep(1.2)             # lbd waits for the client, not for the server
        data = helpers.recv_all(s, limit=size + 4096)
    head, _, body = data.partition(b"\r\n\r\n")
    assert len(body) == size
    assert hashlib.sha256(body).hexdigest() == helpers.pattern_digest(size, seed=3)


def test_client_stalling_in_its_body_gets_408(lbd, http_backends):
    """Buffering (the default): the body is awaited before any server is
    chosen, so a stalling client never holds a backend connection."""
    a = http_backends()
    lbd.start(conf(listener='client_body_timeout = "300ms";'), a=a)
    start = time.monotonic()
    data = exchange(lbd.address, b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
    assert 0.25 < time.monotonic() - start < 3
    assert_generated(data, b"HTTP/1.1 408 Request Timeout")
    lbd.wait_log(log_line("info", CLIENT + r"408: client_body_timeout expired"))
    assert a.requests == [] and a.accepted == 0


def test_client_stalling_in_a_streamed_body_gets_408(lbd, http_backends):
    a = http_backends()
    lbd.start(conf(listener='client_body_timeout = "300ms"; request_buffering = false;'), a=a)
    start = time.monotonic()
    data = exchange(lbd.address, b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
    assert 0.25 < time.monotonic() - start < 3
    assert_generated(data, b"HTTP/1.1 408 Request Timeout")
    lbd.wait_log(log_line("info", CLIENT + r"408: client_body_timeout expired"))
    assert a.requests == []         # the body never completed ...
    [cut] = a.wait_incomplete(1)    # ... and lbd closed the upstream connection
    assert cut.method == "POST" and cut.raw.endswith(b"\r\n\r\nabc")


@pytest.mark.parametrize("raw", [
    b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-A : b\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 999 Nope\r\nContent-Length: 0\r\n\r\n",
    b"ICY 200 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
], ids=["no-colon", "space-before-colon", "obs-fold", "status-999", "not-http",
        "two-lengths", "length-and-chunked"])
def test_invalid_response_head_is_502(lbd, http_backends, raw):
    a = http_backends(raw=raw)
    lbd.start(conf(), a=a)
    assert_generated(exchange(lbd.address, request("/")), b"HTTP/1.1 502 Bad Gateway")
    lbd.wait_log(log_line("info", CLIENT + r'502: server 127\.0\.0\.1:%d of upstream "web" '
                                           r'sent an invalid response head: .+' % a.port))


def test_response_head_too_large_is_502(lbd, http_backends):
    a = http_backends(fields=[("X-Big", "b" * 20000)])
    lbd.start(conf(), a=a)
    assert_generated(exchange(lbd.address, request("/")), b"HTTP/1.1 502 Bad Gateway")


def test_server_closing_before_the_head_ends_is_502(lbd, http_backends):
    a = http_backends(raw=b"HTTP/1.1 200 OK\r\nContent-Le")
    lbd.start(conf(), a=a)
    assert_generated(exchange(lbd.address, request("/")), b"HTTP/1.1 502 Bad Gateway")
    assert len(a.requests) == 1             # a byte came: not sent again


def test_server_closing_mid_body_closes_the_client_connection(lbd, http_backends):
    a = http_backends(raw=b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
    lbd.start(conf(), a=a)
    data = exchange(lbd.address, request("/"))
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Length: 100" in head
    assert body == b"0123456789"
    lbd.wait_log(log_line("info", CLIENT + r'server 127\.0\.0\.1:%d of upstream "web" closed '
                                           r'the connection mid-response; closing the client '
                                           r'connection mid-response' % a.port))


def test_generated_errors_are_in_the_access_log(lbd, http_backends):
    a = http_backends(never_answer=True)
    lbd.start(conf(upstreams=upstream("web", "$a", read_timeout='"200ms"'),
                   listener='access_log = { path = "$dir/access.log"; '
                            'format = "$$status $$upstream_addr $$request_id"; };'), a=a)
    data = exchange(lbd.address, request("/"))
    rid = re.search(rb"\r\nX-Request-ID: ([0-9a-f]{32})\r\n", data).group(1).decode()
    assert lines(os.path.join(lbd.dir, "access.log"), 1) == [f"504 {a.address} {rid}"]


def test_lbd_keeps_serving_after_every_kind_of_failure(lbd, http_backends):
    """One worker goes through a 504, a 502 and a client that vanishes
    mid-request, then still proxies."""
    modes = {"/never": Behaviour(never_answer=True),
             "/bad": Behaviour(raw=b"nonsense\r\n\r\n")}
    a = http_backends(lambda req: modes.get(req.target))
    lbd.start(conf(upstreams=upstream("web", "$a", read_timeout='"200ms"', retries=0)), a=a)
    assert exchange(lbd.address, request("/never")).startswith(b"HTTP/1.1 504 ")
    assert exchange(lbd.address, request("/bad")).startswith(b"HTTP/1.1 502 ")
    with connect(lbd.address) as s:
        s.sendall(request("/ok", method="POST", body=b"abcdef")[:-3])
    with connect(lbd.address) as s:
        s.sendall(request("/ok"))
    wait_until(lambda: len(lbd.workers()) == 1, 5, what="the worker")
    worker = lbd.workers()[0]
    status, _, body, _ = ask(lbd.address, request("/ok"))
    assert status == "HTTP/1.1 200 OK" and body == b"http\n"
    assert lbd.workers() == [worker]


def _wrk(address, clients, seconds, script=None):
    """wrk with `clients` keep-alive connections for `seconds` (and a Lua
    script's requests); the number of responses it counted."""
    import subprocess
    out = subprocess.run(["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "--timeout", "5s"]
                         + (["-s", script] if script else []) + [f"http://{address}/"],
                         capture_output=True, text=True, timeout=seconds + 30,
                         check=True).stdout
    m = re.search(r"(\d+) requests in", out)
    assert m, out
    assert "Non-2xx" not in out and "Socket errors" not in out, out
    return int(m.group(1))


class FastBackend:
    """tests/bench/httpbackend (C, 100-byte keep-alive responses): fast
    enough that responses finish in bursts, as real servers' do, which is
    what makes a small fixed pool churn. .accepted() asks it (SIGTERM) for
    the connections it accepted, and stops it."""

    def __init__(self):
        import subprocess
        self.port = free_port()
        self.proc = subprocess.Popen(
            [os.path.join(helpers.ROOT, "objs", "bench", "httpbackend"), str(self.port),
             "--deadline", "120"], stdout=subprocess.PIPE, text=True)
        wait_until(lambda: _connects(self.port), timeout=5)

    def accepted(self):
        import signal
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=10)
        m = re.search(r"accepted=(\d+)", out)
        assert m, out
        return int(m.group(1))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _connects(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture
def fast_backend():
    b = FastBackend()
    yield b
    b.stop()


def _pool_conf(backend, keepalive=None):
    extra = f" keepalive = {keepalive};" if keepalive is not None else ""
    return conf(upstreams=f'web = {{ servers = ( {{ address = "127.0.0.1:{backend.port}"; }} );'
                          f'{extra} }};')


def test_default_pool_keeps_what_the_load_needs_and_never_churns(lbd, fast_backend):
    # keepalive = "auto" (no setting): a steady load of N keep-alive clients
    # on one worker needs about N backend connections, once (issue 13: a
    # fixed 32 opened one per request past the 32nd). One of them is the
    # readiness probe's.
    lbd.start(_pool_conf(fast_backend))
    clients = 64
    served = _wrk(lbd.address, clients, 3)
    assert served > 20 * clients
    accepted = fast_backend.accepted()
    assert accepted <= clients * 1.1 + 2, (accepted, served)


@pytest.mark.parametrize("balance", ["round_robin", "hash"])
def test_default_pool_does_not_churn_over_several_servers(lbd, tmp_path, balance):
    # The pool is sized per server: a request needs a connection to the
    # server it was given, and hashing moves each server's share on its own
    # (issue 13: sized per upstream, 4 servers opened ~1,000 connections in
    # 3 s under round robin and ~4,000 under hash).
    backends = [FastBackend() for _ in range(3)]
    try:
        how = ' balance = "hash"; hash_key = "$$arg_k";' if balance == "hash" else ""
        lbd.start(conf(upstreams="web = { servers = ( %s );%s };" % (
            ", ".join('{ address = "127.0.0.1:%d"; }' % b.port for b in backends), how)))
        script = tmp_path / "keys.lua"
        script.write_text('local n = 0\n'
                          'request = function()\n'
                          '  n = (n + 1) % 10000\n'
                          '  return wrk.format(nil, "/?k=" .. n)\n'
                          'end\n')
        clients = 48
        served = _wrk(lbd.address, clients, 3, str(script))
        assert served > 20 * clients
        accepted = [b.accepted() for b in backends]
        # each server keeps the recent peak of the requests in flight to
        # it, which reaches every client when that server stalls for a
        # moment (2 cores shared by wrk, lbd and 3 servers), plus the
        # readiness probe's: bounded, where a pool sized per upstream
        # opened a new connection for most requests that found none to
        # their server
        assert min(accepted) > 0, accepted
        assert sum(accepted) <= clients * len(backends) + len(backends), (accepted, served)
    finally:
        for b in backends:
            b.stop()


def test_a_fixed_small_pool_churns_under_the_same_load(lbd, fast_backend):
    # the same load with the old default: what the test above guards against
    lbd.start(_pool_conf(fast_backend, keepalive=32))
    served = _wrk(lbd.address, 64, 3)
    accepted = fast_backend.accepted()
    assert accepted > 64 * 1.1 + 2, (accepted, served)


def test_a_number_bounds_the_pool(lbd, http_backends):
    a = http_backends()
    lbd.start(conf(upstreams=upstream("web", "$a", keepalive=2)), a=a)
    served = _wrk(lbd.address, 16, 1)
    # only 2 kept: the rest open per request
    assert a.accepted > 16 and a.accepted <= served


def test_keepalive_timeout_closes_an_idle_upstream_connection(lbd, http_backends):
    a = http_backends()
    lbd.start(conf(upstreams=upstream("web", "$a", keepalive_timeout='"300ms"')), a=a)
    c = Client(lbd.address)
    c.send(request("/1"))
    assert read_response(c)[2] == b"http\n"
    time.sleep(0.8)
    c.send(request("/2"))
    assert read_response(c)[2] == b"http\n"
    assert a.accepted == 2
