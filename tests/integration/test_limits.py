"""Rate limits (`limits`, SPEC §3.8) through the real lbd with two workers:
the counts of 200 and 429 match the bucket, requests within the burst wait
their turn (or not, with nodelay), Retry-After, keys ($remote_addr,
$http_x_api_key, IPv6 by /64 through trusted_proxies), a route's own limit,
the metrics, the log, and buckets that survive a reload. Delays are
printed, and only checked to exist."""

import http.client
import re
import socket
import threading
import time

from helpers import wait_until
from test_admin import admin

CONF = """
workers = 2;
$global
listeners = ( {
  name = "web"; protocol = "http"; listen = "$listen";
  $proxy
  limits = { requests_per_second = 100; burst = 20; $extra };
  routes = (
    { path_prefix = "/own"; limits = { requests_per_second = 50; burst = 0; nodelay = true; };
      return = { status = 200; body = "own\\n"; }; },
    { path_prefix = "/slow"; limits = { requests_per_second = 1; burst = 5; nodelay = true; };
      return = { status = 200; body = "slow\n"; }; },
    { path_prefix = "/free"; limits = { enabled = false; requests_per_second = 1; };
      return = { status = 200; body = "free\\n"; }; },
    { path_prefix = "/"; return = { status = 200; body = "ok\\n"; }; }
  );
} );
"""


def start(lbd, extra="", glob="", proxy=""):
    lbd.start(CONF, extra=extra, proxy=proxy, **{"global": glob})


def via_proxy_protocol(address, client):
    """One request whose PROXY protocol header says it comes from client
    (an IPv6 address): its status."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(f"PROXY TCP6 {client} ::1 40000 80\r\n".encode()
                  + b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1])


def one(address, path="/", headers=None, source=None):
    """(status, Retry-After, seconds) of one request on its own connection."""
    host, port = address.rsplit(":", 1)
    t = time.monotonic()
    conn = http.client.HTTPConnection(host, int(port), timeout=10,
                                      source_address=(source, 0) if source else None)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.getheader("Retry-After"), time.monotonic() - t
    finally:
        conn.close()


def burst_of(address, n, rate, path="/", headers=None):
    """n requests started at `rate` per second, each on its own connection and
    thread: their results, and the seconds between the first and last start."""
    results = [None] * n
    threads = []
    start = time.monotonic()

    def run(i):
        results[i] = one(address, path, headers)

    for i in range(n):
        th = threading.Thread(target=run, args=(i,))
        th.start()
        threads.append(th)
        time.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))
    span = time.monotonic() - start
    for th in threads:
        th.join(30)
    return results, span


def expected_passes(rate, burst, span):
    """What a bucket lets through of requests spread evenly over span
    seconds, many more than the rate: the burst, the first, and the rate."""
    return burst + 1 + rate * span


def check_counts(results, span, rate, burst):
    passed = sum(1 for s, _, _ in results if s == 200)
    refused = sum(1 for s, _, _ in results if s == 429)
    want = expected_passes(rate, burst, span)
    print(f"\nlimits: {passed} passed, {refused} refused over {span:.3f}s (bucket: {want:.0f}); "
          f"slowest {max(t for _, _, t in results) * 1000:.0f} ms")
    assert passed + refused == len(results)
    assert abs(passed - want) <= 6 + 0.1 * want, (passed, want)
    return passed, refused


def test_the_bucket_decides_across_workers_and_early_requests_wait(lbd):
    start(lbd)
    results, span = burst_of(lbd.address, 200, 400)
    check_counts(results, span, 100, 20)
    # requests within the burst waited their turn: up to 20 x 10 ms
    assert max(t for s, _, t in results if s == 200) > 0.1
    for s, retry, _ in results:
        if s == 429:
            assert retry is not None and int(retry) >= 1
    wait_until(lambda: re.search(r"\[warn\].*limits: client 127\.0\.0\.1 over 100 requests per "
                                 r"second \(burst 20\) on listener \"web\"; answered 429",
                                 open(lbd.error_log_path).read()), 5, what="the limits line")
    # one line a second at most, not one per refusal
    assert open(lbd.error_log_path).read().count("limits: client") <= 4
    _, _, body = admin(lbd, "GET", "/metrics")
    m = re.search(r'lbd_http_rate_limited_total\{listener="web",route="",action="refused"\} (\d+)',
                  body)
    assert m and int(m.group(1)) == sum(1 for s, _, _ in results if s == 429)


def test_nodelay_answers_at_once(lbd):
    start(lbd, extra="nodelay = true;")
    results, span = burst_of(lbd.address, 200, 400)
    check_counts(results, span, 100, 20)


def test_a_route_has_its_own_limit_and_may_switch_it_off(lbd):
    start(lbd)
    # /own: 50 a second, no burst; the listener's bucket is untouched by it
    results, span = burst_of(lbd.address, 100, 400, path="/own")
    check_counts(results, span, 50, 0)
    assert one(lbd.address, "/")[0] == 200
    statuses = [one(lbd.address, "/free")[0] for _ in range(30)]
    assert statuses == [200] * 30


def test_keys_count_apart(lbd):
    start(lbd, extra='key = "$http_x_api_key"; nodelay = true;')
    a = [one(lbd.address, "/", {"X-Api-Key": "alpha"})[0] for _ in range(30)]
    b = [one(lbd.address, "/", {"X-Api-Key": "beta"})[0] for _ in range(30)]
    # each key: the first 21 at most pass at once, the rest wait for the rate
    assert 21 <= a.count(200) < 30 and 21 <= b.count(200) < 30, (a, b)


def test_clients_count_apart(lbd):
    start(lbd, extra="nodelay = true;")
    one_client = [one(lbd.address, "/", source="127.0.0.2")[0] for _ in range(25)]
    other = [one(lbd.address, "/", source="127.0.0.3")[0] for _ in range(10)]
    assert one_client.count(429) >= 1 and other == [200] * 10


def test_ipv6_clients_count_by_network(lbd):
    """Clients named by the PROXY protocol: 25 addresses of one /64 share
    one bucket; another /64 has its own."""
    start(lbd, extra="nodelay = true;", proxy="accept_proxy_protocol = true;")
    net = [via_proxy_protocol(lbd.address, f"2001:db8::{i + 1:x}") for i in range(25)]
    assert net.count(429) >= 1, net
    other_net = [via_proxy_protocol(lbd.address, "2001:db8:0:1::1") for _ in range(10)]
    assert other_net == [200] * 10


def test_ipv6_prefix_128_counts_each_address(lbd):
    start(lbd, extra="nodelay = true;", glob="ipv6_prefix = 128;",
          proxy="accept_proxy_protocol = true;")
    statuses = [via_proxy_protocol(lbd.address, f"2001:db8::{i + 1:x}") for i in range(25)]
    assert statuses == [200] * 25


def test_buckets_survive_a_reload(lbd):
    """/slow: 1 a second, burst 5. A quick run passes 6; after a reload a
    fresh bucket would pass 6 again, the kept one only what refilled
    during the reload (one a second)."""
    start(lbd)
    first = [one(lbd.address, "/slow")[0] for _ in range(10)]
    assert first.count(200) == 6, first
    t = time.monotonic()
    lbd.reload()
    again = [one(lbd.address, "/slow")[0] for _ in range(10)]
    refilled = int(time.monotonic() - t) + 1
    assert again.count(200) <= min(refilled, 5), (first, again, refilled)


def test_a_key_explosion_stays_within_limits_memory(lbd):
    """Far more keys than the smallest zone holds: lbd serves on, the oldest
    buckets go (the unit test counts a million in the table itself)."""
    start(lbd, extra='key = "$http_x_api_key"; nodelay = true;', glob='limits_memory = "64k";')
    host, port = lbd.address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    for i in range(4000):
        conn.request("GET", "/", headers={"X-Api-Key": f"key-{i}"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
    conn.close()


def test_bad_settings_are_load_errors(lbd, tmp_path):
    from helpers import lbd_test
    for extra, message in [
        ("requests_per_second = 0;", "requests_per_second"),
        ("burst = -1;", "burst"),
        ('key = "$nosuchvar";', "unknown variable"),
        ("status = 200;", "status"),
        ("rate = 5;", 'unknown setting "rate"'),
    ]:
        lbd.write_config(CONF, extra=extra, proxy="", **{"global": ""})
        r = lbd_test(lbd.conf_path)
        assert r.returncode == 1 and message in r.stdout + r.stderr, (extra, r.stdout + r.stderr)
    lbd.write_config(CONF.replace("requests_per_second = 100; ", ""), extra="", proxy="",
                     **{"global": ""})
    r = lbd_test(lbd.conf_path)
    assert r.returncode == 1 and "requests_per_second" in r.stdout + r.stderr


def test_buckets_survive_a_binary_upgrade(lbd):
    """As across a reload: the new binary takes the buckets over (and the
    seed their keys were hashed with)."""
    import re as _re
    lbd.start(CONF, extra="", proxy="", foreground=False, **{"global": ""})
    first = [one(lbd.address, "/slow")[0] for _ in range(10)]
    assert first.count(200) == 6, first
    t = time.monotonic()
    r = lbd.lbctl("upgrade")
    assert r.returncode == 0, r.stderr
    lbd.follow(int(_re.search(r"new master (\d+)", r.stdout).group(1)))
    again = [one(lbd.address, "/slow")[0] for _ in range(10)]
    refilled = int(time.monotonic() - t) + 1
    assert again.count(200) <= min(refilled, 5), (first, again, refilled)
