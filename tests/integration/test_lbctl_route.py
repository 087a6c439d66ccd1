"""`lbctl route METHOD URL [-H ...] [--listener NAME]` (SPEC §2): a dry run
from the configuration file alone, through the listener's own parser and
routes. No lbd runs in these tests."""

import os
import subprocess

LBCTL = os.environ.get("LBCTL") or os.path.join(
    os.path.dirname(__file__), "..", "..", "objs", "lbctl")

CONF = """
listeners = (
  { name = "edge"; protocol = "http"; listen = "127.0.0.1:18999";
    routes = (
      { path = "/healthz"; method = ["GET", "HEAD"];
        return = { status = 200; body = "ok\\n"; }; },
      { host = "old.example.com";
        redirect = { status = 301; location = "https://www.example.com$request_uri"; }; },
      { header = "X-Tenant: acme"; path_regex = "^/t/([a-z]+)$";
        redirect = { status = 302; location = "/tenants/acme/$1"; }; }
    ); }
);
"""


def lbctl_route(tmp_path, *args):
    conf = tmp_path / "lbd.conf"
    conf.write_text(CONF)
    return subprocess.run([LBCTL, "-p", str(tmp_path), "-c", str(conf), "route", *args],
                          capture_output=True, text=True, timeout=30)


def test_route_names_the_listener_route_and_evaluated_action(tmp_path):
    out = lbctl_route(tmp_path, "GET", "http://OLD.example.com:8080/a/b?c=1")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "listener: edge"
    assert lines[1] == (f'route: route #2 at {tmp_path}/lbd.conf:7: host = "old.example.com" '
                        '-> redirect 301 "https://www.example.com$request_uri"')
    assert lines[2] == "action: redirect 301 to https://www.example.com/a/b?c=1"


def test_route_uses_the_headers_given_with_H_and_path_captures(tmp_path):
    out = lbctl_route(tmp_path, "GET", "/t/blue", "-H", "X-Tenant: acme")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[2] == "action: redirect 302 to /tenants/acme/blue"
    # without the header the third route does not match
    out = lbctl_route(tmp_path, "GET", "/t/blue")
    assert out.returncode == 1
    assert out.stderr == 'lbctl: no route of listener "edge" matches: it would answer 404\n'


def test_route_method_list_is_honoured(tmp_path):
    assert lbctl_route(tmp_path, "HEAD", "/healthz").returncode == 0
    out = lbctl_route(tmp_path, "POST", "/healthz")
    assert out.returncode == 1
    assert "route: none" in out.stdout


def test_route_reports_a_request_the_parser_would_refuse(tmp_path):
    out = lbctl_route(tmp_path, "GET", "/healthz", "-H", "Bad Name: x")
    assert out.returncode == 1
    assert out.stderr.startswith("lbctl: the listener would refuse this request with 400: ")


def test_route_with_an_unknown_listener_lists_the_valid_names(tmp_path):
    out = lbctl_route(tmp_path, "GET", "/healthz", "--listener", "nope")
    assert out.returncode == 1
    assert out.stderr == ('lbctl: no http listener is called "nope" '
                          '(the http listeners are "edge")\n')


LISTENERS_CONF = """
listeners = (
  { name = "plain"; protocol = "http"; listen = "127.0.0.1:18999";
    routes = ( { return = { status = 200; body = "plain"; }; } ); },
  { name = "stream"; protocol = "tcp"; listen = "127.0.0.1:8443"; upstream = "u"; },
  { name = "secure"; protocol = "https"; listen = ["127.0.0.1:443", "[::1]:8443"];
    tls = { certificates = ( { cert = "c.crt"; key = "c.key"; } ); };
    routes = ( { return = { status = 200; body = "secure"; }; } ); },
  { name = "alt"; protocol = "http"; listen = "127.0.0.1:8080";
    routes = ( { return = { status = 200; body = "alt"; }; } ); }
);
upstreams = { u = { servers = ( { address = "127.0.0.1:1"; } ); }; };
"""


def test_route_picks_the_listener_by_the_url_scheme_and_port(tmp_path):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", tmp_path / "c.key",
                    "-out", tmp_path / "c.crt", "-days", "2", "-subj", "/CN=t.test"],
                   check=True, capture_output=True, timeout=30)
    conf = tmp_path / "lbd.conf"
    conf.write_text(LISTENERS_CONF)

    def listener(*args):
        out = subprocess.run([LBCTL, "-p", str(tmp_path), "-c", str(conf), "route", "GET",
                              *args], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return out.stdout.splitlines()[0]

    assert listener("http://a.test:8080/") == "listener: alt"            # port
    assert listener("https://a.test/") == "listener: secure"             # 443
    assert listener("https://a.test:8443/") == "listener: secure"        # [::1]:8443
    assert listener("http://a.test/") == "listener: plain"               # no :80: scheme
    assert listener("http://a.test:443/") == "listener: secure"          # the port wins
    assert listener("/") == "listener: plain"                            # the first
    assert listener("https://a.test:8080/", "--listener", "plain") == "listener: plain"


PROXY_CONF = """
upstreams = { app = { servers = ( { address = "127.0.0.1:18998"; } ); }; };
listeners = (
  { name = "edge"; protocol = "http"; listen = "127.0.0.1:18999"; %s
    routes = (
      { path_prefix = "/admin"; return = { status = 403; }; },
      { upstream = "app"; }
    ); }
);
"""


def lbctl_route_with(tmp_path, settings, *args):
    conf = tmp_path / "lbd.conf"
    conf.write_text(PROXY_CONF % settings)
    return subprocess.run([LBCTL, "-p", str(tmp_path), "-c", str(conf), "route", *args],
                          capture_output=True, text=True, timeout=30)


def test_route_matches_the_normal_path_like_the_listener(tmp_path):
    for path in ("/%61dmin", "//admin", "/./admin", "/public/%2e%2e/admin"):
        out = lbctl_route_with(tmp_path, "", "GET", path)
        assert "action: return 403" in out.stdout, (path, out.stdout, out.stderr)
    out = lbctl_route_with(tmp_path, "", "GET", "http://a.example/a//b/./c/../d%7e?x=%2e")
    assert out.returncode == 0, out.stderr
    assert "path sent upstream: /a/b/d~?x=%2e" in out.stdout.splitlines()


def test_route_follows_merge_slashes_and_path_case_insensitive(tmp_path):
    out = lbctl_route_with(tmp_path, "merge_slashes = false;", "GET", "//admin")
    assert "path sent upstream: //admin" in out.stdout.splitlines()
    out = lbctl_route_with(tmp_path, "path_case_insensitive = true;", "GET", "/ADMIN")
    assert "action: return 403" in out.stdout


def test_route_refuses_a_path_above_the_root(tmp_path):
    out = lbctl_route_with(tmp_path, "", "GET", "/a/../..")
    assert out.returncode == 1
    assert out.stderr == ("lbctl: the listener would refuse this request with 400: "
                          "request path climbs above the root\n")


REWRITE_CONF = """
upstreams = { api = { servers = ( { address = "127.0.0.1:9001"; } ); }; };
listeners = ( { name = "web"; protocol = "http"; listen = "127.0.0.1:18997";
  routes = ( { path_regex = "^/v1/(.*)$"; upstream = "api"; rewrite = "/$1"; } ); } );
"""


def test_route_prints_the_rewritten_path_with_the_query_as_the_proxy_sends_it(tmp_path):
    conf = tmp_path / "lbd.conf"
    conf.write_text(REWRITE_CONF)
    out = subprocess.run([LBCTL, "-p", str(tmp_path), "-c", str(conf), "route", "GET",
                          "http://api.example.com/v1/orders?id=7"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "path sent upstream: /orders?id=7" in out.stdout.splitlines()
