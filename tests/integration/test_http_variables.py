"""Variables that only a request through the proxy gives a value (SPEC
§3.5): $upstream_status tells a server's 502 from lbd's own,
$upstream_connect_time, $server_name, $hostname and $query_string, read
through response_headers and the access log."""

import os
import socket

from test_http_access_log import lines
from test_http_proxy import ask, conf, http_backends, request, upstream  # noqa: F401
from test_http_listener import exchange
from helpers import free_port

LOG = ('access_log = { path = "$dir/access.log"; '
       'format = "$$status [$$upstream_status] [$$upstream_connect_time]"; };')


def log_lines(lbd, n):
    return lines(os.path.join(lbd.dir, "access.log"), n)


def test_upstream_status_is_the_servers_502_not_lbds(lbd, http_backends):
    a = http_backends(status=502)
    dead = free_port()
    lbd.start(conf(routes='{ path = "/down"; upstream = "down"; },\n'
                          '  { upstream = "web"; response_headers = { set = '
                          '["X-Upstream-Status: [$$upstream_status]"]; }; }',
                   upstreams=upstream("web", "$a") + upstream("down", f"127.0.0.1:{dead}",
                                                              retries=0),
                   listener=LOG), a=a)
    status, fields, _, _ = ask(lbd.address, request("/"))
    assert status == "HTTP/1.1 502 Bad Gateway"
    assert fields["x-upstream-status"] == "[502]"
    # lbd's own 502 (nothing listens): the same status, no upstream status
    assert exchange(lbd.address, request("/down")).startswith(b"HTTP/1.1 502 ")
    first, second = log_lines(lbd, 2)
    assert first.startswith("502 [502] [")
    assert second == "502 [] []"


def test_upstream_status_follows_each_response(lbd, http_backends):
    a = http_backends(status=404)
    lbd.start(conf(routes='{ path = "/own"; return = { status = 200; body = "own\\n"; }; },\n'
                          '  { upstream = "web"; }', listener=LOG), a=a)
    assert ask(lbd.address, request("/"))[0] == "HTTP/1.1 404 Not Found"
    assert ask(lbd.address, request("/own"))[0] == "HTTP/1.1 200 OK"
    first, second = log_lines(lbd, 2)
    assert first.startswith("404 [404] [0.")
    assert second == "200 [] []"


def test_upstream_connect_time_is_seconds_and_zero_on_a_kept_connection(lbd, http_backends):
    a = http_backends()
    lbd.start(conf(upstreams=upstream("web", "$a", keepalive=4), listener=LOG), a=a)
    ask(lbd.address, request("/one"))
    ask(lbd.address, request("/two"))
    first, second = log_lines(lbd, 2)
    took = first.split(" ")[2].strip("[]")
    assert len(took.split(".")[1]) == 3 and 0 <= float(took) < 1, first
    # the second request rides the first one's connection
    assert second == "200 [200] [0.000]"
    assert len({r.conn for r in a.requests}) == 1


def test_server_name_hostname_and_query_string(lbd, http_backends):
    a = http_backends()
    lbd.start(conf(routes='{ upstream = "web"; response_headers = { set = ['
                          '"X-Server: $$server_name", "X-Host: $$hostname", '
                          '"X-Query: [$$query_string] [$$args]"]; }; }'), a=a)
    _, fields, _, _ = ask(lbd.address, request("/p?a=1&b=%20"))
    assert fields["x-server"] == "web"          # the listener's name
    assert fields["x-host"] == socket.gethostname()
    assert fields["x-query"] == "[a=1&b=%20] [a=1&b=%20]"
    _, fields, _, _ = ask(lbd.address, request("/p"))
    assert fields["x-query"] == "[] []"
