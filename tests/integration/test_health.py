"""Active health checks (SPEC §3.2 `health_check`): one prober process for
the whole instance checks every server of the upstreams that ask for it
(tcp connect, http status and body, udp datagram and answer, over TLS or
not, on the server's port or another) and takes a server out after `fall`
failed checks, back in after `rise` passed ones; every worker follows its
verdict. The backends are real servers on loopback: http_backend's
RecordingBackend (checks are told from traffic by their User-Agent),
helpers.Backend for raw behaviour, test_udp_proxy's UdpBackend. Intervals
are short (200-400ms) so that the file runs in well under a minute; waits
are generous, so that the sanitizer build passes too, and timings are
asserted only where the contract names one."""

import os
import re
import resource
import signal
import socket
import time

import pytest

import helpers
from helpers import Load, connect, log_line, wait_until
from http_backend import Behaviour, RecordingBackend
from test_tls import TlsRecordingBackend, backend_ctx, pki  # noqa: F401 (pki: a fixture)
from test_udp_proxy import udp_backend  # noqa: F401 (a fixture)

CHECK_AGENT = "lbd health check"
PROBER = "health prober"
FAST = 'interval = "200ms"; timeout = "150ms";'     # checks in most tests


def is_check(req):
    return req.header("User-Agent") == CHECK_AGENT


# Backends ------------------------------------------------------------------------

class HttpServer(RecordingBackend):
    """A RecordingBackend that answers checks and traffic alike (Behaviour
    options) and stamps every check it receives (time.monotonic())."""

    def __init__(self, name, port=None, **options):
        self.check_times = []
        answer = Behaviour(**options)

        def behaviour(req):
            if is_check(req):
                self.check_times.append(time.monotonic())
            return answer
        super().__init__(behaviour, name=name, port=port)

    @property
    def checks(self):
        return len(self.check_times)

    def checks_since(self, t):
        return [x for x in self.check_times if x >= t]

    def traffic(self):
        """The requests that were not health checks."""
        return [r for r in self.requests if not is_check(r)]

    def wait_checks(self, n, timeout=10):
        wait_until(lambda: self.checks >= n, timeout, what=f"{n} checks on {self}")


@pytest.fixture
def servers():
    """servers(name, port=None, **Behaviour options): a started HttpServer;
    all are stopped at teardown."""
    started = []

    def start(name, port=None, **options):
        started.append(HttpServer(name, port=port, **options))
        return started[-1]

    yield start
    for s in started:
        s.stop()


def hold(conn, backend):
    """Reads until the client closes."""
    helpers.recv_all(conn)


def read_head(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


# Configurations --------------------------------------------------------------------
# For Lbd.config (string.Template): servers are given as objects with an
# address, $listen is lbd's port.

def address_of(s):
    return s if isinstance(s, str) else s.address


def upstream(name, servers, check, **settings):
    """One member of `upstreams`: servers (backends or addresses, or
    (server, "extra server settings;")) with `health_check = { check }`."""
    entries = []
    for s in servers:
        s, extra = s if isinstance(s, tuple) else (s, "")
        entries.append(f'{{ address = "{address_of(s)}"; {extra} }}')
    rest = "".join(f" {k} = {v};" for k, v in settings.items())
    hc = f" health_check = {{ {check} }};" if check is not None else ""
    return f"{name} = {{ servers = ( {', '.join(entries)} );{hc}{rest} }};"


def conf(*upstreams, workers=1, protocol="http", target="web"):
    if protocol == "http":
        listener = (f'{{ protocol = "http"; listen = "$listen"; '
                    f'routes = ( {{ upstream = "{target}"; }} ); }}')
    else:
        listener = f'{{ protocol = "{protocol}"; listen = "$listen"; upstream = "{target}"; }}'
    return (f"workers = {workers};\n"
            "upstreams = {\n  " + "\n  ".join(upstreams) + "\n};\n"
            f"listeners = ( {listener} );\n")


# Log lines ------------------------------------------------------------------------------

def down_line(server, why, fall, upstream="web"):
    return log_line("warn", rf"server {re.escape(address_of(server))} in upstream "
                            rf'"{upstream}" is down: {why}, {fall} of {fall} checks failed')


def up_line(server, rise, upstream="web"):
    return log_line("notice", rf"server {re.escape(address_of(server))} in upstream "
                              rf'"{upstream}" is up: {rise} of {rise} checks passed')


def never_down(lbd, server, upstream="web"):
    return (f'server {address_of(server)} in upstream "{upstream}" is down'
            not in lbd.error_log())


def wait_line(lbd, regex, timeout=10):
    """Waits for regex in the error log; the time.monotonic() it was seen."""
    lbd.wait_log(regex, timeout)
    return time.monotonic()


# Clients ------------------------------------------------------------------------

def get(address, path="/"):
    """One GET on a connection of its own: (status, the X-Backend that
    answered, or None)."""
    with connect(address) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t.test\r\nConnection: close\r\n\r\n"
                  .encode())
        data = helpers.recv_all(s)
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    status = int(head.split()[1])
    m = re.search(r"^X-Backend: (\S+)", head, re.M | re.I)
    return status, m.group(1) if m else None


def answered_by(attempts, name):
    return sum(1 for a in attempts if a.value and a.value[1] == name)


def the_prober(lbd):
    """The pid of the one health prober, once it runs."""
    return lbd.wait_helpers(PROBER)[0]


# A backend dies under load, and comes back ------------------------------------------------

def test_killed_backend_is_down_within_fall_intervals_then_back_with_slow_start(
        lbd, servers):
    a, b = servers("a"), servers("b")
    check = ('type = "http"; path = "/health"; interval = "300ms"; timeout = "250ms"; '
             "fall = 3; rise = 2;")
    lbd.start(conf(upstream("web", [a, b], check, retries=1, slow_start='"2s"'), workers=2))
    with Load(lbd.address, threads=2, duration=60, action=get) as load:
        wait_until(lambda: b.traffic() and b.checks, 10, what="traffic and checks on b")
        killed = time.monotonic()
        b.stop()
        down = wait_line(lbd, down_line(b, r"connect failed \(Connection refused\)", 3))
        # fall intervals (each up to a tenth longer) and a second
        assert down - killed <= 3 * 0.3 * 1.1 + 1.0
        time.sleep(0.5)             # a serves alone
        restarted = time.monotonic()
        b2 = servers("b", port=b.port)
        up = wait_line(lbd, up_line(b, 2))
        assert up - restarted <= 2 * 0.3 * 1.1 + 1.0
        # slow_start: b's weight grows from a tenth to all of it in 2s
        time.sleep(max(0, up + 2.8 - time.monotonic()))
        load.stop()
    assert not load.failures, load.failures[:3]
    assert all(x.value[0] == 200 for x in load.attempts)
    # no request reached the new b before `rise` checks had passed
    first = next(i for i, r in enumerate(b2.requests) if not is_check(r))
    assert sum(1 for r in b2.requests[:first] if is_check(r)) >= 2
    early = [x for x in load.attempts if up <= x.start < up + 0.5]
    late = [x for x in load.attempts if up + 2.2 <= x.start < up + 2.8]
    assert early and late
    early_share = answered_by(early, "b") / len(early)
    late_share = answered_by(late, "b") / len(late)
    assert early_share < 0.35 and late_share > 0.4, (early_share, late_share)


# Check types ----------------------------------------------------------------------------

def test_tcp_check_is_a_connect_and_follows_the_server(lbd, backend):
    x, y = backend(helpers.named, "x"), backend(helpers.named, "y")
    check = f'type = "tcp"; {FAST} fall = 2; rise = 2;'
    lbd.start(conf(upstream("web", [x, y], check), protocol="tcp"))
    wait_until(lambda: y.accepted >= 2, 10, what="checks on y")
    y.stop()
    lbd.wait_log(down_line(y, r"connect failed \(Connection refused\)", 2))
    assert {helpers.ask_name(lbd.address) for _ in range(6)} == {"x"}
    backend(helpers.named, "y", port=y.port)
    lbd.wait_log(up_line(y, 2))
    wait_until(lambda: "y" in {helpers.ask_name(lbd.address) for _ in range(4)}, 10,
               what="y to take sessions again")
    assert never_down(lbd, x)


def test_port_checks_another_port_than_the_traffic(lbd, servers, backend):
    a = servers("a")
    probe = backend(hold, "probe")
    check = f'type = "tcp"; port = {probe.port}; {FAST} fall = 2; rise = 2;'
    lbd.start(conf(upstream("web", [a], check)))
    wait_until(lambda: probe.accepted >= 2, 10, what="checks on the probe port")
    assert get(lbd.address) == (200, "a")
    probe.stop()
    lbd.wait_log(down_line(a, r"connect failed \(Connection refused\)", 2))
    # a still answers on its own port, but its check port says no
    assert get(lbd.address) == (503, None)
    backend(hold, "probe", port=probe.port)
    lbd.wait_log(up_line(a, 2))
    assert get(lbd.address) == (200, "a")
    # no check went to the traffic port: every connection a took carried a request
    assert a.checks == 0 and 1 <= a.accepted <= len(a.traffic())


def test_expect_status_takes_a_status_a_class_or_a_range(lbd, servers):
    cases = [("one", '"200"', 200, 204), ("class", '"2xx"', 204, 301),
             ("range", '"200-399"', 302, 404), ("default", None, 399, 400)]
    ups, pairs = [], []
    for name, expect, good, bad in cases:
        ok, ko = servers(f"{name}-ok", status=good), servers(f"{name}-ko", status=bad)
        check = f'type = "http"; {FAST} fall = 2;'
        if expect:
            check += f" expect_status = {expect};"
        ups.append(upstream(name, [ok, ko], check))
        pairs.append((name, ok, ko, bad))
    lbd.start(conf(*ups, target="one"))
    for name, ok, ko, bad in pairs:
        lbd.wait_log(down_line(ko, f"http status {bad}", 2, name))
    for name, ok, ko, bad in pairs:
        ok.wait_checks(4)
        assert never_down(lbd, ok, name), name


def keep_alive_answer(body):
    """Answers the first request with a Content-Length body and keeps the
    connection open (Connection: close or not) until the client closes."""
    def handler(conn, backend):
        read_head(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        helpers.recv_all(conn)
    return handler


def test_expect_body_matches_the_start_of_the_decoded_body(lbd, servers, backend):
    match = servers("match", body="status: ok\n")
    mismatch = servers("mismatch", body="status: degraded\n")
    chunked = servers("chunked", body="status: ok\n", framing="chunked", chunk_size=4)
    kept = backend(keep_alive_answer(b"status: ok\n"), "kept")
    deep = servers("deep", body="x" * 20000 + "status: ok\n")
    # a new connection for each check: `kept` answers one request only
    check = (f'type = "http"; {FAST} fall = 2; expect_body = "^status: ok$$"; '
             'keepalive_time = "0s";')
    lbd.start(conf(upstream("web", [match, mismatch, chunked, kept, deep], check)))
    lbd.wait_log(down_line(mismatch, "body does not match expect_body", 2))
    # only the first 16 KiB of a body are read
    lbd.wait_log(down_line(deep, "body does not match expect_body", 2))
    for s in (match, chunked):
        s.wait_checks(4)
    # a server that keeps the connection open is judged when the body is in
    wait_until(lambda: kept.accepted >= 4, 10, what="checks on kept")
    for s in (match, chunked, kept):
        assert never_down(lbd, s), s


def answer(raw):
    """Reads the check, sends raw, closes."""
    def handler(conn, backend):
        read_head(conn)
        conn.sendall(raw)
    return handler


OK_BODY = b"status: ok\n"
# (id, what the server sends before it closes, None (up) or why it is down)
ANSWERS = [
    ("chunked_with_extension_and_trailer",
     b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n"
     b"4;a=b\r\nstat\r\n7\r\nus: ok\n\r\n0\r\nX-T: 1\r\n\r\n", None),
    ("interim_then_final",
     b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
     b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n" + OK_BODY, None),
    ("bare_line_feeds", b"HTTP/1.0 200 OK\nContent-Length: 11\n\n" + OK_BODY, None),
    ("delimited_by_close", b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + OK_BODY, None),
    ("invalid_chunk_size", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
     "invalid chunked body"),
    ("short_body", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + OK_BODY,
     "closed before the end of the body"),
    ("short_chunked_body",
     b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nb\r\n" + OK_BODY,
     "closed before the end of the body"),
    ("bad_length", b"HTTP/1.1 200 OK\r\nContent-Length: 11x\r\n\r\n" + OK_BODY,
     "invalid Content-Length"),
    ("four_digit_status", b"HTTP/1.1 2000 OK\r\nContent-Length: 11\r\n\r\n" + OK_BODY,
     "invalid http status line"),
    ("head_cut_short", b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n", "http head never ended"),
    ("nothing", b"", "closed without answering"),
]


def test_http_answers_are_read_by_their_framing(lbd, backend):
    backs = [backend(answer(raw), name) for name, raw, _ in ANSWERS]
    check = f'type = "http"; {FAST} fall = 2; expect_body = "^status: ok$$";'
    lbd.start(conf(upstream("web", backs, check)))
    for b, (name, _, why) in zip(backs, ANSWERS):
        if why:
            lbd.wait_log(down_line(b, re.escape(why), 2))
    wait_until(lambda: all(b.accepted >= 4 for b in backs), 10, what="four checks of each")
    for b, (name, _, why) in zip(backs, ANSWERS):
        assert why or never_down(lbd, b), name


def test_http_check_sends_its_path_and_host(lbd, servers):
    a, b = servers("a"), servers("b")
    lbd.start(conf(upstream("web", [a], 'type = "http"; path = "/healthz?deep=1"; '
                            f'host = "health.example"; {FAST}'),
                   upstream("plain", [b], f'type = "http"; {FAST}')))
    a.wait_checks(1)
    b.wait_checks(1)
    req = next(r for r in a.requests if is_check(r))
    assert (req.method, req.target, req.version) == ("GET", "/healthz?deep=1", "HTTP/1.1")
    # HTTP/1.1 keeps the connection: no Connection field (keepalive_time)
    assert (req.header("Host"), req.header("Connection")) == ("health.example", None)
    req = next(r for r in b.requests if is_check(r))
    assert (req.target, req.header("Host")) == ("/", b.address)


# Kept connections ------------------------------------------------------------------

def check_conns(server):
    """The backend connections its checks came on, in order, each once."""
    return list(dict.fromkeys(r.conn for r in list(server.requests) if is_check(r)))


def a_connection_per_check(server):
    conns = [r.conn for r in list(server.requests) if is_check(r)]
    return len(conns) == len(set(conns))


def test_http_checks_keep_their_connection_for_keepalive_time(lbd, servers):
    a, b, c = servers("a"), servers("b"), servers("c")
    lbd.start(conf(upstream("web", [a], f'type = "http"; {FAST}'),
                   upstream("short", [b], f'type = "http"; {FAST} keepalive_time = "1s";'),
                   upstream("off", [c], f'type = "http"; {FAST} keepalive_time = "0s";')))
    for s in (a, b, c):
        s.wait_checks(15)
    # the default (10s): one connection carries every check
    assert len(check_conns(a)) == 1, check_conns(a)
    assert all(r.header("Connection") is None for r in a.requests)
    # 1s: a new connection about every five checks of 200ms
    conns = check_conns(b)
    assert 2 <= len(conns) <= 6, conns
    per_conn = [sum(1 for r in b.requests if r.conn == k) for k in conns[:-1]]
    assert all(3 <= n <= 7 for n in per_conn), per_conn
    # 0: a connection per check, asked to close
    assert a_connection_per_check(c)
    assert all(r.header("Connection") == "close" for r in c.requests)
    for s in (a, b, c):
        assert never_down(lbd, s, {a: "web", b: "short", c: "off"}[s])


def test_a_kept_connection_closed_by_the_server_never_fails_a_check(lbd, servers, backend):
    """fall = 1, so that a single failed check would take the server out:
    a server that closes kept connections as a request arrives on them
    (the race of an idle timeout), one that closes them while idle, and
    one that says Connection: close or speaks HTTP/1.0 are all checked
    without a failure, over new connections as needed."""
    racy = servers("racy", close_without_answer={3, 6, 9, 12, 15})
    closing = servers("closing", close=True)

    def idle_timeout(conn, backend):
        # one answer, then the connection is closed 50ms later, before the
        # next check comes
        read_head(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
        time.sleep(0.05)
    idle = backend(idle_timeout, "idle")
    old = backend(answer(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n"), "old")
    check = f'type = "http"; {FAST} fall = 1; rise = 1;'
    lbd.start(conf(upstream("web", [racy, closing, idle, old], check)))
    racy.wait_checks(16)
    closing.wait_checks(6)
    wait_until(lambda: idle.accepted >= 6 and old.accepted >= 6, 10,
               what="six checks of idle and old")
    for s in (racy, closing, idle, old):
        assert never_down(lbd, s), s
    # racy: each close was met by a new connection within the check
    assert len(check_conns(racy)) == 6, check_conns(racy)
    # closing: a connection per check
    assert a_connection_per_check(closing)


def test_a_check_on_a_kept_connection_still_fails_on_a_bad_answer(lbd, servers):
    """Reuse changes what a check costs, not what it judges."""
    a = servers("a", status=500)
    lbd.start(conf(upstream("web", [a], f'type = "http"; {FAST} fall = 2;')))
    lbd.wait_log(down_line(a, "http status 500", 2))
    # a 500 with a length leaves the connection usable, but a failed check
    # drops it: each check came on a new one
    assert a_connection_per_check(a)


def test_expect_body_checks_keep_a_connection_when_the_body_has_a_length(lbd, servers):
    plain = servers("plain", body="status: ok\n")
    chunked = servers("chunked", body="status: ok\n", framing="chunked", chunk_size=4)
    check = f'type = "http"; {FAST} expect_body = "^status: ok$$";'
    lbd.start(conf(upstream("web", [plain, chunked], check)))
    plain.wait_checks(6)
    chunked.wait_checks(6)
    assert len(check_conns(plain)) == 1
    # chunked answers are not kept (the end of their trailer is not read)
    assert a_connection_per_check(chunked)
    for s in (plain, chunked):
        assert never_down(lbd, s), s


def test_tls_checks_keep_their_connection_too(lbd, servers, pki):
    with TlsRecordingBackend(backend_ctx(pki), name="tb") as b:
        check = f'type = "http"; tls = true; {FAST}'
        lbd.start(conf(upstream("web", [b], check,
                                tls='{ verify = true; ca = "%s"; sni = "backend.test"; }'
                                    % pki.path("ca.crt"))))
        wait_until(lambda: sum(1 for r in b.requests if is_check(r)) >= 6, 10,
                   what="six tls checks")
        assert len(check_conns(b)) == 1
        assert len(b.snis) == 1             # one handshake for all of them
        assert never_down(lbd, b)


def unused_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_udp_check_sends_a_datagram_and_matches_the_answer(lbd, udp_backend):
    pong = udp_backend(lambda data, addr: b"PONG " + data if data == b"PING" else None, "pong")
    wrong = udp_backend(lambda data, addr: b"NOPE", "wrong")
    silent = udp_backend(lambda data, addr: None, "silent")
    binary = udp_backend(lambda data, addr: b"\x81" if data == b"\x00\x01\xff" else None, "bin")
    refused = f"127.0.0.1:{unused_udp_port()}"
    timing = f'{FAST} fall = 2;'
    lbd.write_config(conf(
        upstream("dns", [pong, wrong, silent, refused],
                 f'type = "udp"; send = "PING"; expect = "^PONG PING$$"; {timing}'),
        upstream("bin", [binary], f'type = "udp"; send_hex = "0001ff"; {timing}'),
        protocol="udp", target="dns"))
    lbd.start(wait=False)
    lbd.wait_log(down_line(wrong, "answer does not match expect", 2, "dns"))
    lbd.wait_log(down_line(silent, "timed out", 2, "dns"))
    lbd.wait_log(down_line(refused, r"no answer \(Connection refused\)", 2, "dns"))
    wait_until(lambda: len(pong.received) >= 4 and len(binary.received) >= 4, 10,
               what="checks on pong and bin")
    assert {data for _, data in pong.received} == {b"PING"}
    assert {data for _, data in binary.received} == {b"\x00\x01\xff"}
    assert never_down(lbd, pong, "dns") and never_down(lbd, binary, "bin")


def test_tls_checks_use_the_upstreams_tls_settings(lbd, servers, pki):
    secure = TlsRecordingBackend(backend_ctx(pki), name="secure")
    plain = servers("plain")
    check = f'type = "http"; path = "/tls"; tls = true; {FAST} fall = 2;'
    tcp = f'type = "tcp"; tls = true; {FAST} fall = 2;'
    trusted = f'{{ verify = true; ca = "{pki.path("ca.crt")}"; sni = "backend.test"; }}'
    stranger = f'{{ verify = true; ca = "{pki.path("otherca.crt")}"; sni = "backend.test"; }}'
    try:
        lbd.start(conf(upstream("web", [secure, plain], check),
                       upstream("tcp", [secure, plain], tcp),
                       upstream("trusted", [secure], check, tls=trusted),
                       upstream("stranger", [secure], check, tls=stranger)))
        # without an upstream tls group nothing is verified; a plain server fails
        lbd.wait_log(down_line(plain, "tls handshake failed: .*", 2))
        lbd.wait_log(down_line(plain, "tls handshake failed: .*", 2, "tcp"))
        lbd.wait_log(down_line(secure, "tls handshake failed: .*", 2, "stranger"))
        wait_until(lambda: sum(1 for r in secure.requests if is_check(r)) >= 9, 10,
                   what="checks over tls")
        assert {r.target for r in secure.requests} == {"/tls"}
        assert "backend.test" in secure.snis
        for name in ("web", "tcp", "trusted"):
            assert never_down(lbd, secure, name), name
    finally:
        secure.stop()


def test_start_down_sends_no_traffic_before_rise_checks_pass(lbd, servers):
    a = servers("a")
    check = 'type = "http"; interval = "300ms"; timeout = "250ms"; rise = 3; start_down = true;'
    lbd.start(conf(upstream("web", [a], check)))
    first = get(lbd.address)
    lbd.wait_log(up_line(a, 3))
    assert first == (503, None)
    assert get(lbd.address) == (200, "a")
    # the first request it saw came after three checks
    n = next(i for i, r in enumerate(a.requests) if not is_check(r))
    assert n >= 3 and all(is_check(r) for r in a.requests[:n])


# One prober ------------------------------------------------------------------------------

def test_one_prober_checks_each_server_once_per_interval_whatever_the_workers(lbd, servers):
    backs = [servers(f"s{i}") for i in range(3)]
    lbd.start(conf(upstream("web", backs, f'type = "http"; {FAST}'), workers=4))
    assert len(lbd.workers()) == 4
    prober = the_prober(lbd)
    assert lbd.helpers("health prober") == [prober]
    for s in backs:
        s.wait_checks(2)
    start = time.monotonic()
    time.sleep(4.0)                 # 20 intervals
    end = time.monotonic()
    counts = [sum(1 for t in s.check_times if start <= t < end) for s in backs]
    assert all(18 <= n <= 22 for n in counts), counts
    assert lbd.helpers(PROBER) == [prober]


def test_killed_prober_is_respawned_and_the_verdicts_and_checks_go_on(lbd, servers):
    a, b = servers("a"), servers("b", status=500)
    check = f'type = "http"; {FAST} fall = 2; rise = 1;'
    lbd.start(conf(upstream("web", [a, b], check), workers=2))
    lbd.wait_log(down_line(b, "http status 500", 2))
    old = the_prober(lbd)
    os.kill(old, signal.SIGKILL)
    new = wait_until(lambda: (lambda p: p[0] if p and p[0] != old else None)(
        lbd.helpers(PROBER)), 10, what="a new health prober")
    lbd.wait_log(log_line("error", rf"health prober {old} exited on signal 9"))
    t = time.monotonic()
    wait_until(lambda: len(a.checks_since(t)) >= 3 and len(b.checks_since(t)) >= 3, 10,
               what="checks by the new prober")
    assert lbd.helpers(PROBER) == [new]
    # the new prober went on from the verdict: b never came back meanwhile
    assert {get(lbd.address) for _ in range(6)} == {(200, "a")}
    assert not b.traffic()
    assert len(re.findall(down_line(b, ".*", 2), lbd.error_log(), re.M)) == 1


def test_a_prober_out_of_descriptors_takes_no_server_down(lbd, servers):
    a = servers("a")
    # a new connection per check: a kept one would need no new descriptor
    lbd.start(conf(upstream("web", [a], f'type = "http"; {FAST} fall = 1; '
                                        'keepalive_time = "0s";')))
    a.wait_checks(2)
    prober = the_prober(lbd)
    old = helpers.squeeze(prober, 0)
    try:
        lbd.wait_log(log_line("error", r"health prober: no connection for the check of server "
                              rf'{re.escape(a.address)} in upstream "web"; not counted '
                              r"against it \(24: Too many open files\)"))
        time.sleep(0.5)         # fall = 1: a check counted as failed would show at once
        missed = a.checks
    finally:
        helpers.unsqueeze(prober, old)
    a.wait_checks(missed + 2)
    assert never_down(lbd, a)
    assert get(lbd.address) == (200, "a")


def nofile_soft_limit(pid):
    with open(f"/proc/{pid}/limits") as f:
        line = next(x for x in f if x.startswith("Max open files"))
    return int(line.split()[3])


def test_the_prober_raises_its_descriptor_limit_to_its_servers(lbd):
    # 2 x 1000 servers nobody listens on, checked once a day: none in the test
    ups = [upstream(f"u{u}", [f"127.0.{u + 1}.1:{1000 + i}" for i in range(1000)],
                    'interval = "1d";') for u in range(2)]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 1024), hard))    # lbd inherits it
    try:
        lbd.start(conf(*ups, target="u0"))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    # worker_rlimit_nofile's default raises every process to the hard limit;
    # the prober needs at least one descriptor per server and some
    assert nofile_soft_limit(lbd.master_pid) == hard
    assert nofile_soft_limit(the_prober(lbd)) >= min(2064, hard)


# Reload -----------------------------------------------------------------------------

def test_reload_keeps_a_down_verdict_and_dropping_the_check_frees_the_server(lbd, servers):
    a, b = servers("a"), servers("b", status=500)
    check = f'type = "http"; {FAST} fall = 2; rise = 1;'
    lbd.start(conf(upstream("web", [a, b], check)))
    lbd.wait_log(down_line(b, "http status 500", 2))
    old = the_prober(lbd)
    out = lbd.reload(conf(upstream("web", [a, b], check.replace("200ms", "250ms"))))
    assert (out.returncode, out.stderr) == (0, "")
    wait_until(lambda: (lambda p: p and p[0] != old)(lbd.helpers(PROBER)), 10,
               what="the new generation's prober")
    t = time.monotonic()
    b.wait_checks(len(b.check_times) + 3)
    assert min(b.checks_since(t)) >= t
    # still down: no traffic, no second "down" line, never up
    assert {get(lbd.address) for _ in range(6)} == {(200, "a")}
    assert not b.traffic()
    assert len(re.findall(down_line(b, ".*", 2), lbd.error_log(), re.M)) == 1
    assert f"server {b.address} in upstream \"web\" is up" not in lbd.error_log()
    out = lbd.reload(conf(upstream("web", [a, b], None)))
    assert (out.returncode, out.stderr) == (0, "")
    lbd.wait_log(log_line("notice", rf'server {re.escape(b.address)} in upstream "web" is up: '
                          "it has no health check any more"))
    wait_until(lambda: not lbd.helpers(PROBER), 10, what="the prober to go")
    assert (500, "b") in {get(lbd.address) for _ in range(6)}


def health_conf(settings):
    """A file with one upstream whose health_check holds `settings`, one per
    line, so that an error's line names the setting."""
    return ("upstreams = {\n  web = {\n"
            '    servers = ( { address = "127.0.0.1:9001"; } );\n'
            "    health_check = {\n"
            + "".join(f"      {s}\n" for s in settings)
            + "    };\n  };\n};\n")


# (id, settings, the line holding this, message)
CONFIG_ERRORS = [
    ("unknown_setting", ['type = "http";', 'intervall = "2s";'], "intervall",
     'unknown setting "intervall" in "health_check" of upstream "web" '
     '(did you mean "interval"?)'),
    ("path_with_udp", ['type = "udp";', 'send = "ping";', 'path = "/";'], "path",
     '"path" is for health checks of type "http"; this one is "udp"'),
    ("expect_with_http", ['type = "http";', 'expect = "ok";'], "expect",
     '"expect" is for health checks of type "udp"; this one is "http"'),
    ("bad_expect_status", ['type = "http";', 'expect_status = "2xx-3xx";'], "expect_status",
     'expect_status "2xx-3xx": expected a status ("200"), a class ("2xx") or a range '
     '("200-399")'),
    ("bad_regex", ['type = "http";', 'expect_body = "(ok";'], "expect_body", None),
    ("udp_without_send", ['type = "udp";', 'expect = "ok";'], "health_check",
     'a udp health check needs "send" (or "send_hex"): the datagram a server must answer'),
    ("unknown_type", ['type = "icmp";'], "type", None),
    ("interval_too_short", ['interval = "50ms";'], "interval",
     '"interval" must be between 100ms and 86400000ms, got 50ms'),
    ("bad_send_hex", ['type = "udp";', 'send_hex = "0g";'], "send_hex",
     'health_check send_hex: "0g" is not a hex byte'),
]


@pytest.mark.parametrize("settings,needle,message", [c[1:] for c in CONFIG_ERRORS],
                         ids=[c[0] for c in CONFIG_ERRORS])
def test_config_errors_are_one_file_line_message(tmp_path, settings, needle, message):
    path = tmp_path / "lbd.conf"
    path.write_text(health_conf(settings))
    out = helpers.lbd_test(path)
    line = next(n for n, text in enumerate(health_conf(settings).splitlines(), 1)
                if needle + " =" in text)
    assert (out.returncode, out.stdout) == (1, "")
    m = re.fullmatch(rf"{re.escape(str(path))}:(\d+): (.*)\n", out.stderr)
    assert m and int(m.group(1)) == line, out.stderr
    if message:
        assert m.group(2) == message
    else:
        assert needle in m.group(2)


# Bad check servers ---------------------------------------------------------------------

def hang(conn, backend):
    """Reads the check, never answers; records when it came."""
    backend.record(time.monotonic())
    read_head(conn)
    helpers.recv_all(conn)


def reset_after_request(conn, backend):
    read_head(conn)
    helpers.reset(conn)


def garbage(conn, backend):
    read_head(conn)
    conn.sendall(b"\x00\xff not http at all\r\n\r\n")


def drip(conn, backend):
    """A 200 head announcing a gigabyte, then a byte every 20ms."""
    read_head(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
    while not backend._stopping.is_set():
        conn.sendall(b"o")
        time.sleep(0.02)


def flood(conn, backend):
    """A 200 head, then up to 100 MB as fast as the client takes them."""
    read_head(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 104857600\r\n\r\n")
    block = b"x" * 65536
    for _ in range(1600):
        if backend._stopping.is_set():
            break
        conn.sendall(block)


def test_bad_check_servers_are_down_and_never_hold_up_the_others(lbd, servers, backend):
    good = servers("good", body="ok\n")
    bad = {"hang": (backend(hang, "hang"), "timed out"),
           "reset": (backend(reset_after_request, "reset"),
                     r"read failed \(Connection reset by peer\)"),
           "garbage": (backend(garbage, "garbage"), "invalid http status line"),
           "drip": (backend(drip, "drip"), "timed out"),
           "flood": (backend(flood, "flood"), "body does not match expect_body")}
    check = ('type = "http"; expect_body = "^ok"; interval = "400ms"; timeout = "250ms"; '
             "fall = 2;")
    lbd.start(conf(upstream("web", [good] + [s for s, _ in bad.values()], check)))
    for s, why in bad.values():
        lbd.wait_log(down_line(s, why, 2))
    t = time.monotonic()
    wait_until(lambda: len(good.checks_since(t)) >= 5, 10, what="checks on good")
    # the good server's checks came on time all along: none waited for a bad one
    gaps = [y - x for x, y in zip(good.check_times, good.check_times[1:])]
    assert max(gaps) < 2 * 0.4, gaps
    assert never_down(lbd, good)
    # each check of the hanging server ended at its timeout, and the next
    # came an interval after it began, not an interval after it ended
    hung = bad["hang"][0]
    assert hung.max_active <= 2
    gaps = [y - x for x, y in zip(hung.records, hung.records[1:])]
    assert len(gaps) >= 3 and sum(gaps) / len(gaps) < 0.4 + 0.1, gaps
