"""Reloads applied in place (SPEC §6): a reload whose only changes are
upstream server lists, weights, max_conns or backup flags is taken by the
running workers (same pids, same generation, `lbctl reload` says "in
place"); anything else starts a new generation, and so does a change that
would outgrow the shared zones the workers mapped."""

import http.client
import json
import os
import re
import socket
import time
from collections import Counter

import pytest

import helpers
from helpers import wait_until
from http_backend import RecordingBackends


@pytest.fixture
def http_backends():
    with RecordingBackends() as start:
        yield start


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=10):
        super().__init__("lbd", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def admin(lbd, path):
    conn = UnixHTTPConnection(os.path.join(lbd.dir, "admin.sock"))
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
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode().strip()
    finally:
        conn.close()


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
