"""Reloads applied in place (SPEC §6): a reload whose only changes are
upstream server lists, weights, max_conns, backup flags or tls groups is taken by the
running workers (same pids, same generation, `lbctl reload` says "in
place"); anything else starts a new generation, and so does a change that
would outgrow the shared zones the workers mapped."""

import http.client
import json
import os
import re
import time
from collections import Counter

import pytest

import helpers
from helpers import wait_until
from http_backend import RecordingBackends
from test_tls import TlsRecordingBackend, backend_ctx, pki  # noqa: F401 (pki: a fixture)


@pytest.fixture
def http_backends():
    with RecordingBackends() as start:
        yield start


def admin(lbd, path):
    conn = helpers.UnixHTTPConnection(os.path.join(lbd.dir, "admin.sock"))
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def admin_json(lbd, path):
    status, body = admin(lbd, path)
    assert status == 200, body
    return json.loads(body)


def get(address, path="/"):
    status, body = helpers.http_get(address, path)
    return status, body.decode().strip()


def spread(lbd, n=40):
    return Counter(get(lbd.address)[1] for _ in range(n))


def server(b, weight=1, backup=False, extra=""):
    return (f'{{ address = "{b.address}"; weight = {weight}; '
            f'backup = {"true" if backup else "false"}; {extra} }}')


HTTP_CONF = """
upstreams = { web = { $extra servers = ( $servers ); }; };
listeners = ( { protocol = "http"; listen = "$listen"; routes = ( { upstream = "web"; } ); } );
"""


def reload_ok(lbd, servers, extra="", conf=HTTP_CONF, **subst):
    r = lbd.reload(conf, servers=", ".join(servers), extra=extra, **subst)
    assert r.returncode == 0, r.stderr
    return r.stdout


def in_place(out, what):
    assert out.startswith("reloaded in place: "), out
    assert what in out, out


# In place ---------------------------------------------------------------------------

def test_servers_added_removed_reweighted_and_backed_up_in_place(lbd, http_backends):
    a, b, c = (http_backends(name=n) for n in "abc")
    lbd.start(HTTP_CONF, servers=server(a), extra="")
    workers = sorted(lbd.workers())
    assert spread(lbd, 10) == {"a": 10}

    out = reload_ok(lbd, [server(a), server(b)])
    in_place(out, 'upstream "web" (1 server added)')
    assert sorted(lbd.workers()) == workers
    assert admin_json(lbd, "/status")["generation"] == 0
    assert set(spread(lbd, 20)) == {"a", "b"}

    out = reload_ok(lbd, [server(b), server(c)])
    in_place(out, 'upstream "web" (1 server added, 1 removed)')
    assert set(spread(lbd, 20)) == {"b", "c"}      # a none

    out = reload_ok(lbd, [server(b, weight=3), server(c)])
    in_place(out, 'upstream "web" (1 server changed)')
    got = spread(lbd, 80)
    assert set(got) == {"b", "c"} and got["b"] >= 2 * got["c"], got

    out = reload_ok(lbd, [server(b, weight=3), server(c, backup=True)])
    in_place(out, 'upstream "web" (1 server changed)')
    assert spread(lbd, 10) == {"b": 10}

    # the admin API (a helper, replaced) lists what is in force
    names = [s["address"] for s in admin_json(lbd, "/upstreams/web")["servers"]]
    assert names == [b.address, c.address]
    assert sorted(lbd.workers()) == workers
    assert admin_json(lbd, "/status")["generation"] == 0
    assert lbd.error_log().count("reloaded in place: ") == 4
    assert "reload done" not in lbd.error_log()


def test_a_listener_change_is_a_new_generation(lbd, http_backends):
    a, b = (http_backends(name=n) for n in "ab")
    lbd.start(HTTP_CONF, servers=server(a), extra="")
    workers = set(lbd.workers())
    out = reload_ok(lbd, [server(b)], extra="connect_timeout = \"3s\";")
    assert out.strip() == "reloaded: new generation 1", out
    wait_until(lambda: not (set(lbd.workers()) & workers), 15, what="new workers")
    assert admin_json(lbd, "/status")["generation"] == 1
    assert spread(lbd, 4) == {"b": 4}
    # nothing changed at all: a new generation too (certificates, files)
    out = reload_ok(lbd, [server(b)], extra="connect_timeout = \"3s\";")
    assert out.strip() == "reloaded: new generation 2", out
    lbd.wait_log(r"reload: no change a running worker can take; starting a new generation")


def test_a_tcp_upstream_changes_in_place(lbd, backend):
    one, two = backend(helpers.named, "one"), backend(helpers.named, "two")
    conf = """
        upstreams = { db = { servers = ( $servers ); }; };
        listeners = ( { protocol = "tcp"; listen = "$listen"; upstream = "db"; } );
        """
    lbd.start(conf, servers=server(one))
    workers = sorted(lbd.workers())
    out = reload_ok(lbd, [server(two)], conf=conf)
    in_place(out, 'upstream "db" (1 server added, 1 removed)')
    assert Counter(helpers.ask_name(lbd.address) for _ in range(6)) == {"two": 6}
    assert sorted(lbd.workers()) == workers


WS_HEAD = (b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
           b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")


def echo_once(s, message):
    s.sendall(message)
    got = b""
    while len(got) < len(message):
        chunk = s.recv(65536)
        assert chunk, got
        got += chunk
    return got


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M).group(1))


def test_a_websocket_outlives_a_hundred_reloads_in_place_and_memory_stays_flat(
        lbd, http_backends):
    a = http_backends(name="a", upgrade=True)
    b, c = http_backends(name="b"), http_backends(name="c")
    lbd.start(HTTP_CONF, servers=server(a), extra="")
    workers = sorted(lbd.workers())
    with helpers.connect(lbd.address) as ws:
        ws.sendall(WS_HEAD)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = ws.recv(1)
            assert chunk, head
            head += chunk
        assert head.startswith(b"HTTP/1.1 101 ")
        assert echo_once(ws, b"before") == b"before"
        before = {pid: rss_kib(pid) for pid in workers}
        start = time.monotonic()
        for i in range(100):
            # a, the websocket's server, is gone from every other version
            # (and takes no plain request: it only upgrades)
            servers = [server(b), server(c)] if i % 2 else [server(a, weight=1, backup=True),
                                                            server(b)]
            out = reload_ok(lbd, servers)
            assert "in place" in out, (i, out)
            if i % 10 == 9:
                assert echo_once(ws, b"during %d" % i) == b"during %d" % i
                # keep-alive requests through the versions, pools moved over
                assert {get(lbd.address)[0] for _ in range(4)} == {200}
        elapsed = time.monotonic() - start
        assert echo_once(ws, b"after") == b"after"
        # the replaced versions are freed a few seconds after their last use
        time.sleep(6)
        assert {get(lbd.address)[0] for _ in range(4)} == {200}
        after = {pid: rss_kib(pid) for pid in workers}
    assert sorted(lbd.workers()) == workers
    assert admin_json(lbd, "/status")["generation"] == 0
    print(f"100 reloads in place in {elapsed:.1f}s; worker RSS (KiB) before {before}, "
          f"after {after}")
    for pid in workers:
        assert after[pid] - before[pid] < 4096, (before, after)


# Full reloads instead -----------------------------------------------------------------

def test_a_change_outgrowing_the_shared_zone_is_a_new_generation(lbd, http_backends):
    a = http_backends(name="a")
    lbd.start(HTTP_CONF, servers=server(a), extra="")
    workers = set(lbd.workers())
    # the zone holds 64 slots for a small configuration: 200 more need more
    many = [f'{{ address = "127.0.{1 + i // 250}.{1 + i % 250}:9"; }}' for i in range(200)]
    out = reload_ok(lbd, [server(a)] + many)
    assert out.strip() == "reloaded: new generation 1", out
    lbd.wait_log(r'reload: the change outgrows the headroom of shared zone '
                 r'"lb_upstream_state"; starting a new generation')
    wait_until(lambda: not (set(lbd.workers()) & workers), 15, what="new workers")
    assert admin_json(lbd, "/status")["generation"] == 1
    # the grown zone has room again: the next change is in place
    out = reload_ok(lbd, [server(a)] + many[:100])
    in_place(out, 'upstream "web" (100 servers removed)')


def test_an_upstream_tls_change_is_applied_in_place(lbd, pki):
    """verify, ca and sni, a tls group added and removed: the same workers
    take each, and the next connection shows it (a wrong CA refuses the
    server, the right one with its name accepts it, none speaks plain
    HTTP to a TLS server)."""
    with TlsRecordingBackend(backend_ctx(pki), name="tb") as b:
        lbd.start(HTTP_CONF, servers=server(b), extra="tls = { verify = false; };")
        workers = sorted(lbd.workers())
        assert get(lbd.address) == (200, "tb")

        wrong = f'tls = {{ verify = true; ca = "{pki.path("otherca.crt")}"; }};'
        in_place(reload_ok(lbd, [server(b)], extra=wrong), 'upstream "web" (tls changed)')
        assert get(lbd.address)[0] == 502
        lbd.wait_log(r"TLS handshake failed")

        good = (f'tls = {{ verify = true; ca = "{pki.path("ca.crt")}"; '
                f'sni = "backend.test"; }};')
        b.snis.clear()
        in_place(reload_ok(lbd, [server(b)], extra=good), 'upstream "web" (tls changed)')
        assert get(lbd.address) == (200, "tb")
        assert b.snis == ["backend.test"]

        # with a server added in the same reload: one line says both
        with TlsRecordingBackend(backend_ctx(pki), name="tc") as c:
            out = reload_ok(lbd, [server(b), server(c)],
                            extra=good.replace("backend.test", "wrong.test"))
            in_place(out, 'upstream "web" (1 server added, tls changed)')
            assert {get(lbd.address)[0] for _ in range(4)} == {502}     # name mismatch

        out = reload_ok(lbd, [server(b)], extra="")
        in_place(out, 'upstream "web" (1 server removed, tls changed)')
        assert get(lbd.address)[0] == 502       # plain HTTP to a TLS server
        in_place(reload_ok(lbd, [server(b)], extra=good), 'upstream "web" (tls changed)')
        assert get(lbd.address) == (200, "tb")

        assert sorted(lbd.workers()) == workers
        assert admin_json(lbd, "/status")["generation"] == 0


def test_idle_connections_are_not_kept_across_a_tls_change(lbd, pki):
    """A pooled connection made under the old tls group is not used after
    the change: the next request makes a new one, checked anew."""
    with TlsRecordingBackend(backend_ctx(pki), name="tb") as b:
        lbd.start(HTTP_CONF, servers=server(b, extra=""),
                  extra="keepalive = 8; tls = { verify = false; };")
        assert get(lbd.address) == (200, "tb")
        wrong = f'keepalive = 8; tls = {{ verify = true; ca = "{pki.path("otherca.crt")}"; }};'
        in_place(reload_ok(lbd, [server(b)], extra=wrong), "tls changed")
        assert get(lbd.address)[0] == 502


BAD_LOG_CONF = """
upstreams = { web = { servers = ( $servers ); }; };
listeners = ( { protocol = "http"; listen = "$listen"; routes = ( { upstream = "web"; } );
                access_log = { path = "$log"; }; } );
"""


def test_a_failed_reload_in_between_forgets_nothing(lbd, http_backends, tmp_path):
    """A reload that drops server b and then fails after the upstreams took
    their state slots (an access log it cannot open) is not in force: b
    was never removed, so the next reload keeps b's runtime drain."""
    a, b = http_backends(name="a"), http_backends(name="b")
    good = str(tmp_path / "access.log")
    lbd.start(BAD_LOG_CONF, servers=f"{server(a)}, {server(b)}", log=good)
    assert lbd.lbctl("drain", "web", b.address).returncode == 0
    assert spread(lbd, 10) == {"a": 10}
    r = lbd.reload(BAD_LOG_CONF, servers=server(a), log=str(tmp_path / "no/such/dir/x.log"))
    assert r.returncode != 0, r.stdout
    out = reload_ok(lbd, [server(a), server(b, weight=2)], conf=BAD_LOG_CONF, log=good)
    in_place(out, 'upstream "web" (1 server changed)')
    assert spread(lbd, 10) == {"a": 10}            # b: still drained
    [s] = [s for s in admin_json(lbd, "/upstreams/web")["servers"] if s["address"] == b.address]
    assert s["draining"], s


# Helpers follow ---------------------------------------------------------------------

HEALTH_CONF = """
upstreams = { web = { health_check = { type = "http"; path = "/health"; interval = "200ms";
                                       timeout = "150ms"; };
                      servers = ( $servers ); }; };
listeners = ( { protocol = "http"; listen = "$listen"; routes = ( { upstream = "web"; } ); } );
"""


def checks(backend):
    return sum(1 for r in backend.requests if r.target == "/health")


def test_the_prober_and_metrics_follow_a_reload_in_place(lbd, http_backends):
    a, b = (http_backends(name=n) for n in "ab")
    lbd.start(HEALTH_CONF, servers=server(a))
    wait_until(lambda: checks(a) >= 2, 5, what="checks of a")
    prober = lbd.wait_helpers("health prober")
    out = reload_ok(lbd, [server(b)], conf=HEALTH_CONF)
    in_place(out, 'upstream "web" (1 server added, 1 removed)')
    wait_until(lambda: checks(b) >= 2, 5, what="checks of the added server")
    assert lbd.wait_helpers("health prober") != prober     # a new one, the old one gone
    seen = checks(a)
    time.sleep(0.6)                                         # three intervals
    assert checks(a) == seen                                # the removed one: no more
    assert spread(lbd, 4) == {"b": 4}
    status, text = admin(lbd, "/metrics")
    assert status == 200
    assert re.search(r'^lbd_upstream_server_requests_total\{upstream="web",server="%s"\} 4$'
                     % re.escape(b.address), text, re.M), text
    assert f'server="{a.address}"' not in text


# Sticky sessions and the hash balancer ------------------------------------------------

def test_a_sticky_cookie_naming_a_removed_server_chooses_again(lbd, http_backends):
    a, b, c = (http_backends(name=n) for n in "abc")
    sticky = 'sticky = { mode = "cookie"; };'
    lbd.start(HTTP_CONF, servers=", ".join([server(a), server(b)]), extra=sticky)
    cookies = {}
    for _ in range(20):
        host, port = lbd.address.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("GET", "/")
        resp = conn.getresponse()
        name = resp.read().decode().strip()
        cookies.setdefault(name, resp.getheader("Set-Cookie").split(";")[0])
        conn.close()
    assert set(cookies) == {"a", "b"}

    def with_cookie(cookie):
        host, port = lbd.address.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            conn.request("GET", "/", headers={"Cookie": cookie})
            resp = conn.getresponse()
            return resp.read().decode().strip(), resp.getheader("Set-Cookie")
        finally:
            conn.close()

    assert {with_cookie(cookies["a"])[0] for _ in range(6)} == {"a"}
    out = reload_ok(lbd, [server(b), server(c)], extra=sticky)
    in_place(out, 'upstream "web" (1 server added, 1 removed)')
    for _ in range(6):
        name, set_cookie = with_cookie(cookies["a"])
        assert name in ("b", "c") and set_cookie, (name, set_cookie)
    assert {with_cookie(cookies["b"])[0] for _ in range(6)} == {"b"}


def test_the_hash_balancer_follows_a_reload_in_place(lbd, http_backends):
    a, b, c = (http_backends(name=n) for n in "abc")
    hashed = 'balance = "hash"; hash_key = "$uri";'    # a value: no $$
    lbd.start(HTTP_CONF, servers=", ".join([server(a), server(b)]), extra=hashed)
    before = {p: get(lbd.address, p)[1] for p in (f"/k{i}" for i in range(40))}
    assert set(before.values()) == {"a", "b"}
    out = reload_ok(lbd, [server(a), server(b), server(c)], extra=hashed)
    in_place(out, 'upstream "web" (1 server added)')
    after = {p: get(lbd.address, p)[1] for p in before}
    assert "c" in after.values()
    # consistent hashing: a key that moved, moved to the new server
    assert all(after[p] in (before[p], "c") for p in before), (before, after)


def test_a_server_added_in_place_ramps_up_over_slow_start(lbd, http_backends):
    a, b = (http_backends(name=n) for n in "ab")
    ramp = 'slow_start = "60s";'
    lbd.start(HTTP_CONF, servers=server(a), extra=ramp)
    out = reload_ok(lbd, [server(a), server(b)], extra=ramp)
    in_place(out, 'upstream "web" (1 server added)')
    got = spread(lbd, 60)
    # a tenth of its weight at first: about 5 of 60, far from half
    assert 0 < got["b"] <= 15, got


def test_idle_keepalive_connections_to_a_server_that_stays_are_kept(lbd, http_backends):
    a, b = (http_backends(name=n) for n in "ab")
    lbd.start("workers = 1;\n" + HTTP_CONF, servers=server(a), extra="")
    assert get(lbd.address) == (200, "a")
    out = reload_ok(lbd, [server(a), server(b, backup=True)], conf="workers = 1;\n" + HTTP_CONF)
    in_place(out, 'upstream "web" (1 server added)')
    assert [get(lbd.address) for _ in range(3)] == [(200, "a")] * 3
    # one connection to a all along: the idle one moved to the new version
    assert {r.conn for r in a.requests} == {1}, a.requests
