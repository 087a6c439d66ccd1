"""GET /metrics on the admin API (SPEC §7, §9): Prometheus text that
promtool accepts, counters summed over the workers that match the traffic
sent, kept across a reload, for http (by listener, route and status class,
with a latency histogram), tcp, udp and the upstream servers."""

import os
import re
import shutil
import socket
import subprocess

import pytest

import helpers
from helpers import UnixHTTPConnection, wait_until
from http_backend import RecordingBackends
from test_admin import admin_json


@pytest.fixture
def http_backends():
    with RecordingBackends() as start:
        yield start


def metrics(lbd):
    conn = UnixHTTPConnection(os.path.join(lbd.dir, "admin.sock"))
    try:
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.msg["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        return resp.read().decode()
    finally:
        conn.close()


def value(text, name, **labels):
    """The value of the one series of name with exactly these labels."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    line = f"{name}{{{want}}} " if labels else f"{name} "
    found = [ln for ln in text.splitlines() if ln.startswith(line)]
    assert len(found) == 1, (line, found)
    return float(found[0].split()[-1])


def get(address, path="/"):
    return helpers.http_get(address, path)[0]


CONF = """
upstreams = { web = { servers = ( { address = "$a"; }, { address = "$b"; } ); };
              db = { servers = ( { address = "$echo"; } ); };
              dns = { servers = ( { address = "$udp"; } ); }; };
listeners = (
  { name = "front"; protocol = "http"; listen = "$listen";
    routes = ( { path_prefix = "/api"; upstream = "web"; },
               { path = "/gone"; return = { status = 503; }; } ); },
  { name = "db"; protocol = "tcp"; listen = "$tcp"; upstream = "db"; },
  { name = "dns"; protocol = "udp"; listen = "$udp_listen"; upstream = "dns";
    responses = 1; } );
"""


class UdpEcho:
    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.sock.settimeout(0.2)
        import threading
        self.stop_flag = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop_flag:
            try:
                data, peer = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            self.sock.sendto(data, peer)

    def stop(self):
        self.stop_flag = True
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def udp_echo():
    e = UdpEcho()
    yield e
    e.stop()


def start(lbd, http_backends, backend, udp_echo):
    a, b = http_backends(name="a"), http_backends(name="b")
    echo = backend(helpers.named, name="echo")
    tcp = f"127.0.0.1:{helpers.free_port()}"
    udp_listen = f"127.0.0.1:{helpers.free_port()}"
    lbd.start(CONF, a=a, b=b, echo=echo, udp=udp_echo, tcp=tcp, udp_listen=udp_listen,
              ports=[lbd.port, int(tcp.rsplit(":", 1)[1])])
    return a, b, tcp, udp_listen


def udp_ask(address, payload):
    host, port = address.rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(payload, (host, int(port)))
        return s.recvfrom(65536)[0]


def test_counts_match_the_traffic_across_workers_and_a_reload(lbd, http_backends, backend,
                                                              udp_echo):
    a, b, tcp, udp_listen = start(lbd, http_backends, backend, udp_echo)
    for _ in range(30):
        assert get(lbd.address, "/api/x") == 200
    for _ in range(7):
        assert get(lbd.address, "/gone") == 503
    for _ in range(4):
        assert get(lbd.address, "/nowhere") == 404
    for _ in range(3):
        assert helpers.ask_name(tcp) == "echo"
    for i in range(5):
        assert udp_ask(udp_listen, b"q%d" % i) == b"q%d" % i

    def counted():
        t = metrics(lbd)
        return t if value(t, "lbd_http_requests_total", listener="front", route="1",
                          code="2xx") == 30 else None
    text = wait_until(counted, 5, what="30 requests counted")
    assert value(text, "lbd_http_requests_total", listener="front", route="2", code="5xx") == 7
    assert value(text, "lbd_http_requests_total", listener="front", route="", code="4xx") == 4
    assert value(text, "lbd_http_requests_total", listener="front", route="1", code="4xx") == 0
    assert value(text, "lbd_http_request_duration_seconds_count", listener="front",
                 route="1") == 30
    assert value(text, "lbd_http_request_duration_seconds_bucket", listener="front", route="1",
                 le="+Inf") == 30
    assert value(text, "lbd_connections_total", listener="front", protocol="http") == 41
    assert value(text, "lbd_sent_bytes_total", listener="front") > 41 * 50
    assert value(text, "lbd_received_bytes_total", listener="front") > 41 * 20
    served = sum(value(text, "lbd_upstream_server_requests_total", upstream="web",
                       server=s.address) for s in (a, b))
    assert served == 30
    assert value(text, "lbd_upstream_server_up", upstream="web", server=a.address) == 1
    wait_until(lambda: value(metrics(lbd), "lbd_connections_total", listener="db",
                             protocol="tcp") == 3, 5, what="3 tcp connections")
    text = metrics(lbd)
    assert value(text, "lbd_udp_datagrams_total", listener="dns", direction="received") == 5
    assert value(text, "lbd_udp_datagrams_total", listener="dns", direction="sent") == 5
    assert value(text, "lbd_connections_total", listener="dns", protocol="udp") == 5
    assert value(text, "lbd_config_generation") == 0

    # a reload keeps every count; the new workers add to it
    assert lbd.reload().returncode == 0
    for _ in range(10):
        assert get(lbd.address, "/api/y") == 200
    text = wait_until(lambda: (lambda t: t if value(
        t, "lbd_http_requests_total", listener="front", route="1", code="2xx") == 40
        else None)(metrics(lbd)), 5, what="40 requests counted")
    assert value(text, "lbd_config_generation") == 1
    status, body = admin_json(lbd, "GET", "/upstreams/web")
    assert sum(s["requests_total"] for s in body["servers"]) == 40
    assert all(s["failures_total"] == 0 for s in body["servers"])


def test_a_failing_server_counts_failures(lbd, http_backends):
    a = http_backends(name="a")
    dead = f"127.0.0.1:{helpers.free_port()}"
    lbd.start("""
        upstreams = { web = { servers = ( { address = "$a"; }, { address = "$dead"; } ); }; };
        listeners = ( { protocol = "http"; listen = "$listen";
                        routes = ( { upstream = "web"; } ); } );
        """, a=a, dead=dead)
    for _ in range(6):
        assert get(lbd.address) == 200
    text = metrics(lbd)
    assert value(text, "lbd_upstream_server_failures_total", upstream="web", server=dead) >= 1
    assert value(text, "lbd_upstream_server_up", upstream="web", server=dead) == 0


def test_promtool_accepts_the_output(lbd, http_backends, backend, udp_echo):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: sh auto/deps installs Debian's prometheus package"
    start(lbd, http_backends, backend, udp_echo)
    for path in ("/api/1", "/gone", "/x"):
        get(lbd.address, path)
    text = metrics(lbd)
    out = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    # every family has HELP and TYPE, once
    names = re.findall(r"^# TYPE (\S+) ", text, re.M)
    assert len(names) == len(set(names))
    for family in ("lbd_http_requests_total", "lbd_http_request_duration_seconds",
                   "lbd_upstream_server_up", "lbd_upstream_server_active_connections",
                   "lbd_upstream_server_requests_total",
                   "lbd_upstream_server_health_checks_failed_total", "lbd_connections_total",
                   "lbd_udp_datagrams_total", "lbd_received_bytes_total", "lbd_sent_bytes_total",
                   "lbd_workers", "lbd_config_generation"):
        assert family in names, family


MANY_CONF = """
workers = 1;
upstreams = { web = { servers = ( { address = "$a"; } ); }; $more };
listeners = ( { name = "front"; protocol = "tcp"; listen = "$listen"; upstream = "$target";
                access_log = { path = "$log"; }; } );
"""


def test_series_a_failed_reload_numbered_are_mapped_by_the_next_one(lbd, backend, tmp_path):
    """A reload that numbers new series (400 servers: past the first page of
    512) and then fails (an access log it cannot open) must not leave the
    next reload, which declares the same series, mapping too few pages:
    once, its workers counted those servers past the end of their mapping."""
    a = backend(helpers.echo, "a")
    servers = ", ".join(f'{{ address = "127.0.0.2:{20001 + i}"; }}' for i in range(400))
    many = f"many = {{ retries = 0; passive = {{ max_fails = 0; }}; servers = ( {servers} ); }};"
    good, bad = str(tmp_path / "access.log"), str(tmp_path / "no/such/dir/access.log")
    lbd.start(MANY_CONF, a=a.address, more="", target="web", log=good)
    r = lbd.reload(MANY_CONF, a=a.address, more=many, target="many", log=bad)
    assert r.returncode != 0, r.stdout
    r = lbd.reload(MANY_CONF, a=a.address, more=many, target="many", log=good)
    assert r.returncode == 0, r.stderr
    for _ in range(800):                # round robin: every refusing server twice
        with helpers.connect(lbd.address) as s:
            helpers.recv_all(s)
    text = metrics(lbd)
    for port in (20001, 20400):
        server = f"127.0.0.2:{port}"
        assert value(text, "lbd_upstream_server_requests_total", upstream="many",
                     server=server) == 2
        assert value(text, "lbd_upstream_server_failures_total", upstream="many",
                     server=server) == 2
    assert "exited on signal" not in lbd.error_log()
