"""Malformed and smuggling requests on the proxy path (SPEC §4): the only
route forwards everything to an upstream, so whatever lbd let through would
reach the backend. Each case checks lbd's exact status line, that lbd closes
the connection after it, and what the backend got: nothing at all for a
refused head; for a chunked body that turns bad, never the invalid bytes
nor anything after them.

After every case a probe request goes through the same lbd (one worker) to
the same backend and is answered: lbd handles one event at a time and the
backend accepts in order, so once the probe is answered every connection
lbd opened for the bad request has been accepted and counted."""

import pytest

import helpers
from helpers import connect, wait_until

MAX_BODY = 1024

PROXY = """
workers = 1;
upstreams = { app = { servers = ( { address = "$app"; } ); }; };
listeners = ( { protocol = "http"; listen = "$listen";
  max_uri = "64"; max_header_size = "1k"; max_headers = 10; max_body_size = "1k";
  routes = ( { path_prefix = "/upload"; upstream = "app"; request_buffering = false; },
             { path_prefix = "/"; upstream = "app"; } ); } );
"""

PROBE = b"GET /probe HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n"

S400 = b"HTTP/1.1 400 Bad Request"
S413 = b"HTTP/1.1 413 Content Too Large"
S414 = b"HTTP/1.1 414 URI Too Long"
S431 = b"HTTP/1.1 431 Request Header Fields Too Large"
S501 = b"HTTP/1.1 501 Not Implemented"

SMUGGLED = b"GET /admin HTTP/1.1\r\nHost: a\r\n\r\n"


def post(fields, body=b"", version=b"HTTP/1.1"):
    """A POST to / with Host: a and the given field lines, then body."""
    return b"POST / " + version + b"\r\nHost: a\r\n" + fields + b"\r\n" + body


def get(fields=b"", target=b"/", version=b"HTTP/1.1"):
    return b"GET " + target + b" " + version + b"\r\nHost: a\r\n" + fields + b"\r\n"


# Heads lbd must refuse before connecting anywhere ---------------------------

HEAD_CASES = [
    # both framings, in either order, whatever the values (RFC 9112 §6.1)
    ("cl_then_te", post(b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n",
                        b"0\r\n\r\nX"), S400),
    ("te_then_cl", post(b"Transfer-Encoding: chunked\r\nContent-Length: 6\r\n",
                        b"0\r\n\r\nX"), S400),
    ("te_chunked_with_cl_0", post(b"Transfer-Encoding: chunked\r\nContent-Length: 0\r\n",
                                  b"5\r\nhello\r\n0\r\n\r\n"), S400),
    ("te_tab_value_with_cl", post(b"Transfer-Encoding:\tchunked\r\nContent-Length: 5\r\n",
                                  b"hello"), S400),
    ("cl_then_te_hides_a_request", post(b"Content-Length: 38\r\nTransfer-Encoding: chunked\r\n",
                                        b"0\r\n\r\n" + SMUGGLED), S400),
    # Content-Length: one plain 1*DIGIT value, once
    ("two_differing_cl", post(b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"), S400),
    ("cl_0_then_cl_5_hides_a_request", post(b"Content-Length: 0\r\nContent-Length: 5\r\n",
                                            SMUGGLED), S400),
    ("two_identical_cl", post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"), S400),
    ("cl_list_5_5", post(b"Content-Length: 5, 5\r\n", b"hello"), S400),
    ("cl_plus_sign", post(b"Content-Length: +5\r\n", b"hello"), S400),
    ("cl_minus_sign", post(b"Content-Length: -5\r\n", b"hello"), S400),
    ("cl_space_inside", post(b"Content-Length: 1 0\r\n", b"helloworld"), S400),
    ("cl_hex", post(b"Content-Length: 0x5\r\n", b"hello"), S400),
    ("cl_trailing_junk", post(b"Content-Length: 5x\r\n", b"hello"), S400),
    ("cl_empty", post(b"Content-Length: \r\n"), S400),
    ("cl_overflows_int64", post(b"Content-Length: 18446744073709551621\r\n", b"hello"), S400),
    ("cl_space_before_colon", post(b"Content-Length : 5\r\n", b"hello"), S400),
    ("cl_over_max_body_size", post(b"Content-Length: %d\r\n" % (MAX_BODY + 1),
                                   SMUGGLED.ljust(MAX_BODY + 1, b"x")), S413),
    # Transfer-Encoding: "chunked", alone, once, in HTTP/1.1 (§6.1). A final
    # coding other than chunked leaves the length unknown: 400 and close
    # (§6.3; these were 501 until a conformance run flagged "chunked, gzip");
    # an unknown coding before a final chunked is 501
    ("te_gzip", post(b"Transfer-Encoding: gzip\r\n", b"hello"), S400),
    ("te_identity", post(b"Transfer-Encoding: identity\r\n", b"hello"), S400),
    ("te_chunked_then_gzip", post(b"Transfer-Encoding: chunked, gzip\r\n",
                                  b"0\r\n\r\n"), S400),
    ("te_chunked_then_gzip_in_two_fields", post(b"Transfer-Encoding: chunked\r\n"
                                                b"Transfer-Encoding: gzip\r\n",
                                                b"0\r\n\r\n"), S400),
    ("te_gzip_then_chunked", post(b"Transfer-Encoding: gzip, chunked\r\n",
                                  b"0\r\n\r\n"), S501),
    ("te_xchunked", post(b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"), S400),
    ("te_chunked_twice_in_a_list", post(b"Transfer-Encoding: chunked, chunked\r\n",
                                        b"0\r\n\r\n"), S400),
    ("te_chunked_in_two_fields", post(b"Transfer-Encoding: chunked\r\n"
                                      b"Transfer-Encoding: chunked\r\n", b"0\r\n\r\n"), S400),
    ("te_empty_element", post(b"Transfer-Encoding: chunked,\r\n", b"0\r\n\r\n"), S400),
    ("te_with_parameter", post(b"Transfer-Encoding: chunked;q=1\r\n", b"0\r\n\r\n"), S400),
    ("te_in_http10", post(b"Transfer-Encoding: chunked\r\n", b"0\r\n\r\n" + SMUGGLED,
                          version=b"HTTP/1.0"), S400),
    ("te_space_before_colon", post(b"Transfer-Encoding : chunked\r\n",
                                   b"0\r\n\r\n" + SMUGGLED), S400),
    ("te_vertical_tab_in_value", post(b"Transfer-Encoding: \x0bchunked\r\n",
                                      b"0\r\n\r\n"), S400),
    ("te_folded_onto_a_second_line", post(b"Transfer-Encoding:\r\n chunked\r\n",
                                          b"0\r\n\r\n"), S400),
    # field lines (§5)
    ("obs_fold", get(b"X-A: b\r\n c\r\n"), S400),
    ("whitespace_before_first_field", b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", S400),
    ("whitespace_before_colon", get(b"X-A\t: b\r\n"), S400),
    ("bare_lf_line_endings", b"GET / HTTP/1.1\nHost: a\n\n", S400),
    ("bare_lf_ending_the_head", b"GET / HTTP/1.1\r\nHost: a\r\n\n", S400),
    ("bare_cr_in_a_field", b"GET / HTTP/1.1\r\nHost: a\rX-A: b\r\n\r\n", S400),
    ("bare_cr_after_request_line", b"GET / HTTP/1.1\rHost: a\r\n\r\n", S400),
    ("nul_in_a_field_value", get(b"X-A: b\x00c\r\n"), S400),
    ("escape_in_a_field_value", get(b"X-A: b\x1b[0mc\r\n"), S400),
    ("del_in_a_field_value", get(b"X-A: b\x7fc\r\n"), S400),
    ("parenthesis_in_a_field_name", get(b"X(A): b\r\n"), S400),
    ("non_ascii_field_name", get(b"X-\xc3\xa9: b\r\n"), S400),
    ("empty_field_name", get(b": b\r\n"), S400),
    # Host (§3.2)
    ("missing_host_in_http11", b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n", S400),
    ("two_hosts", get(b"Host: b\r\n"), S400),
    ("host_with_a_space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", S400),
    ("host_with_a_slash", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", S400),
    ("host_with_userinfo", b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", S400),
    ("empty_host_in_http11", b"GET / HTTP/1.1\r\nHost:\r\n\r\n", S400),
    ("blank_host_in_http11", b"GET / HTTP/1.1\r\nHost:  \r\n\r\n", S400),
    ("empty_host_in_http10", b"GET / HTTP/1.0\r\nHost:\r\n\r\n", S400),
    ("host_port_of_8_digits", b"GET / HTTP/1.1\r\nHost: a:99999999\r\n\r\n", S400),
    ("host_port_over_65535", b"GET / HTTP/1.1\r\nHost: a:65536\r\n\r\n", S400),
    ("host_port_not_digits", b"GET / HTTP/1.1\r\nHost: a:8o\r\n\r\n", S400),
    ("host_two_ports", b"GET / HTTP/1.1\r\nHost: a:80:80\r\n\r\n", S400),
    ("host_percent_encoded", b"GET / HTTP/1.1\r\nHost: %61\r\n\r\n", S400),
    ("host_two_trailing_dots", b"GET / HTTP/1.1\r\nHost: a..\r\n\r\n", S400),
    ("host_only_a_port", b"GET / HTTP/1.1\r\nHost: :80\r\n\r\n", S400),
    ("host_ipv6_unclosed", b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", S400),
    # absolute-form: its authority is the request's host (§3.2.2), same rules
    ("absolute_form_authority_two_dots", get(target=b"http://a..:80/"), S400),
    ("absolute_form_authority_bad_port", get(target=b"http://a:99999/"), S400),
    ("absolute_form_userinfo", get(target=b"http://u@a/"), S400),
    ("absolute_form_empty_authority", get(target=b"http:///x"), S400),
    ("absolute_form_without_authority", get(target=b"http:/x"), S400),
    ("absolute_form_ftp", get(target=b"ftp://a/x"), S400),
    # paths that cannot be normalised
    ("path_above_the_root", get(target=b"/.."), S400),
    ("path_climbing_out", get(target=b"/a/../../etc/passwd"), S400),
    ("path_encoded_climbing_out", get(target=b"/%2e%2e/x"), S400),
    ("path_with_nul_escape", get(target=b"/a%00b"), S400),
    ("path_with_malformed_escape", get(target=b"/a%zz"), S400),
    ("path_with_truncated_escape", get(target=b"/a%4"), S400),
    ("path_with_a_lone_percent", get(target=b"/a%"), S400),
    # request line (§3)
    ("missing_version", b"GET /\r\nHost: a\r\n\r\n", S400),
    ("http_2_0", get(version=b"HTTP/2.0"), S400),
    ("http_1_2", get(version=b"HTTP/1.2"), S400),
    ("http_0_9", get(version=b"HTTP/0.9"), S400),
    ("http_1_10", get(version=b"HTTP/1.10"), S400),
    ("lowercase_version", get(version=b"http/1.1"), S400),
    ("two_spaces_after_method", b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", S400),
    ("space_after_version", b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", S400),
    ("tab_separators", b"GET\t/\tHTTP/1.1\r\nHost: a\r\n\r\n", S400),
    ("no_target", b"GET HTTP/1.1\r\nHost: a\r\n\r\n", S400),
    ("empty_method", b" / HTTP/1.1\r\nHost: a\r\n\r\n", S400),
    ("invalid_char_in_method", b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", S400),
    # methods: uppercase letters, '-' and '_', at most 32 bytes
    ("lowercase_method", b"get / HTTP/1.1\r\nHost: a\r\n\r\n", S400),
    ("mixed_case_method", b"Get / HTTP/1.1\r\nHost: a\r\n\r\n", S400),
    ("digit_in_method", b"G3T / HTTP/1.1\r\nHost: a\r\n\r\n", S400),
    ("token_char_in_method", b"GET! / HTTP/1.1\r\nHost: a\r\n\r\n", S400),
    ("method_of_33_bytes", b"A" * 33 + b" / HTTP/1.1\r\nHost: a\r\n\r\n", S400),
    ("method_of_9000_bytes", b"A" * 9000 + b" / HTTP/1.1\r\nHost: a\r\n\r\n", S400),
    ("fragment_in_target", get(target=b"/index.html#top"), S400),
    ("non_ascii_in_target", get(target=b"/caf\xc3\xa9"), S400),
    ("control_char_in_target", get(target=b"/a\x01b"), S400),
    ("absolute_form_without_colon", get(target=b"www.example.com/"), S400),
    ("absolute_form_scheme_not_a_letter", get(target=b"1http://a/"), S400),
    ("absolute_form_empty_scheme", get(target=b"://a/"), S400),
    ("asterisk_with_get", get(target=b"*"), S400),
    ("connect_with_a_path", b"CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n", S400),
    ("five_empty_lines_first", b"\r\n" * 5 + get(), S400),
    ("tls_handshake_bytes", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n", S400),
    # limits of the listener
    ("target_over_max_uri", get(target=b"/" + b"u" * 64), S414),
    ("head_over_max_header_size", get(b"X-Big: " + b"b" * 1100 + b"\r\n"), S431),
    ("more_fields_than_max_headers",
     get(b"".join(b"X-F%d: v\r\n" % i for i in range(10))), S431),
    # a refused request does not let a pipelined one through
    ("valid_request_after_a_refused_one", get(b"X-A : b\r\n") + get(), S400),
]


# Chunked bodies that turn bad after a valid head ------------------------------
#
# Each case: (id, the body bytes that are valid, the rest starting with the
# first invalid byte, status). The head is fine, so lbd takes the request,
# connects to the backend and forwards as the decoder checks. What the
# backend may receive is therefore bounded, not nil: on at most one
# connection, a prefix of (the rewritten request head + the valid body
# bytes), and then lbd's close. Never the first invalid byte nor anything
# after it: a smuggled request behind a bad chunk never reaches a server.

CHUNKED_HEAD = b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"

CHUNKED_CASES = [
    ("size_not_hex", b"", b"zz\r\nhello\r\n0\r\n\r\n", S400),
    ("size_negative", b"", b"-5\r\nhello\r\n0\r\n\r\n", S400),
    ("size_with_0x", b"0", b"x5\r\nhello\r\n0\r\n\r\n", S400),
    ("size_after_whitespace", b"", b" 5\r\nhello\r\n0\r\n\r\n", S400),
    ("size_reaching_2_pow_60", b"1" + b"0" * 14, b"0\r\nhello\r\n0\r\n\r\n", S400),
    ("size_overflowing_64_bits", b"f" * 15, b"f" * 5 + b"\r\nhello\r\n0\r\n\r\n", S400),
    ("whitespace_after_size_then_junk", b"5 ", b"x\r\nhello\r\n0\r\n\r\n", S400),
    ("bare_lf_after_size", b"5", b"\nhello\r\n0\r\n\r\n", S400),
    ("bare_cr_after_size", b"5\r", b"hello\r\n0\r\n\r\n", S400),
    ("no_crlf_after_data", b"5\r\nhello", b"XX0\r\n\r\n", S400),
    ("bare_lf_after_data", b"5\r\nhello", b"\n0\r\n\r\n", S400),
    ("data_longer_than_size", b"3\r\nhel", b"lo\r\n0\r\n\r\n", S400),
    ("control_char_in_extension", b"5;a", b"\x01b\r\nhello\r\n0\r\n\r\n", S400),
    ("extension_over_4096_bytes", b"5;" + b"e" * 4094, b"e\r\nhello\r\n0\r\n\r\n", S400),
    ("request_hidden_after_a_chunk", b"5\r\nhello\r\n", SMUGGLED + b"0\r\n\r\n", S400),
    ("request_hidden_after_the_last_chunk_crlf", b"5\r\nhello\r\n0\r\n",
     b" " + SMUGGLED, S400),
    ("trailer_with_space_before_colon", b"0\r\nX", b" : y\r\n\r\n", S400),
    ("trailer_folded", b"0\r\nX: y\r\n", b" z\r\n\r\n", S400),
    ("chunks_over_max_body_size", b"400\r\n" + b"y" * MAX_BODY + b"\r\n1\r\n",
     b"z\r\n0\r\n\r\n" + SMUGGLED, S413),
]


def recording(conn, backend):
    """Keeps every byte each connection sends (a bytearray per connection
    in backend.records); answers the probe and closes."""
    got = bytearray()
    backend.record(got)
    while True:
        data = conn.recv(65536)
        if not data:
            return
        got += data
        if got.startswith(b"GET /probe ") and got.endswith(b"\r\n\r\n"):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n"
                         b"Connection: close\r\n\r\nprobed")
            return


@pytest.fixture
def proxied(lbd, backend):
    """An lbd whose only route forwards to a recording backend."""
    app = backend(recording, name="app")
    lbd.start(PROXY, app=app)
    return lbd, app


def answer(address, request):
    """Sends request; returns (status line, whole answer) once lbd has
    closed the connection. Fails unless the answer is one complete
    response that ends the connection (Connection: close, then EOF)."""
    with connect(address, timeout=5) as s:
        s.sendall(request)
        data = helpers.recv_all(s)          # to EOF; a timeout raises
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, f"no complete response head before EOF: {data!r}"
    fields = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip()
    assert fields.get(b"connection") == b"close", data
    assert len(body) == int(fields[b"content-length"]), f"more than one response: {data!r}"
    return head.split(b"\r\n")[0], data


def probe(lbd, app):
    """One request that does reach the backend; returns what every other
    backend connection so far received (once lbd has closed them, or
    after 2 s if it holds one open, which no case here should do)."""
    status, data = answer(lbd.address, PROBE)
    assert status == b"HTTP/1.1 200 OK" and data.endswith(b"probed"), data
    wait_until(lambda: len(app.records) == app.accepted, 5, what="the backend's handlers")
    try:
        wait_until(lambda: app.active == 0, 2, what="the backend's connections to end")
    except AssertionError:
        pass            # lbd holds one open: what it forwarded is the failure to show
    return [bytes(r) for r in app.records if not r.startswith(b"GET /probe ")]


@pytest.mark.parametrize("request_bytes,status", [c[1:] for c in HEAD_CASES],
                         ids=[c[0] for c in HEAD_CASES])
def test_refused_head_is_answered_closed_and_never_forwarded(proxied, request_bytes, status):
    lbd, app = proxied
    assert answer(lbd.address, request_bytes)[0] == status
    assert probe(lbd, app) == []            # not even a connection


def assert_cut_before_the_invalid_bytes(received, valid):
    """received (one backend connection) holds at most the forwarded head
    and the valid body bytes, in order: a prefix of them."""
    line = b"POST /upload HTTP/1.1\r\n"
    assert received[:len(line)] == line[:len(received)], received
    head, sep, body = received.partition(b"\r\n\r\n")
    if sep:
        assert b"\r\ntransfer-encoding: chunked\r\n" in head.lower() + b"\r\n", received
        assert valid.startswith(body), f"forwarded beyond the valid bytes: {body!r}"


@pytest.mark.parametrize("valid,invalid,status", [c[1:] for c in CHUNKED_CASES],
                         ids=[c[0] for c in CHUNKED_CASES])
def test_invalid_chunked_body_is_answered_closed_and_cut(proxied, valid, invalid, status):
    lbd, app = proxied
    assert answer(lbd.address, CHUNKED_HEAD + valid + invalid)[0] == status
    others = probe(lbd, app)
    assert len(others) <= 1
    for received in others:
        assert_cut_before_the_invalid_bytes(received, valid)
        assert b"/admin" not in received


def test_chunked_body_turning_bad_later_reaches_the_backend_only_up_to_the_bad_byte(proxied):
    """The head and a first valid chunk are forwarded as they come; the
    bad chunk after them is not, the backend's connection is closed and
    the client gets 400."""
    lbd, app = proxied
    with connect(lbd.address, timeout=5) as s:
        for chunk in (b"5\r\nhello\r\n", b"5\r\nworld\r\n"):
            s.sendall((b"" if app.records else CHUNKED_HEAD) + chunk)
            wait_until(lambda: app.records and app.records[0].endswith(chunk), 5,
                       what=f"{chunk!r} at the backend")
        s.sendall(b"zz\r\n" + SMUGGLED)
        data = helpers.recv_all(s)
    assert data.startswith(S400 + b"\r\n"), data
    wait_until(lambda: app.active == 0, 5, what="lbd to close the backend connection")
    assert app.accepted == 1
    received = bytes(app.records[0])
    assert received.startswith(b"POST /upload HTTP/1.1\r\n")
    assert received.endswith(b"\r\n\r\n5\r\nhello\r\n5\r\nworld\r\n")


def test_refused_requests_leave_the_proxy_working(proxied):
    """A burst of bad requests, then good ones still go through."""
    lbd, app = proxied
    for _, request_bytes, status in HEAD_CASES:
        assert answer(lbd.address, request_bytes)[0] == status
    assert probe(lbd, app) == []
    assert probe(lbd, app) == []


# Valid requests that carry an attack --------------------------------------------
# Accepted and forwarded, but as exactly one request, framed by lbd: a field
# named in Connection cannot take the framing or Host away (test_http_framing.py
# has the same attacks on responses, trailers and deadlines).

ATTACKS = [
    ("connection_names_content_length",
     b"Connection: Content-Length\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED),
    ("connection_names_transfer_encoding",
     b"Connection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"%x\r\n" % len(SMUGGLED) + SMUGGLED + b"\r\n0\r\n\r\n"),
    ("connection_names_both_and_host",
     b"Connection: keep-alive, Host, Content-Length\r\nContent-Length: %d\r\n\r\n"
     % len(SMUGGLED) + SMUGGLED),
    ("chunk_extension_hiding_a_request",
     b"Transfer-Encoding: chunked\r\n\r\n5;ext=\"GET /admin\"\r\nhello\r\n0\r\n\r\n"),
    ("trailer_carrying_framing",
     b"Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\nContent-Length: 32\r\n"
     b"Transfer-Encoding: chunked\r\nHost: evil\r\n\r\n"),
]


@pytest.fixture
def answering():
    from http_backend import RecordingBackends
    with RecordingBackends() as start:
        yield start


@pytest.mark.parametrize("path", ["/ok", "/upload"], ids=["buffered", "streamed"])
@pytest.mark.parametrize("attack", [a[1] for a in ATTACKS], ids=[a[0] for a in ATTACKS])
def test_attack_in_a_valid_request_reaches_the_backend_as_one_request(lbd, answering,
                                                                     attack, path):
    app = answering(body=lambda req: req.target)
    lbd.start(PROXY.replace('max_body_size = "1k";', ""), app=app)
    with connect(lbd.address, timeout=5) as s:
        s.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: a\r\n" + attack
                  + b"GET /next HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        data = helpers.recv_all(s)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.count(b"HTTP/1.1 200 OK") == 2
    assert [r.target for r in app.requests] == [path, "/next"]
    post = app.requests[0]
    assert post.headers("Host") == ["a"]
    framing = post.headers("Content-Length") + post.headers("Transfer-Encoding")
    assert len(framing) == 1
    assert b"admin" not in post.raw_head
    assert b"ext=" not in post.raw and b"evil" not in post.raw and post.trailers == []
