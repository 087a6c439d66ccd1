"""Host-name server addresses (SPEC §3.2): a name is resolved at load and
again every resolve_interval off the workers' loops; when its addresses
change lbd follows without an operator's reload; several addresses become
several servers; a failed lookup keeps the last good addresses and says so
once; a name that does not resolve at start holds nothing up.

The names live in /etc/hosts (the system resolver reads it on every
lookup): each test adds a name of its own and removes it at the end, so
these tests need root; the backends listen on 127.0.0.2 and 127.0.0.3,
the same port, so the name's address alone tells which one answers."""

import os
import re
import socket
import threading
import time
import uuid

import pytest

import helpers
from helpers import ask_name, free_port, wait_until

HOSTS = "/etc/hosts"


@pytest.fixture
def hosts_name():
    """(name, set_addresses): a fresh name whose /etc/hosts lines
    set_addresses(*ips) rewrites in place; gone at teardown."""
    if not os.access(HOSTS, os.W_OK):
        pytest.skip("needs a writable /etc/hosts (root)")
    name = f"lbd-test-{uuid.uuid4().hex[:12]}.test"

    def set_addresses(*ips):
        with open(HOSTS) as f:
            lines = [line for line in f.read().splitlines()
                     if not line.endswith(" " + name)]
        lines += [f"{ip} {name}" for ip in ips]
        with open(HOSTS, "w") as f:         # the same file: the resolver reads it
            f.write("\n".join(lines) + "\n")

    try:
        yield name, set_addresses
    finally:
        set_addresses()


class NamedServer:
    """A TCP server on ip:port that sends its name and a newline to every
    client, then waits for it to close."""

    def __init__(self, ip, port, name):
        self.name = name
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ip, port))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.stopping = False
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with conn:
                try:
                    conn.sendall(self.name.encode() + b"\n")
                    conn.settimeout(2)
                    conn.recv(16)
                except OSError:
                    pass

    def stop(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def two_servers():
    port = free_port()
    servers = [NamedServer("127.0.0.2", port, "two"), NamedServer("127.0.0.3", port, "three")]
    try:
        yield port
    finally:
        for s in servers:
            s.stop()


CONF = """
upstreams = { db = { resolve_interval = "1s"; servers = ( { address = "$name:$port"; } ); }; };
listeners = ( { protocol = "tcp"; listen = "$listen"; upstream = "db"; } );
"""


def answer(lbd):
    """The name of the server a new connection reaches, or None when lbd
    closes it (no server)."""
    try:
        return ask_name(lbd.address, timeout=3)
    except (ConnectionError, OSError):
        return None


@pytest.mark.parametrize("foreground", [True, False])
def test_lbd_follows_a_name_whose_address_changes(lbd, hosts_name, two_servers, foreground):
    # daemonized too: the resolving thread must live in the process that stays
    name, set_addresses = hosts_name
    set_addresses("127.0.0.2")
    lbd.start(CONF, name=name, port=two_servers, foreground=foreground)
    assert {answer(lbd) for _ in range(4)} == {"two"}
    set_addresses("127.0.0.3")
    # the change is a reload: the old generation's workers accept for a
    # moment beside the new ones, until they see the QUIT
    wait_until(lambda: {answer(lbd) for _ in range(4)} == {"three"}, 20,
               what="the new address in use by every worker")
    lbd.wait_log(helpers.log_line("notice", r"server name %s:%d now resolves to 1 address\(es\), "
                                  r"127\.0\.0\.3:%d" % (re.escape(name), two_servers,
                                                         two_servers)))
    lbd.wait_log(helpers.log_line("notice", "server addresses changed; reloading the "
                                  "configuration"))


def test_several_addresses_are_several_servers(lbd, hosts_name, two_servers):
    name, set_addresses = hosts_name
    set_addresses("127.0.0.2", "127.0.0.3")
    lbd.start(CONF, name=name, port=two_servers)
    assert {answer(lbd) for _ in range(12)} == {"two", "three"}


def test_a_failed_lookup_keeps_the_last_good_addresses(lbd, hosts_name, two_servers):
    name, set_addresses = hosts_name
    set_addresses("127.0.0.2")
    lbd.start(CONF, name=name, port=two_servers)
    assert answer(lbd) == "two"
    set_addresses()                                 # the name is gone
    lbd.wait_log(helpers.log_line("warn", r"cannot resolve server name %s:%d: .*; keeping the "
                                  r"addresses it had" % (re.escape(name), two_servers)),
                 timeout=20)
    time.sleep(2.5)                                 # more failed rounds: no more lines
    assert {answer(lbd) for _ in range(4)} == {"two"}
    assert len(re.findall("cannot resolve server name", lbd.error_log())) == 1
    set_addresses("127.0.0.2")
    lbd.wait_log(helpers.log_line("notice", r"server name %s:%d resolves again"
                                  % (re.escape(name), two_servers)), timeout=20)


def test_a_name_that_does_not_resolve_at_start_holds_nothing_up(lbd, hosts_name,
                                                                  two_servers):
    name, set_addresses = hosts_name
    started = time.monotonic()
    lbd.start(CONF, name=name, port=two_servers)
    assert time.monotonic() - started < 10
    assert answer(lbd) is None                      # no server yet: closed
    lbd.wait_log(helpers.log_line("error", r".*no usable server in upstream \"db\" \(no "
                                  r"server: its names do not resolve yet\).*"))
    set_addresses("127.0.0.3")
    wait_until(lambda: answer(lbd) == "three", 30, what="the name to resolve and be used")


def test_host_name_syntax_is_checked(lbd):
    for address, ok in (("app.internal:8080", True), ("app_internal:8080", False),
                        ("app.internal", False), ("app.internal:0", False),
                        ("app.internal:70000", False)):
        conf = lbd.write_config(f"""
            upstreams = {{ db = {{ servers = ( {{ address = "{address}"; }} ); }}; }};
            listeners = ( {{ protocol = "tcp"; listen = "$listen"; upstream = "db"; }} );""")
        out = helpers.lbd_test(conf)
        assert (out.returncode == 0) == ok, (address, out.stderr)


def test_a_huge_answer_is_cut_to_32_addresses(lbd, hosts_name, two_servers):
    name, set_addresses = hosts_name
    # 127.0.0.2 sorts first of them all: it is among the 32 kept
    set_addresses(*["127.0.0.2"] + [f"127.0.1.{i}" for i in range(1, 40)])
    lbd.start(CONF, name=name, port=two_servers)
    lbd.wait_log(helpers.log_line("warn", r"server name %s:%d resolves to more than 32 "
                                  r"addresses; 8 ignored" % (re.escape(name), two_servers)))
    # the other addresses refuse: passive health leaves them out, two serves
    wait_until(lambda: answer(lbd) == "two", 20, what="a connection to 127.0.0.2")
