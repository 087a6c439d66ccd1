"""The admin API (SPEC §9) and the lbctl commands that use it (SPEC §2):
the admin server helper on admin_socket and on protocol = "admin"
listeners, who may ask (allow, token, Origin), every endpoint that exists
so far, the runtime changes (drain, enable, disable, weight) as every
worker applies them at once, their state across reloads, and the refusals
of malformed requests."""

import http.client
import json
import os
import re
import socket
import stat
from collections import Counter

import pytest

import helpers
from helpers import wait_until
from http_backend import RecordingBackends

TOKEN = "s3cret-token-0123456789"


@pytest.fixture
def http_backends():
    with RecordingBackends() as start:
        yield start


def admin(lbd, method, path, headers=None, address=None):
    """One request to the admin API (the unix socket, or an admin listener
    at address): (status, headers, body as text)."""
    if address:
        host, port = address.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
    else:
        conn = helpers.UnixHTTPConnection(os.path.join(lbd.dir, "admin.sock"))
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.msg, resp.read().decode()
    finally:
        conn.close()


def admin_json(lbd, method, path, **kw):
    status, headers, body = admin(lbd, method, path, **kw)
    assert headers["Content-Type"] == "application/json", (status, body)
    return status, json.loads(body)


def raw(path, data, timeout=10):
    """Bytes to the admin socket at path; everything it answers."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    s.sendall(data)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    finally:
        s.close()
    return out


def get(address, headers=None):
    """One request on its own connection: (status, body text, headers)."""
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", "/", headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read().decode().strip(), resp.msg
    finally:
        conn.close()


def servers_conf(backends, weights=None):
    return ", ".join(f'{{ address = "{b.address}"; weight = {w}; }}'
                     for b, w in zip(backends, weights or [1] * len(backends)))


HTTP_CONF = """
upstreams = { web = { keepalive = 0; $extra servers = ( $servers ); }; };
listeners = ( { protocol = "http"; listen = "$listen"; routes = ( { upstream = "web"; } ); } );
"""


def start_web(lbd, backends, weights=None, extra=""):
    lbd.start(HTTP_CONF, servers=servers_conf(backends, weights), extra=extra)


def spread(lbd, n=40, headers=None):
    return Counter(get(lbd.address, headers)[1] for _ in range(n))


# The admin server and its socket ------------------------------------------------

def test_one_admin_server_on_a_private_socket(lbd, http_backends):
    start_web(lbd, [http_backends(name="a")])
    sock = os.path.join(lbd.dir, "admin.sock")
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    lbd.wait_helpers("admin server")
    assert len(lbd.workers()) == 2
    status, body = admin_json(lbd, "GET", "/status")
    assert status == 200
    assert body["master_pid"] == lbd.master_pid
    assert body["workers"] == 2 and body["generation"] == 0
    assert body["upstreams"] == 1 and body["listeners"] == 1
    assert body["config_file"] == lbd.conf_path
    assert isinstance(body["uptime_seconds"], int) and body["version"]


def test_the_admin_server_is_restarted_and_keeps_its_socket(lbd, http_backends):
    start_web(lbd, [http_backends(name="a")])
    old = lbd.wait_helpers("admin server")
    os.kill(old[0], 9)
    wait_until(lambda: lbd.helpers("admin server") not in ([], old), 10,
               what="a new admin server")
    wait_until(lambda: admin(lbd, "GET", "/status")[0] == 200, 10, what="the API back")


def test_lbctl_status_and_servers(lbd, http_backends):
    a, b = http_backends(name="a"), http_backends(name="b")
    start_web(lbd, [a, b], weights=[3, 1])
    out = lbd.lbctl("status")
    assert out.returncode == 0, out.stderr
    assert f"master pid:    {lbd.master_pid}" in out.stdout
    assert re.search(r"^workers: +2$", out.stdout, re.M)
    out = lbd.lbctl("servers")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["UPSTREAM", "SERVER", "STATE", "WEIGHT", "ACTIVE", "HEALTH",
                                "REASON"]
    assert lines[1].split() == ["web", a.address, "up", "3", "0", "-"]
    assert lines[2].split() == ["web", b.address, "up", "1", "0", "-"]
    out = lbd.lbctl("servers", "web", "--json")
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["name"] == "web" and body["balance"] == "round_robin"
    first = body["servers"][0]
    assert (first["address"], first["state"], first["weight"], first["configured_weight"],
            first["health"], first["draining"], first["disabled"]) == \
        (a.address, "up", 3, 3, "unchecked", False, False)
    for key in ("active_connections", "connections_total", "max_conns", "backup",
                "health_checks_failed_total", "passive_failures", "reason", "name"):
        assert key in first
    out = lbd.lbctl("status", "--json")
    assert json.loads(out.stdout)["master_pid"] == lbd.master_pid


def test_lbctl_failures_are_one_line_and_exit_1(lbd, http_backends):
    start_web(lbd, [http_backends(name="a")])
    out = lbd.lbctl("servers", "wbe")
    assert out.returncode == 1
    assert out.stderr == 'lbctl: no upstream "wbe" (did you mean "web"?)\n'
    out = lbd.lbctl("drain", "web", "127.0.0.1:1")
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert 'upstream "web" has no server "127.0.0.1:1"' in out.stderr
    out = lbd.lbctl("weight", "web", "127.0.0.1:1", "many")
    assert out.returncode == 1
    assert 'parameter "value" must be an integer from 0 to 1000, not "many"' in out.stderr
    out = lbd.lbctl("weight", "web")
    assert out.returncode == 1 and "usage: lbctl weight UPSTREAM ADDRESS N" in out.stderr
    out = lbd.lbctl("purge", "pages")
    assert (out.returncode, out.stderr) == (1, "lbctl: no cache zones\n")
    assert lbd.lbctl("stop").returncode == 0
    out = lbd.lbctl("status")
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert "cannot reach lbd's admin socket" in out.stderr


# Runtime changes ------------------------------------------------------------------

def test_drain_disable_enable_take_effect_in_every_worker(lbd, http_backends):
    a, b = http_backends(name="a"), http_backends(name="b")
    start_web(lbd, [a, b])
    assert set(spread(lbd, 10)) == {"a", "b"}

    out = lbd.lbctl("drain", "web", a.address)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1].split()[:3] == ["web", a.address, "draining"]
    assert spread(lbd) == {"b": 40}
    assert re.search(rf"\[info\] \d+#\d+: admin: admin socket drained server {a.address} "
                     rf'in upstream "web"$', lbd.error_log(), re.M)

    assert lbd.lbctl("enable", "web", a.address).returncode == 0
    assert set(spread(lbd, 10)) == {"a", "b"}
    assert lbd.lbctl("disable", "web", b.address).returncode == 0
    assert spread(lbd) == {"a": 40}
    status, body = admin_json(lbd, "GET", "/upstreams")
    assert [s["state"] for s in body["upstreams"][0]["servers"]] == ["up", "disabled"]

    # every server out: 503 naming why
    assert lbd.lbctl("drain", "web", a.address).returncode == 0
    status, text, _ = get(lbd.address)
    assert status == 503


def test_a_drain_under_load_lets_requests_in_flight_finish(lbd, http_backends):
    import threading
    from http_backend import Behaviour
    slow = http_backends(lambda req: Behaviour(delay=1.5) if req.target == "/slow" else None,
                         name="a")
    b = http_backends(name="b")
    start_web(lbd, [slow, b])
    results = []

    def slow_request():
        host, port = lbd.address.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("GET", "/slow")
        resp = conn.getresponse()
        results.append((resp.status, resp.read().decode().strip()))
        conn.close()

    # round robin: of two slow requests, one is on a, in flight
    threads = [threading.Thread(target=slow_request) for _ in range(2)]
    for t in threads:
        t.start()
    wait_until(lambda: admin_json(lbd, "GET", "/upstreams/web")[1]["servers"][0]
               ["active_connections"] == 1, 5, what="a request in flight on a")
    assert lbd.lbctl("drain", "web", slow.address).returncode == 0
    server = admin_json(lbd, "GET", "/upstreams/web")[1]["servers"][0]
    assert (server["state"], server["active_connections"]) == ("draining", 1)
    assert spread(lbd, 10) == {"b": 10}
    for t in threads:
        t.join(10)
    assert sorted(results) == [(200, "a"), (200, "b")]
    wait_until(lambda: admin_json(lbd, "GET", "/upstreams/web")[1]["servers"][0]
               ["active_connections"] == 0, 5, what="a empty")


def test_runtime_weight_changes_the_share_and_0_stops_new_traffic(lbd, http_backends):
    a, b = http_backends(name="a"), http_backends(name="b")
    start_web(lbd, [a, b])
    status, body = admin_json(lbd, "POST", f"/upstreams/web/servers/{a.address}/weight?value=3")
    assert status == 200
    assert body["servers"][0]["weight"] == 3 and body["servers"][0]["configured_weight"] == 1
    counts = spread(lbd, 80)
    assert counts["a"] == 60 and counts["b"] == 20         # 3:1 in each worker
    assert lbd.lbctl("weight", "web", b.address, "0").returncode == 0
    assert spread(lbd, 20) == {"a": 20}
    out = lbd.lbctl("servers")
    assert out.stdout.splitlines()[2].split()[:4] == ["web", b.address, "draining", "0*"]


def test_a_drained_server_keeps_its_sticky_sessions(lbd, http_backends):
    a, b = http_backends(name="a"), http_backends(name="b")
    start_web(lbd, [a, b], extra='sticky = { mode = "cookie"; };')
    cookies = {}
    while len(cookies) < 2:
        status, name, headers = get(lbd.address)
        cookies.setdefault(name, headers["Set-Cookie"].split(";")[0])
    assert lbd.lbctl("drain", "web", a.address).returncode == 0
    # new sessions avoid it; its sticky ones still reach it
    assert spread(lbd, 10) == {"b": 10}
    assert spread(lbd, 10, {"Cookie": cookies["a"]}) == {"a": 10}
    # disabled: not even those
    assert lbd.lbctl("disable", "web", a.address).returncode == 0
    assert spread(lbd, 10, {"Cookie": cookies["a"]}) == {"b": 10}


def test_runtime_state_survives_a_reload_and_removed_servers_are_forgotten(lbd,
                                                                           http_backends):
    a, b, c = (http_backends(name=n) for n in "abc")
    start_web(lbd, [a, b, c])
    assert lbd.lbctl("drain", "web", a.address).returncode == 0
    assert lbd.lbctl("weight", "web", b.address, "7").returncode == 0
    assert lbd.lbctl("disable", "web", c.address).returncode == 0
    assert lbd.reload().returncode == 0
    servers = admin_json(lbd, "GET", "/upstreams/web")[1]["servers"]
    assert [(s["state"], s["weight"]) for s in servers] == \
        [("draining", 1), ("up", 7), ("disabled", 1)]
    # the file changes b's weight: the file wins; c is removed, then back
    lbd.reload(HTTP_CONF, servers=servers_conf([a, b], [1, 2]), extra="")
    assert [(s["state"], s["weight"]) for s in
            admin_json(lbd, "GET", "/upstreams/web")[1]["servers"]] == \
        [("draining", 1), ("up", 2)]
    wait_until(lambda: len(lbd.workers()) == 2, 15, what="the old workers to leave")
    lbd.reload(HTTP_CONF, servers=servers_conf([a, b, c], [1, 2, 1]), extra="")
    assert admin_json(lbd, "GET", "/upstreams/web")[1]["servers"][2]["state"] == "up"


# Admin listeners ------------------------------------------------------------------

ADMIN_CONF = """
upstreams = { web = { servers = ( { address = "$a"; } ); }; };
listeners = ( { protocol = "http"; listen = "$listen"; routes = ( { upstream = "web"; } ); },
              { protocol = "admin"; listen = "$admin"; $access } );
"""


def admin_address():
    return f"127.0.0.1:{helpers.free_port()}"


def test_an_admin_listener_needs_allow(lbd, http_backends):
    conf = lbd.write_config(ADMIN_CONF, a=http_backends(name="a"), access="",
                            admin=admin_address())
    out = helpers.lbd_test(conf)
    assert out.returncode == 1
    line = lbd.line_of('protocol = "admin"')
    assert re.search(rf'lbd\.conf:{line}: admin listener "admin:127\.0\.0\.1:\d+" needs '
                     r'"allow"', out.stderr), out.stderr


def test_an_admin_listener_checks_allow_and_the_token(lbd, http_backends, tmp_path):
    token = tmp_path / "admin.token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    a = http_backends(name="a")
    where = admin_address()
    lbd.start(ADMIN_CONF, a=a, admin=where,
              access=f'allow = ["127.0.0.1/32"]; token_file = "{token}";')
    lbd.wait_helpers("admin server")
    good = {"Authorization": f"Bearer {TOKEN}"}
    status, headers, body = admin(lbd, "GET", "/status", address=where)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    assert json.loads(body)["error"]
    assert admin(lbd, "GET", "/status", {"Authorization": "Bearer wrong-token-0123456789"},
                 address=where)[0] == 401
    status, _, body = admin(lbd, "GET", "/status", good, address=where)
    assert status == 200 and json.loads(body)["master_pid"] == lbd.master_pid
    # a page of another site cannot change anything, even with the token
    path = f"/upstreams/web/servers/{a.address}/drain"
    status, _, _ = admin(lbd, "POST", path, dict(good, Origin="http://evil.example"),
                         address=where)
    assert status == 403
    status, _, body = admin(lbd, "POST", path, dict(good, Origin=f"http://{where}"),
                            address=where)
    assert status == 200 and json.loads(body)["servers"][0]["state"] == "draining"
    assert re.search(rf"admin: 127\.0\.0\.1:\d+ drained server", lbd.error_log())


def test_an_admin_listener_refuses_clients_outside_allow(lbd, http_backends):
    where = admin_address()
    lbd.start(ADMIN_CONF, a=http_backends(name="a"), admin=where,
              access='allow = ["10.0.0.0/8"];')
    status, _, body = admin(lbd, "GET", "/status", address=where)
    assert status == 403 and "127.0.0.1" in json.loads(body)["error"]
    status, _, _ = admin(lbd, "POST", "/upstreams/web/servers/x/disable", address=where)
    assert status == 403
    assert admin_json(lbd, "GET", "/upstreams/web")[1]["servers"][0]["state"] == "up"


# Refusals ---------------------------------------------------------------------------

def test_unknown_paths_wrong_methods_and_bad_parameters(lbd, http_backends):
    a = http_backends(name="a")
    start_web(lbd, [a])
    status, body = admin_json(lbd, "GET", "/nothing/here")
    assert (status, body) == (404, {"error": "not found: /nothing/here"})
    status, headers, body = admin(lbd, "DELETE", "/status")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    status, headers, _ = admin(lbd, "GET", f"/upstreams/web/servers/{a.address}/drain")
    assert status == 405 and headers["Allow"] == "POST"
    status, body = admin_json(lbd, "POST", f"/upstreams/web/servers/{a.address}/weight")
    assert status == 400 and '"value"' in body["error"]
    status, body = admin_json(lbd, "POST",
                              f"/upstreams/web/servers/{a.address}/weight?value=1001")
    assert status == 400 and '"value"' in body["error"]
    status, body = admin_json(lbd, "POST", "/upstreams/web/servers/1.2.3.4:5/explode")
    assert status == 404 and "unknown action" in body["error"]
    status, body = admin_json(lbd, "POST", "/caches/pages/purge")
    assert (status, body) == (404, {"error": "no cache zones"})
    assert admin_json(lbd, "GET", "/upstreams/web")[1]["servers"][0]["weight"] == 1


def test_a_server_is_named_percent_encoded(lbd, http_backends):
    a = http_backends(name="a")
    start_web(lbd, [a])
    host, port = a.address.split(":")
    status, body = admin_json(lbd, "POST", f"/upstreams/web/servers/{host}%3A{port}/drain")
    assert status == 200 and body["servers"][0]["state"] == "draining"
    status, _ = admin_json(lbd, "POST", "/upstreams/web/servers/%zz/drain")
    assert status == 400


@pytest.mark.parametrize("data, status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /status HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"GET /status HTTP/1.1\r\n\r\n", 400),                        # no Host
    (b"GET /status HTTP/1.1\r\nHost: x\r\n bad: fold\r\n\r\n", 400),
    (b"GET /status HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST /status HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", 413),
    (b"GET /status HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
    (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 431),
], ids=["garbage", "http2", "no-host", "folded", "chunked", "huge-body", "negative-length",
        "huge-head"])
def test_malformed_requests_are_refused(lbd, http_backends, data, status):
    start_web(lbd, [http_backends(name="a")])
    out = raw(os.path.join(lbd.dir, "admin.sock"), data)
    assert out.startswith(b"HTTP/1.1 %d " % status), out[:200]
    assert b"Connection: close\r\n" in out
    # and the server goes on
    assert admin(lbd, "GET", "/status")[0] == 200


def test_keep_alive_and_head(lbd, http_backends):
    start_web(lbd, [http_backends(name="a")])
    conn = helpers.UnixHTTPConnection(os.path.join(lbd.dir, "admin.sock"))
    try:
        for _ in range(3):
            conn.request("GET", "/status")
            resp = conn.getresponse()
            assert resp.status == 200 and json.loads(resp.read())
        conn.request("HEAD", "/upstreams")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == b""
        assert int(resp.msg["Content-Length"]) > 0
    finally:
        conn.close()


def test_route_is_the_dry_run_of_lbctl_route(lbd, http_backends):
    start_web(lbd, [http_backends(name="a")])
    status, body = admin_json(lbd, "GET", "/route?method=GET&url=%2Fa%2Fb%3Fc%3D1"
                                           "&header=Host%3A%20x.example")
    assert status == 200 and body["matched"] is True
    out = lbd.lbctl("route", "GET", "/a/b?c=1", "-H", "Host: x.example")
    assert body["text"] == out.stdout
    assert "path sent upstream: /a/b?c=1" in body["text"]
    status, headers, text = admin(lbd, "GET", "/route?url=/z", {"Accept": "text/plain"})
    assert status == 200 and text.startswith("listener: ")
    status, body = admin_json(lbd, "GET", "/route?method=GET")
    assert status == 400 and '"url"' in body["error"]
    status, body = admin_json(lbd, "GET", "/route?url=/x&listener=nope")
    assert status == 400 and 'no http listener is called "nope"' in body["error"]
    status, body = admin_json(lbd, "GET", "/route?url=/x&colour=red")
    assert status == 400 and '"colour"' in body["error"]
    # the admin server goes on serving (its output is its own again)
    assert admin_json(lbd, "GET", "/status")[0] == 200
