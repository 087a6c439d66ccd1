"""Keeping a client on a server (SPEC §3.2): balance = "hash" with a Maglev
table (the same choice in two lbd instances, whatever the order of the
servers; only a down server's keys move), sticky = { mode = "cookie" }
(signed, honoured by every worker, across a reload and by a second
instance with the same secret_file; a forged or stale cookie re-chooses),
sticky = { mode = "source_ip" } for tcp, udp and http, and slow_start.
Backends answer with their own name, so every answer shows the server."""

import http.client
import re
import socket
import time
from collections import Counter

import pytest

import helpers
from helpers import ask_name, free_port, wait_until
from http_backend import RecordingBackends
from test_udp_proxy import UdpBackend, ask, named as udp_named, start as udp_start


@pytest.fixture
def http_backends():
    with RecordingBackends() as start:
        yield start


def servers_conf(backends, order=None):
    order = order or range(len(backends))
    return "".join(f'{{ address = "{backends[i].address}"; }}, ' for i in order).rstrip(", ")


def get(address, path="/", headers=None):
    """One request on its own connection: (status, body text, headers)."""
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read().decode().strip(), resp.msg
    finally:
        conn.close()


def names_for_keys(address, keys):
    """The backend that answers ?k=KEY for each key, over one keep-alive
    connection."""
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    out = []
    try:
        for k in keys:
            conn.request("GET", f"/?k={k}")
            resp = conn.getresponse()
            assert resp.status == 200
            out.append(resp.read().decode().strip())
    finally:
        conn.close()
    return out


HASH_CONF = """
upstreams = { web = { balance = "hash"; hash_key = "$$arg_k"; servers = ( $servers ); }; };
listeners = ( { protocol = "http"; listen = "$listen"; routes = ( { upstream = "web"; } ); } );
"""


def test_two_instances_hash_every_key_to_the_same_server(lbd_factory, http_backends):
    backends = [http_backends(name=f"s{i}") for i in range(5)]
    first, second = lbd_factory("first"), lbd_factory("second")
    first.start(HASH_CONF, servers=servers_conf(backends))
    # the same servers written in another order
    second.start(HASH_CONF, servers=servers_conf(backends, order=[3, 1, 4, 0, 2]))
    keys = [f"user{i}" for i in range(2000)]
    a = names_for_keys(first.address, keys)
    b = names_for_keys(second.address, keys)
    assert a == b
    # a key keeps its server; every server has a fair share
    assert names_for_keys(first.address, keys[:200]) == a[:200]
    shares = Counter(a)
    assert set(shares) == {f"s{i}" for i in range(5)}
    assert max(shares.values()) < 2 * min(shares.values()), shares


def test_a_down_server_moves_only_its_own_keys(lbd, http_backends):
    backends = [http_backends(name=f"s{i}") for i in range(4)]
    lbd.start(HASH_CONF.replace("balance", "retries = 3; balance"),
              servers=servers_conf(backends))
    keys = [f"k{i}" for i in range(600)]
    before = names_for_keys(lbd.address, keys)
    backends[2].stop()
    after = names_for_keys(lbd.address, keys)
    moved = [(x, y) for x, y in zip(before, after) if x != y]
    assert moved and all(x == "s2" for x, _ in moved)
    assert len(moved) == before.count("s2")
    # its keys spread over the others rather than piling on one
    assert len({y for _, y in moved}) == 3


def test_an_empty_key_is_spread_and_a_bad_hash_key_is_refused(lbd, http_backends):
    backends = [http_backends(name=f"s{i}") for i in range(2)]
    lbd.start(HASH_CONF.replace("$$arg_k", "$$cookie_missing"), servers=servers_conf(backends))
    assert {get(lbd.address)[1] for _ in range(6)} == {"s0", "s1"}
    conf = lbd.write_config(HASH_CONF.replace("$$arg_k", "$$arg_k$$hots"),
                            servers=servers_conf(backends))
    out = helpers.lbd_test(conf)
    assert out.returncode == 1
    assert re.search(r'hash_key of upstream "web": unknown variable "\$hots" '
                     r'\(did you mean "\$host"\?\)', out.stderr), out.stderr


def ask_name_from(address, source):
    """ask_name over a connection from the local address `source`."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5,
                                  source_address=(source, 0)) as s:
        return helpers.recv_line(s).decode().strip()


def test_tcp_hash_follows_the_client_address(lbd, backend):
    servers = [backend(helpers.named, name=f"t{i}") for i in range(3)]
    lbd.start("""
        upstreams = { db = { balance = "hash";
          servers = ( { address = "$a"; }, { address = "$b"; }, { address = "$c"; } ); }; };
        listeners = ( { protocol = "tcp"; listen = "$listen"; upstream = "db"; } );
        """, a=servers[0], b=servers[1], c=servers[2])
    chosen = {}
    for host in range(2, 42):
        source = f"127.0.0.{host}"
        names = {ask_name_from(lbd.address, source) for _ in range(3)}
        assert len(names) == 1, (source, names)        # every connection, either worker
        chosen[source] = names.pop()
    assert len(set(chosen.values())) == 3


# Sticky cookies ---------------------------------------------------------------

COOKIE_CONF = """
upstreams = { web = { keepalive = 0;
  sticky = { mode = "cookie"; $sticky };
  servers = ( $servers ); }; };
listeners = ( { protocol = "http"; listen = "$listen"; routes = ( { upstream = "web"; } ); } );
"""


def sticky_cookie(headers):
    """NAME=VALUE of the Set-Cookie field, and its attributes; None without."""
    value = headers.get("Set-Cookie")
    if value is None:
        return None, None
    pair, _, attrs = value.partition("; ")
    return pair, attrs


def test_a_sticky_cookie_keeps_a_client_on_its_server(lbd, http_backends):
    backends = [http_backends(name=f"s{i}") for i in range(3)]
    lbd.start(COOKIE_CONF, sticky='ttl = "1h";', servers=servers_conf(backends))
    status, first, headers = get(lbd.address)
    cookie, attrs = sticky_cookie(headers)
    assert status == 200 and cookie.startswith("LBSTICKY=")
    assert attrs == "Path=/; Max-Age=3600; HttpOnly; SameSite=Lax"
    assert re.fullmatch(r"LBSTICKY=[A-Za-z0-9_-]{44}", cookie), cookie
    # new connections land on either worker: all go to the same server, and
    # a valid cookie for the server that answers is not sent again
    for _ in range(20):
        status, name, headers = get(lbd.address, headers={"Cookie": f"a=b; {cookie}"})
        assert (status, name) == (200, first)
        assert sticky_cookie(headers) == (None, None)
    # without it, round robin goes on
    assert len({get(lbd.address)[1] for _ in range(6)}) == 3

    # a reload keeps the master's secret: the cookie still holds
    lbd.reload()
    assert {get(lbd.address, headers={"Cookie": cookie})[1] for _ in range(6)} == {first}


def test_a_forged_or_foreign_cookie_is_ignored_and_replaced(lbd, http_backends):
    backends = [http_backends(name=f"s{i}") for i in range(3)]
    lbd.start(COOKIE_CONF, sticky="",
              servers=servers_conf(backends))
    _, first, headers = get(lbd.address)
    cookie, _ = sticky_cookie(headers)
    name, value = cookie.split("=", 1)
    flipped = value[:10] + ("A" if value[10] != "A" else "B") + value[11:]
    for bad in (flipped, value[:-1], value + "x", "", "garbage", "A" * 4000, value * 2):
        status, _, headers = get(lbd.address, headers={"Cookie": f"{name}={bad}"})
        fresh, _ = sticky_cookie(headers)
        assert status == 200 and fresh is not None and fresh != f"{name}={bad}"


def test_a_second_instance_with_the_same_secret_file_honours_the_cookie(lbd_factory,
                                                                       http_backends,
                                                                       tmp_path):
    backends = [http_backends(name=f"s{i}") for i in range(3)]
    secret = tmp_path / "sticky.key"
    secret.write_text("a shared secret of some length\n")
    first, second, other = lbd_factory("a"), lbd_factory("b"), lbd_factory("c")
    sticky = f'secret_file = "{secret}";'
    first.start(COOKIE_CONF, sticky=sticky, servers=servers_conf(backends))
    second.start(COOKIE_CONF, sticky=sticky, servers=servers_conf(backends, [2, 0, 1]))
    other.start(COOKIE_CONF, sticky="", servers=servers_conf(backends))
    cookies = {}
    for _ in range(30):             # two workers, each its own round robin
        _, name, headers = get(first.address)
        cookies[name] = sticky_cookie(headers)[0]
        if len(cookies) == 3:
            break
    assert len(cookies) == 3
    for name, cookie in cookies.items():
        for _ in range(4):
            status, got, headers = get(second.address, headers={"Cookie": cookie})
            assert (status, got) == (200, name)
            assert sticky_cookie(headers) == (None, None)
    # an instance with its own secret does not trust them
    _, _, headers = get(other.address, headers={"Cookie": cookies["s0"]})
    assert sticky_cookie(headers)[0] is not None


def test_a_sticky_target_that_is_down_is_rechosen(lbd, http_backends):
    backends = [http_backends(name=f"s{i}") for i in range(2)]
    lbd.start(COOKIE_CONF, sticky="", servers=servers_conf(backends))
    _, first, headers = get(lbd.address)
    cookie = sticky_cookie(headers)[0]
    backends[int(first[1])].stop()
    status, name, headers = get(lbd.address, headers={"Cookie": cookie})
    assert status == 200 and name != first
    fresh = sticky_cookie(headers)[0]
    assert fresh is not None and fresh != cookie
    assert {get(lbd.address, headers={"Cookie": fresh})[1] for _ in range(4)} == {name}


def test_sticky_settings_are_checked(lbd):
    for sticky, error in (
            ('mode = "cookie"; cookie = "a b";', 'sticky cookie "a b" is not a valid cookie name'),
            ('mode = "cookie"; path = "x";', 'sticky path "x" must start with "/"'),
            ('mode = "cookie"; secret_file = "nope.key";', 'cannot read secret_file'),
            ('mode = "cooky";', 'invalid value "cooky" for "mode"'),
            ('ttl = "1h";', '"sticky" needs a mode: "cookie" or "source_ip"')):
        conf = lbd.write_config(f"""
            upstreams = {{ web = {{ sticky = {{ {sticky} }};
              servers = ( {{ address = "127.0.0.1:1"; }} ); }}; }};
            listeners = ( {{ protocol = "http"; listen = "$listen";
              routes = ( {{ upstream = "web"; }} ); }} );""")
        out = helpers.lbd_test(conf)
        assert out.returncode == 1 and error in out.stderr, (sticky, out.stderr)


# Sticky source_ip ---------------------------------------------------------------

def test_source_ip_keeps_tcp_clients_on_their_server_across_workers(lbd, backend):
    servers = [backend(helpers.named, name=f"t{i}") for i in range(3)]
    lbd.start("""
        upstreams = { db = { sticky = { mode = "source_ip"; ttl = "1m"; };
          servers = ( { address = "$a"; }, { address = "$b"; }, { address = "$c"; } ); }; };
        listeners = ( { protocol = "tcp"; listen = "$listen"; upstream = "db"; } );
        """, a=servers[0], b=servers[1], c=servers[2])
    chosen = {}
    for host in range(2, 11):
        source = f"127.0.0.{host}"
        names = [ask_name_from(lbd.address, source) for _ in range(6)]
        assert len(set(names)) == 1, (source, names)
        chosen[source] = names[0]
    # the first connections went round robin: the clients are spread
    assert len(set(chosen.values())) == 3


def test_source_ip_keeps_http_clients_on_their_server(lbd, http_backends):
    backends = [http_backends(name=f"s{i}") for i in range(3)]
    lbd.start("""
        upstreams = { web = { keepalive = 0; sticky = { mode = "source_ip"; };
          servers = ( $servers ); }; };
        listeners = ( { protocol = "http"; listen = "$listen";
          routes = ( { upstream = "web"; } ); } );
        """, servers=servers_conf(backends))
    host, port = lbd.address.rsplit(":", 1)
    seen = {}
    for h in range(2, 8):
        names = set()
        for _ in range(5):
            conn = http.client.HTTPConnection(host, int(port), timeout=10,
                                              source_address=(f"127.0.0.{h}", 0))
            conn.request("GET", "/")
            names.add(conn.getresponse().read().decode().strip())
            conn.close()
        assert len(names) == 1, names
        seen[h] = names.pop()
    assert len(set(seen.values())) == 3


def test_source_ip_keeps_udp_clients_on_their_server(lbd):
    servers = [UdpBackend(udp_named(f"u{i}"), name=f"u{i}") for i in range(2)]
    try:
        udp_start(lbd, """
            upstreams = { dns = { sticky = { mode = "source_ip"; };
              servers = ( { address = "$a"; }, { address = "$b"; } ); }; };
            listeners = ( { protocol = "udp"; listen = "$listen"; upstream = "dns";
              responses = 1; } );
            """, a=servers[0].address, b=servers[1].address)
        for h in (2, 3, 4, 5):
            names = set()
            for i in range(6):
                # a new source port each time: a new session, in either worker
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.bind((f"127.0.0.{h}", 0))
                    s.settimeout(3)
                    names.add(ask(s, lbd.address, b"q%d" % i).split()[0])
            assert len(names) == 1, (h, names)
    finally:
        for s in servers:
            s.stop()


# Slow start ---------------------------------------------------------------------

def test_slow_start_ramps_a_returning_server(lbd, backend):
    a = backend(helpers.named, name="a")
    b = backend(helpers.named, name="b")
    port_b = b.port
    lbd.start("""
        workers = 1;
        upstreams = { db = { slow_start = "6s";
          passive = { max_fails = 1; fail_timeout = "1s"; };
          servers = ( { address = "$a"; }, { address = "$b"; } ); }; };
        listeners = ( { protocol = "tcp"; listen = "$listen"; upstream = "db"; } );
        """, a=a, b=b)
    b.stop()
    for _ in range(4):
        assert ask_name(lbd.address) == "a"       # b refused: failed for 1s
    b = backend(helpers.named, name="b", port=port_b)
    time.sleep(1.2)
    wait_until(lambda: ask_name(lbd.address) == "b", 5, what="b's trial")
    lbd.wait_log(helpers.log_line("notice", r'server 127\.0\.0\.1:\d+ in upstream "db" '
                                  r'answered again; back in use'))
    # b's share grows over the ramp: small at first, even at the end
    shares = []
    for _ in range(3):
        started = time.monotonic()
        names = [ask_name(lbd.address) for _ in range(60)]
        shares.append(names.count("b") / len(names))
        time.sleep(max(0, 2 - (time.monotonic() - started)))
    end = [ask_name(lbd.address) for _ in range(60)]
    assert shares[0] < 0.35, shares
    assert shares[0] < shares[-1] or shares[-1] > 0.4, shares
    assert 0.4 <= end.count("b") / len(end) <= 0.6, shares
