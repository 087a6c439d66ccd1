"""The udp listener (SPEC §3.3): each client address gets a session bound to
one server; replies come back from the listener's address; `responses` and
`session_timeout` end sessions; datagrams are never merged or split; a flood
of source addresses is bounded by `max_sessions`; a server that sends ICMP
unreachable or leaves a query unanswered is left out (passive health) for
the next server or the backup, and used again once it answers a trial."""

import os
import re
import shutil
import socket
import struct
import threading
import time

import pytest

import helpers
from helpers import wait_until

DNS_ANSWER = "192.0.2.53"


# UDP backends and clients ---------------------------------------------------

class UdpBackend:
    """A UDP server on 127.0.0.1 in a thread: `reply(data, addr)` returns
    the datagram to send back (or None). Every datagram received is kept
    in `received` as (source address, bytes). `port`: bind that port (to
    bring a stopped backend back at its address)."""

    def __init__(self, reply, name="udp", port=0):
        self.reply = reply
        self.name = name
        self.received = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self._sock.bind(("127.0.0.1", port))
        self._sock.settimeout(0.05)
        self.port = self._sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._loop, daemon=True, name=name)
        self._thread.start()

    def _loop(self):
        while not self._stop.is_set():
            try:
                data, addr = self._sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            with self._lock:
                self.received.append((addr, data))
            answer = self.reply(data, addr)
            if answer is not None:
                try:
                    self._sock.sendto(answer, addr)
                except OSError:
                    pass

    def sources(self):
        """The distinct source ports lbd used towards this backend."""
        with self._lock:
            return {addr[1] for addr, _ in self.received}

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


def echo(data, addr):
    return data


def named(name):
    return lambda data, addr: name.encode() + b" " + data


def dns_answer(query, addr):
    """A minimal DNS responder: an A record with DNS_ANSWER for any A
    question (RFC 1035 §4.1), otherwise an empty NOERROR answer."""
    if len(query) < 12:
        return None
    qid, flags, qdcount = struct.unpack("!HHH", query[:6])
    pos = 12
    while pos < len(query) and query[pos] != 0:
        pos += query[pos] + 1
    question = query[12:pos + 5]
    qtype = struct.unpack("!H", query[pos + 1:pos + 3])[0] if pos + 3 <= len(query) else 0
    rd = flags & 0x0100
    answers = b""
    if qtype == 1:
        answers = (b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4)
                   + socket.inet_aton(DNS_ANSWER))
    header = struct.pack("!HHHHHH", qid, 0x8400 | rd, 1, 1 if answers else 0, 0, 0)
    return header + question + answers


@pytest.fixture
def udp_backend():
    started = []

    def start(reply=echo, name="udp", port=0):
        started.append(UdpBackend(reply, name, port))
        return started[-1]

    yield start
    for b in started:
        b.stop()


@pytest.fixture
def clients():
    """clients(n): n UDP sockets on 127.0.0.1, closed at teardown."""
    made = []

    def make(n, timeout=2.0):
        socks = []
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            s.settimeout(timeout)
            socks.append(s)
        made.extend(socks)
        return socks

    yield make
    for s in made:
        s.close()


def udp_sockets(port):
    """How many UDP sockets are bound to 127.0.0.1:port or *:port."""
    n = 0
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            host, p = line.split()[1].split(":")
            if int(p, 16) == port and host in ("0100007F", "00000000"):
                n += 1
    return n


def start(lbd, conf, **subst):
    """Starts lbd and waits until every worker has its UDP socket."""
    lbd.start(conf, wait=False, **subst)

    def ready():
        if not lbd.running():
            raise AssertionError(f"lbd exited: {lbd.stderr()} {lbd.error_log()}")
        return udp_sockets(lbd.port) >= lbd.nworkers and len(lbd.workers()) >= lbd.nworkers
    wait_until(ready, 15, what="lbd's udp sockets")
    return lbd


def ask(sock, address, payload):
    host, port = address.rsplit(":", 1)
    sock.sendto(payload, (host, int(port)))
    data, source = sock.recvfrom(65536)
    assert source == (host, int(port)), "the reply must come from the listener's address"
    return data


def no_reply(sock, timeout=0.5):
    sock.settimeout(timeout)
    try:
        sock.recvfrom(65536)
    except socket.timeout:
        return True
    return False


def conf(**settings):
    extra = "".join(f" {k} = {v};" for k, v in settings.items())
    return ('upstreams = { backend = { servers = ( { address = "$server"; } ); }; };\n'
            'listeners = ( { protocol = "udp"; listen = "$listen"; upstream = "backend";'
            + extra + " } );\n")


# Tests -----------------------------------------------------------------------

def test_dig_resolves_through_the_udp_listener(lbd, udp_backend):
    assert shutil.which("dig"), "dig (dnsutils) is needed"
    server = udp_backend(dns_answer, "dns")
    start(lbd, conf(responses=1), server=server)
    for n in range(1, 4):
        out = helpers.run(["dig", "@127.0.0.1", "-p", str(lbd.port), "example.test",
                           "+short", "+tries=1", "+time=2"], timeout=10)
        assert out.returncode == 0 and out.stdout.strip() == DNS_ANSWER, out
        assert len(server.received) == n


def test_fifty_clients_each_get_only_their_own_replies(lbd, udp_backend, clients):
    server = udp_backend(echo)
    start(lbd, conf(), server=server)
    socks = clients(50)
    host, port = "127.0.0.1", lbd.port
    for rnd in range(5):
        for i, s in enumerate(socks):
            s.sendto(f"client {i} round {rnd}".encode(), (host, port))
        for i, s in enumerate(socks):
            data, source = s.recvfrom(65536)
            assert (data, source) == (f"client {i} round {rnd}".encode(), (host, port))
    # one session, so one source port towards the server, per client
    assert len(server.sources()) == 50
    assert len(server.received) == 250


def test_round_robin_spreads_sessions_over_servers(lbd, udp_backend, clients):
    servers = [udp_backend(named(f"s{i}"), f"s{i}") for i in range(3)]
    start(lbd, """
        workers = 1;
        upstreams = { backend = { servers = ( { address = "$a"; }, { address = "$b"; },
                                              { address = "$c"; } ); }; };
        listeners = ( { protocol = "udp"; listen = "$listen"; upstream = "backend"; } );
        """, a=servers[0], b=servers[1], c=servers[2])
    counts = {}
    for s in clients(30):
        for _ in range(3):      # a session stays on its server
            name = ask(s, lbd.address, b"hi").split()[0].decode()
            counts.setdefault(s.getsockname()[1], set()).add(name)
    assert all(len(names) == 1 for names in counts.values())
    per_server = [sum(1 for names in counts.values() if f"s{i}" in names) for i in range(3)]
    assert per_server == [10, 10, 10]


def test_session_ends_after_session_timeout(lbd, udp_backend, clients):
    server = udp_backend(echo)
    start(lbd, conf(session_timeout='"300ms"'), server=server)
    (s,) = clients(1)
    assert ask(s, lbd.address, b"one") == b"one"
    assert ask(s, lbd.address, b"two") == b"two"
    assert len(server.sources()) == 1
    time.sleep(1.0)
    assert ask(s, lbd.address, b"three") == b"three"
    ports = [addr[1] for addr, _ in server.received]
    assert ports[0] == ports[1] != ports[2], "a new session after the idle timeout"


def test_traffic_keeps_a_session_alive(lbd, udp_backend, clients):
    server = udp_backend(echo)
    start(lbd, conf(session_timeout='"500ms"'), server=server)
    (s,) = clients(1)
    for i in range(8):          # 1.6s of traffic, never 500ms idle
        assert ask(s, lbd.address, b"%d" % i) == b"%d" % i
        time.sleep(0.2)
    assert len(server.sources()) == 1


def test_responses_1_makes_each_query_a_session(lbd, udp_backend, clients):
    server = udp_backend(echo)
    start(lbd, conf(responses=1), server=server)
    (s,) = clients(1)
    for i in range(4):
        assert ask(s, lbd.address, b"q%d" % i) == b"q%d" % i
        # the session ends with its reply: let the close happen first
        time.sleep(0.05)
    assert len(server.sources()) == 4


def test_datagrams_are_never_merged_or_split(lbd, udp_backend, clients):
    server = udp_backend(echo)
    start(lbd, conf(), server=server)
    (s,) = clients(1)
    sizes = [1, 100, 1400, 8000, 0, 65000, 1, 8000]
    for n in sizes:
        s.sendto(bytes([n % 251]) * n, ("127.0.0.1", lbd.port))
    got = []
    for _ in sizes:
        got.append(s.recvfrom(65536)[0])
    assert [len(d) for d in got] == sizes
    assert all(d == bytes([len(d) % 251]) * len(d) for d in got)
    assert [len(d) for _, d in server.received] == sizes


def worker_sockets(pid):
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                n += 1
        except OSError:
            pass
    return n


def test_a_flood_of_source_addresses_is_bounded_by_max_sessions(lbd, udp_backend, clients):
    server = udp_backend(echo)
    start(lbd, "workers = 1;\n" + conf(max_sessions=20, session_timeout='"2s"'),
          server=server)
    (worker,) = lbd.workers()
    base = worker_sockets(worker)
    first = clients(20)
    for s in first:
        assert ask(s, lbd.address, b"x") == b"x"
    flood = clients(200)
    for s in flood:
        s.sendto(b"flood", ("127.0.0.1", lbd.port))
    lbd.wait_log(helpers.log_line("warn", r'listener "udp:[^"]+": max_sessions \(20\) '
                                  r"reached; dropping datagrams from new client "
                                  r"addresses .*"))
    assert all(no_reply(s, 0.01) for s in flood[:-1]) and no_reply(flood[-1], 0.3)
    assert len(server.sources()) == 20
    assert worker_sockets(worker) <= base + 20
    # existing sessions are still served, and the warning is rate-limited
    assert ask(first[0], lbd.address, b"still") == b"still"
    assert len(re.findall("max_sessions", lbd.error_log())) <= 2
    assert lbd.workers() == [worker]
    # once sessions time out, new clients are served again
    (late,) = clients(1, timeout=1.0)
    wait_until(lambda: not no_reply_after_send(late, lbd.port), 6,
               what="a new client to be served after session_timeout")


def no_reply_after_send(sock, port):
    sock.sendto(b"late", ("127.0.0.1", port))
    return no_reply(sock, 0.3)


def test_denied_clients_datagrams_are_dropped(lbd, udp_backend, clients):
    server = udp_backend(echo)
    start(lbd, conf(deny='["127.0.0.1/32"]'), server=server)
    (s,) = clients(1)
    s.sendto(b"hello", ("127.0.0.1", lbd.port))
    assert no_reply(s, 0.5)
    assert server.received == []


def test_allowed_clients_are_served(lbd, udp_backend, clients):
    server = udp_backend(echo)
    start(lbd, conf(allow='["127.0.0.0/8"]', deny='["10.0.0.0/8"]'), server=server)
    (s,) = clients(1)
    assert ask(s, lbd.address, b"hello") == b"hello"


def test_unreachable_server_ends_the_session_and_the_next_is_served(lbd, udp_backend,
                                                                     clients):
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.bind(("127.0.0.1", 0))
    dead_address = "127.0.0.1:%d" % dead.getsockname()[1]
    dead.close()                # nobody there: ICMP port unreachable
    live = udp_backend(named("live"))
    start(lbd, """
        workers = 1;
        upstreams = { backend = { servers = ( { address = "$dead"; },
                                              { address = "$live"; } ); }; };
        listeners = ( { protocol = "udp"; listen = "$listen"; upstream = "backend"; } );
        """, dead=dead_address, live=live)
    (s,) = clients(1, timeout=0.5)

    def served():
        s.sendto(b"ping", ("127.0.0.1", lbd.port))
        try:
            return s.recvfrom(65536)[0] == b"live ping"
        except socket.timeout:
            return False
    wait_until(served, 5, what="a reply from the live server")
    lbd.wait_log(helpers.log_line("warn", r"\*\d+ client 127\.0\.0\.1:\d+: server "
                                  + re.escape(dead_address) + r' of upstream "backend" '
                                  r"failed; session ended .*Connection refused.*"))


def test_reload_ends_old_sessions_at_once_and_keeps_serving(lbd, udp_backend, clients):
    server = udp_backend(echo)
    start(lbd, conf(), server=server)       # session_timeout: 30s
    socks = clients(10)
    for i, s in enumerate(socks):
        assert ask(s, lbd.address, b"before %d" % i) == b"before %d" % i
    old = lbd.workers()
    out = lbd.reload(conf(), server=server)
    assert out.returncode == 0, out.stderr
    # the old workers' sessions end within a second of their stop, not at
    # session_timeout: their listening sockets are gone
    wait_until(lambda: not any(helpers.alive(p) for p in old), 5,
               what="the old workers to exit")
    for i, s in enumerate(socks):
        assert ask(s, lbd.address, b"after %d" % i) == b"after %d" % i
    # new sessions in the new workers: ten more source sockets (the kernel
    # may give one an old session's port again, freed since)
    assert len(server.received) >= 20 and len(server.sources()) >= 19, \
        "new sessions in the new workers"


def test_config_errors_are_reported(lbd):
    path = lbd.write_config("""
        upstreams = { dns = { servers = ( { address = "127.0.0.1:53"; } ); }; };
        listeners = ( { protocol = "udp"; listen = "$listen"; upstream = "dns";
                        responses = -1; max_sessions = 0; } );
        """)
    out = helpers.lbd_test(path)
    assert out.returncode != 0
    assert '"responses" must be between' in out.stderr
    assert '"max_sessions" must be between' in out.stderr

    path = lbd.write_config("""
        upstreams = { dns = { servers = ( { address = "127.0.0.1:53"; } ); }; };
        listeners = ( { protocol = "udp"; listen = "$listen"; upstream = "dnz"; } );
        """)
    out = helpers.lbd_test(path)
    assert out.returncode != 0 and 'did you mean "dns"' in out.stderr

    path = lbd.write_config("""
        upstreams = { dns = { servers = ( { address = "127.0.0.1:53"; } ); }; };
        listeners = ( { protocol = "udp"; listen = "unix:x.sock"; upstream = "dns"; } );
        """)
    out = helpers.lbd_test(path)
    assert out.returncode != 0 and "needs an IP address" in out.stderr


def test_a_udp_listener_refuses_accept_proxy_protocol(lbd):
    """udp is a datagram protocol by its module's declaration
    (LB_MODULE_DGRAM), not by name in the core: no PROXY header to read."""
    path = lbd.write_config("""
        upstreams = { dns = { servers = ( { address = "127.0.0.1:53"; } ); }; };
        listeners = ( { protocol = "udp"; listen = "$listen"; upstream = "dns";
                        accept_proxy_protocol = true; } );
        """)
    out = helpers.lbd_test(path)
    assert out.returncode != 0
    assert ('"accept_proxy_protocol" is for stream listeners (tcp, http, ...); '
            'a udp listener cannot read PROXY protocol headers') in out.stderr


def test_emfile_on_a_session_socket_drops_the_datagram_as_a_local_error(lbd, udp_backend,
                                                                         clients):
    """Out of descriptors, a new client's datagram is dropped with a
    rate-limited local error; the server is not blamed, and once
    descriptors are free the same client is served."""
    server = udp_backend(echo)
    start(lbd, "workers = 1;\n" + conf(), server=server)
    [worker] = lbd.workers()
    [early, *late] = clients(40)
    base = helpers.open_fds(worker)
    assert ask(early, lbd.address, b"hi") == b"hi"      # one session: one socket
    old = helpers.squeeze(worker, 0)
    try:
        for s in late:
            s.sendto(b"lost", ("127.0.0.1", lbd.port))
        assert no_reply(late[-1], 0.3)
        assert ask(early, lbd.address, b"still") == b"still"   # its session lives on
    finally:
        helpers.unsqueeze(worker, old)
    assert helpers.open_fds(worker) == base + 1
    assert all(data == b"hi" or data == b"still" for _, data in server.received)
    local = re.findall(r"^.*a local error, the server is not marked failed; datagram "
                       r"dropped \(24: Too many open files\).*$", lbd.error_log(), re.M)
    assert 1 <= len(local) <= 2, local
    assert "failed; session ended" not in lbd.error_log()
    late[0].settimeout(2.0)
    assert ask(late[0], lbd.address, b"now") == b"now"


# Passive health: failover to the other primary, then the backup -------------

def query(port, payload, timeout=0.3):
    """One DNS-like query from a fresh source port (its own session, as a
    resolver's queries are): the answering server's name, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(payload, ("127.0.0.1", port))
        try:
            data = s.recvfrom(65536)[0]
        except socket.timeout:
            return None
    name, _, echoed = data.partition(b" ")
    assert echoed == payload, "a reply to another query"
    return name.decode()


def queries(port, n, tag, interval=0.01):
    """n queries, one after the other: the list of answering servers."""
    answers = []
    for i in range(n):
        answers.append(query(port, b"%s-%d" % (tag.encode(), i)))
        time.sleep(interval)
    return answers


DNS_UPSTREAM = """
    upstreams = { dns = {$passive
      servers = ( { address = "$one"; }, { address = "$two"; },
                  { address = "$spare"; backup = true; } ); }; };
    listeners = ( { protocol = "udp"; listen = "$listen"; upstream = "dns";
                    responses = 1; session_timeout = "$session_timeout"; } );
    """


def failed_line(server, upstream, count, window):
    return helpers.log_line("warn", r"server %s in upstream \"%s\" failed %d time\(s\) in %s; "
                            r"not used for %s \(max_fails/fail_timeout\)"
                            % (re.escape(server), upstream, count, window, window))


def back_line(server, upstream):
    return helpers.log_line("notice", r'server %s in upstream "%s" answered again; '
                            r"back in use" % (re.escape(server), upstream))


def test_dead_primaries_fail_over_to_the_other_primary_then_the_backup(lbd, udp_backend):
    """conf/examples/udp-dns.conf's setup, with the default passive health
    (max_fails = 1, fail_timeout = 10s): each dead primary costs the one
    query that found it dead (ICMP unreachable), in whichever worker."""
    one, two = udp_backend(named("one"), "one"), udp_backend(named("two"), "two")
    spare = udp_backend(named("spare"), "spare")
    start(lbd, DNS_UPSTREAM, passive="", session_timeout="2s", one=one, two=two, spare=spare)
    t0 = time.monotonic()

    before = queries(lbd.port, 40, "up")
    assert set(before) == {"one", "two"}
    assert spare.received == []

    one.stop()
    one_dead = queries(lbd.port, 80, "one-dead")
    assert spare.received == [], "the backup while a primary is up"
    lost = [i for i, a in enumerate(one_dead) if a is None]
    assert len(lost) <= 2 and all(i < 5 for i in lost), one_dead
    assert set(one_dead[5:]) == {"two"}

    two.stop()
    both_dead = queries(lbd.port, 80, "both-dead")
    lost = [i for i, a in enumerate(both_dead) if a is None]
    assert len(lost) <= 2 and all(i < 5 for i in lost), both_dead
    assert set(both_dead[5:]) == {"spare"}

    after = one_dead + both_dead
    assert sum(a is not None for a in after) / len(after) >= 0.95
    assert time.monotonic() - t0 < 10, "too slow: trials after fail_timeout would blur this"
    lbd.wait_log(failed_line(one.address, "dns", 1, "10s"))
    lbd.wait_log(failed_line(two.address, "dns", 1, "10s"))
    text = lbd.error_log()
    for b in (one, two):
        assert len(re.findall(r"server %s in upstream \"dns\" failed" % re.escape(b.address),
                              text)) == 1, "one line per transition, for all workers"


def test_a_primary_that_comes_back_is_used_again_after_fail_timeout(lbd, udp_backend):
    one, two = udp_backend(named("one"), "one"), udp_backend(named("two"), "two")
    spare = udp_backend(named("spare"), "spare")
    start(lbd, DNS_UPSTREAM, passive='\n      passive = { max_fails = 1; fail_timeout = "1s"; };',
          session_timeout="2s", one=one, two=two, spare=spare)
    assert set(queries(lbd.port, 10, "up")) == {"one", "two"}

    one.stop()
    stopped = time.monotonic()
    one_dead = queries(lbd.port, 30, "one-dead")
    assert time.monotonic() - stopped < 0.9
    assert sum(a is None for a in one_dead) <= 2 and set(one_dead[5:]) == {"two"}
    lbd.wait_log(failed_line(one.address, "dns", 1, "1s"))

    # back well within fail_timeout: not used until its trial
    revived = udp_backend(named("one"), "one", port=one.port)
    answers = []
    while time.monotonic() - stopped < 4 and "one" not in answers:
        answers.append(query(lbd.port, b"back-%d" % len(answers)))
        time.sleep(0.02)
    assert "one" in answers, "the primary was not tried again after fail_timeout"
    assert 0.9 < time.monotonic() - stopped < 2.5
    assert None not in answers and set(answers[:-1]) == {"two"}
    # a success brought it back: both primaries share the queries again
    assert set(queries(lbd.port, 20, "shared")) == {"one", "two"}
    assert spare.received == []
    lbd.wait_log(back_line(one.address, "dns"))
    assert len(revived.received) >= 5


def test_a_server_that_leaves_queries_unanswered_is_left_out(lbd, udp_backend):
    """No ICMP, no reply: with responses = 1, a query still unanswered at
    session_timeout is the server's failure."""
    mute = udp_backend(lambda data, addr: None, "mute")
    two = udp_backend(named("two"), "two")
    spare = udp_backend(named("spare"), "spare")
    start(lbd, DNS_UPSTREAM, passive="", session_timeout="300ms", one=mute, two=two,
          spare=spare)
    answers = queries(lbd.port, 60, "q")
    lost = [i for i, a in enumerate(answers) if a is None]
    # the queries mute took before its first session expired are lost
    assert len(lost) <= 4 and all(i < 10 for i in lost), answers
    assert set(answers[10:]) == {"two"}
    assert len(mute.received) == len(lost)
    lbd.wait_log(failed_line(mute.address, "dns", 1, "10s"))
