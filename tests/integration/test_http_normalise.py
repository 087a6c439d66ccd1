"""Paths, hosts and methods as routes see them (SPEC §3.3, §3.4): a route
that denies a path prefix denies every spelling of it a backend would
read the same way, the backend receives the normal path lbd matched, and
the host of an absolute-form target wins over Host. Each lbd has a deny
route for /admin before a catch-all that proxies to a recording
backend."""

import pytest

from http_backend import RecordingBackends
from test_http_proxy import ask, conf, request


def deny_admin(listener=""):
    return conf(routes='{ path_prefix = "/admin"; return = { status = 403; body = "no\\n"; }; },\n'
                       '  { upstream = "web"; }', listener=listener)


@pytest.fixture
def http_backends():
    with RecordingBackends() as start:
        yield start


@pytest.fixture
def denied(lbd, http_backends):
    """An lbd with the deny route (default settings) and its backend."""
    a = http_backends()
    lbd.start(deny_admin(), a=a)
    return lbd, a


@pytest.mark.parametrize("path", ["/admin", "/%61dmin", "/%61%64%6d%69%6e", "//admin",
                                  "/./admin", "/public/../admin", "/public/%2e%2e/admin",
                                  "/public/%2E%2E/admin", "/admin/./x", "///admin//x"])
def test_every_spelling_of_a_denied_path_is_denied(denied, path):
    lbd, a = denied
    status, _, body, _ = ask(lbd.address, request(path))
    assert status == "HTTP/1.1 403 Forbidden" and body == b"no\n"
    assert a.received_bytes == 0


def test_backend_receives_the_normal_path_with_the_query_as_sent(denied):
    lbd, a = denied
    status = ask(lbd.address, request("/a//b/./c/../d%7e?x=%2e%2e/..&y"))[0]
    assert status == "HTTP/1.1 200 OK"
    assert a.requests[0].target == "/a/b/d~?x=%2e%2e/..&y"


def test_encoded_slash_stays_encoded_upstream(denied):
    lbd, a = denied
    assert ask(lbd.address, request("/files/a%2fb%2F..%2fadmin"))[0] == "HTTP/1.1 200 OK"
    assert a.requests[0].target == "/files/a%2Fb%2F..%2Fadmin"


def test_other_escapes_stay_encoded_with_uppercase_hex(denied):
    lbd, a = denied
    assert ask(lbd.address, request("/a%20b/%c3%a9"))[0] == "HTTP/1.1 200 OK"
    assert a.requests[0].target == "/a%20b/%C3%A9"


def test_a_path_already_normal_is_sent_as_it_came(denied):
    lbd, a = denied
    assert ask(lbd.address, request("/x/.well-known/y.z?q=1"))[0] == "HTTP/1.1 200 OK"
    assert a.requests[0].target == "/x/.well-known/y.z?q=1"


def test_uppercase_path_is_not_denied_by_default(denied):
    lbd, a = denied
    assert ask(lbd.address, request("/ADMIN"))[0] == "HTTP/1.1 200 OK"
    assert a.requests[0].target == "/ADMIN"


def test_path_case_insensitive_denies_any_case(lbd, http_backends):
    a = http_backends()
    lbd.start(deny_admin("path_case_insensitive = true;"), a=a)
    for path in ("/ADMIN", "/Admin/x", "/%41dmin", "//aDmIn"):
        assert ask(lbd.address, request(path))[0] == "HTTP/1.1 403 Forbidden", path
    assert ask(lbd.address, request("/Public"))[0] == "HTTP/1.1 200 OK"
    assert a.requests[0].target == "/Public"      # the case sent is kept upstream
    assert len(a.requests) == 1


def test_merge_slashes_false_keeps_empty_segments(lbd, http_backends):
    a = http_backends()
    lbd.start(deny_admin("merge_slashes = false;"), a=a)
    assert ask(lbd.address, request("//admin"))[0] == "HTTP/1.1 200 OK"
    assert ask(lbd.address, request("/a//b/./c"))[0] == "HTTP/1.1 200 OK"
    assert [r.target for r in a.requests] == ["//admin", "/a//b/c"]
    # dot segments are still removed
    assert ask(lbd.address, request("/x/../admin"))[0] == "HTTP/1.1 403 Forbidden"


def test_uri_variable_is_the_normal_path_request_uri_as_sent(lbd, http_backends):
    a = http_backends()
    lbd.start(conf(listener='response_headers = { set = ["X-Uri: $$uri", '
                            '"X-Request-Uri: $$request_uri"]; };'), a=a)
    _, fields, _, _ = ask(lbd.address, request("/a/%62/../c?q=%41"))
    assert fields["x-uri"] == "/a/c"
    assert fields["x-request-uri"] == "/a/%62/../c?q=%41"
    assert a.requests[0].target == "/a/c?q=%41"


def test_rewrite_captures_are_taken_on_the_normal_path(lbd, http_backends):
    a = http_backends()
    lbd.start(conf(routes='{ path_regex = "^/api/(.*)$$"; upstream = "web"; rewrite = "/v2/$$1"; }'),
              a=a)
    assert ask(lbd.address, request("/api//x/./%79"))[0] == "HTTP/1.1 200 OK"
    assert a.requests[0].target == "/v2/x/y"


def test_absolute_form_routes_by_its_authority(lbd, http_backends):
    a = http_backends()
    lbd.start(conf(routes='{ host = "a.example"; upstream = "web"; },\n'
                          '  { host = "b.example"; return = { status = 403; }; }',
                   listener='response_headers = { set = ["X-Host: $$host"]; };'), a=a)
    status, fields, _, _ = ask(lbd.address, request("http://A.example./x?y", host="b.example"))
    assert status == "HTTP/1.1 200 OK"
    assert fields["x-host"] == "a.example"
    assert a.requests[0].target == "/x?y"
    # the backend sees the Host lbd routed on, once
    assert a.requests[0].headers("Host") == ["A.example."]
    status, fields, _, _ = ask(lbd.address, request("/x", host="b.example"))
    assert status == "HTTP/1.1 403 Forbidden" and fields["x-host"] == "b.example"
    assert len(a.requests) == 1


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
    b"get / HTTP/1.1\r\nHost: t.test\r\n\r\n",
    b"PROPFINd / HTTP/1.1\r\nHost: t.test\r\n\r\n",
    b"X" * 9000 + b" / HTTP/1.1\r\nHost: t.test\r\n\r\n",
    b"GET /public/../../admin HTTP/1.1\r\nHost: t.test\r\n\r\n",
], ids=["empty_host", "lowercase_method", "mixed_case_method", "method_of_9000_bytes",
        "path_above_the_root"])
def test_refused_with_400_and_never_forwarded(denied, data):
    lbd, a = denied
    status, fields, _, _ = ask(lbd.address, data)
    assert status == "HTTP/1.1 400 Bad Request"
    assert fields["connection"] == "close"
    assert a.received_bytes == 0


def test_extension_methods_of_letters_dash_underscore_pass(denied):
    lbd, a = denied
    for method in ("PROPFIND", "M-SEARCH", "VERSION_CONTROL"):
        assert ask(lbd.address, request("/x", method=method))[0] == "HTTP/1.1 200 OK"
    assert [r.method for r in a.requests] == ["PROPFIND", "M-SEARCH", "VERSION_CONTROL"]
