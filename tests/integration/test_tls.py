"""TLS (SPEC §3.2 upstream `tls`, §3.3 `tls` and `https` listeners):
certificates chosen by SNI, the policies and their overrides, session
resumption across workers (tickets) and within one (the session cache),
client certificates, https in front of an HTTP backend, tls listeners in
front of a TCP backend, TLS to http upstreams, configuration errors and
hostile handshakes. Every certificate is made here by the openssl command
line, in a directory of the test session; clients are Python's ssl module
and, where a real command-line client is the natural one, openssl s_client."""

import hashlib
import http.client
import os
import re
import select
import socket
import ssl
import struct
import subprocess
import time
import warnings

import pytest

import helpers
from helpers import connect
from http_backend import Behaviour, RecordingBackend

BIG = 20 << 20
ECHO_BIG = 5 << 20
ANSWER = "$$ssl_client_verify $$ssl_protocol $$sni $$scheme"
V10, V11, V12, V13 = (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1,
                      ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)


# Certificates ------------------------------------------------------------------

def openssl(*args, cwd=None):
    out = subprocess.run(["openssl", *[str(a) for a in args]], capture_output=True,
                         text=True, timeout=60, cwd=cwd)
    if out.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(map(str, args))}: {out.stderr}")
    return out.stdout


class Pki:
    """Two CAs and leaf certificates signed by them, as PEM files in dir."""

    def __init__(self, directory):
        self.dir = str(directory)

    def path(self, name):
        return os.path.join(self.dir, name)

    def ca(self, name):
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", self.path(name + ".key"), "-out", self.path(name + ".crt"),
                "-days", "30", "-subj", f"/CN={name}")
        return self.path(name + ".crt")

    def leaf(self, name, ca, cn, sans=(), client=False, rsa=False):
        key, csr, ext = (self.path(name + s) for s in (".key", ".csr", ".ext"))
        newkey = (["rsa:2048"] if rsa else
                  ["ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
        openssl("req", "-new", "-newkey", *newkey, "-nodes", "-keyout", key, "-out", csr,
                "-subj", f"/CN={cn}")
        lines = ["basicConstraints=critical,CA:FALSE",
                 "extendedKeyUsage=" + ("clientAuth" if client else "serverAuth")]
        if sans:
            lines.append("subjectAltName=" + ",".join(f"DNS:{s}" for s in sans))
        with open(ext, "w") as f:
            f.write("\n".join(lines) + "\n")
        openssl("x509", "-req", "-in", csr, "-CA", self.path(ca + ".crt"),
                "-CAkey", self.path(ca + ".key"), "-CAcreateserial", "-days", "30",
                "-extfile", ext, "-out", self.path(name + ".crt"))
        return self.path(name + ".crt"), key

    def expired(self, name, ca):
        """A certificate valid for one day of 2020 only (openssl ca takes the
        dates as given)."""
        key, csr = self.path(name + ".key"), self.path(name + ".csr")
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN={name}.example.com")
        db = self.path("ca-db")
        os.makedirs(db, exist_ok=True)
        open(os.path.join(db, "index.txt"), "w").close()
        with open(os.path.join(db, "serial"), "w") as f:
            f.write("01\n")
        with open(os.path.join(db, "ca.cnf"), "w") as f:
            f.write("[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nnew_certs_dir = .\n"
                    "serial = serial\ndefault_md = sha256\npolicy = p\n"
                    "[p]\ncommonName = supplied\n")
        openssl("ca", "-batch", "-config", "ca.cnf", "-keyfile", self.path(ca + ".key"),
                "-cert", self.path(ca + ".crt"), "-in", csr, "-out", self.path(name + ".crt"),
                "-startdate", "20200101000000Z", "-enddate", "20200102000000Z", cwd=db)
        return self.path(name + ".crt"), key


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    p = Pki(tmp_path_factory.mktemp("pki"))
    p.ca("ca")
    p.ca("otherca")
    p.leaf("default", "ca", "default.example.com", ["default.example.com"])
    p.leaf("a", "ca", "a.example.com", ["a.example.com", "alias.example.net"])
    p.leaf("wild", "ca", "wild.w.example.com", ["*.w.example.com"])
    p.leaf("backend", "ca", "backend.test", ["backend.test"])
    p.leaf("client", "ca", "good client", client=True)
    p.leaf("stranger", "otherca", "other client", client=True)
    return p


# Configurations ------------------------------------------------------------------
# For Lbd.config (string.Template): $listen is lbd's port, $$ a literal $.

def tls_group(pki, certs=("default", "a", "wild"), extra=""):
    entries = ", ".join(f'{{ cert = "{pki.path(c + ".crt")}"; key = "{pki.path(c + ".key")}"; }}'
                        for c in certs)
    return f"tls = {{ certificates = ( {entries} ); {extra} }};"


def one_upstream(name, address, extra=""):
    return f'{name} = {{ servers = ( {{ address = "{address}"; }} ); {extra} }};'


def https_conf(pki, extra="", workers=1, certs=("default", "a", "wild"),
               routes=None, upstreams=""):
    routes = routes or f'{{ return = {{ status = 200; body = "{ANSWER}\\n"; }}; }}'
    return (f"workers = {workers};\n"
            + (f"upstreams = {{ {upstreams} }};\n" if upstreams else "")
            + 'listeners = ( { protocol = "https"; listen = "$listen"; name = "secure";\n  '
            + tls_group(pki, certs, extra) + f"\n  routes = ( {routes} );\n}} );\n")


# Clients ---------------------------------------------------------------------------

def client_ctx(pki, version=None, ciphers=None, cert=None, verify=True):
    """A client context trusting the test CA (names unchecked, so that the
    certificate lbd chose can be inspected whatever it names)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    if verify:
        ctx.load_verify_locations(pki.path("ca.crt"))
    else:
        ctx.verify_mode = ssl.CERT_NONE
    if version is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = version
            ctx.maximum_version = version
    if ciphers or version in (V10, V11):
        # TLS 1.0 and 1.1 sign with SHA-1: only at security level 0
        ctx.set_ciphers((ciphers or "DEFAULT") + ":@SECLEVEL=0")
    if cert:
        ctx.load_cert_chain(pki.path(cert + ".crt"), pki.path(cert + ".key"))
    return ctx


def tls_connect(address, ctx, sni=None, session=None):
    raw = connect(address)
    try:
        return ctx.wrap_socket(raw, server_hostname=sni, session=session)
    except BaseException:
        raw.close()
        raise


def read_to_eof(s, limit=1 << 26):
    data = b""
    while len(data) <= limit:
        try:
            chunk = s.recv(65536)
        except ssl.SSLZeroReturnError:
            break
        if not chunk:
            break
        data += chunk
    return data


def get(s, path="/", host="t.test"):
    """One request with Connection: close on a TLS socket: (status, body)."""
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    data = read_to_eof(s)
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else None
    return status, body.decode(errors="replace")


def answer(address, ctx, sni=None):
    """The body of lbd's return route ($ssl_client_verify $ssl_protocol $sni
    $scheme), split; raises when the handshake or the request fails."""
    with tls_connect(address, ctx, sni) as s:
        status, body = get(s)
    assert status == 200, body
    return body.split()


def subject_cn(s):
    cert = s.getpeercert()
    return dict(x[0] for x in cert["subject"])["commonName"]


def refused(address, ctx, sni=None):
    """True when the handshake fails or the connection dies before an answer
    (a TLS 1.3 server refuses a client certificate after the client's
    handshake is done: the alert comes with the first read)."""
    try:
        with tls_connect(address, ctx, sni) as s:
            status, _ = get(s)
    except (ssl.SSLError, OSError):
        return True
    return status is None


def until_closed(s, timeout):
    """What the peer sends before it closes the connection (b"" after a
    reset); socket.timeout when it keeps it open for timeout seconds."""
    s.settimeout(timeout)
    try:
        return helpers.recv_all(s)
    except ConnectionResetError:
        return b""


def assert_serving(lbd, pki):
    """lbd still completes handshakes and answers."""
    assert lbd.running()
    assert answer(lbd.address, client_ctx(pki), "a.example.com")[-1] == "https"


def serving_worker(lbd, s):
    """The pid of the worker that holds the server side of connection s,
    found through the socket's inode (/proc/net/tcp, /proc/PID/fd)."""
    client_port = s.getsockname()[1]
    inode = None
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, remote = fields[1].split(":"), fields[2].split(":")
            if int(local[1], 16) == lbd.port and int(remote[1], 16) == client_port:
                inode = fields[9]
    assert inode, "the connection is not in /proc/net/tcp"
    for pid in lbd.workers():
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return pid
            except OSError:
                pass
    raise AssertionError("no worker holds the connection")


# SNI -------------------------------------------------------------------------------

@pytest.mark.parametrize("sni,expect", [
    ("a.example.com", "a.example.com"),
    ("A.Example.COM", "a.example.com"),             # names are case-insensitive
    ("alias.example.net", "a.example.com"),         # a second SAN name
    ("x.w.example.com", "wild.w.example.com"),      # wildcard
    ("w.example.com", "default.example.com"),       # * is one label, not none
    ("y.x.w.example.com", "default.example.com"),   # ... nor two
    ("unknown.example.org", "default.example.com"),
    (None, "default.example.com"),
])
def test_sni_picks_the_certificate_naming_the_server_else_the_first(lbd, pki, sni, expect):
    lbd.start(https_conf(pki))
    with tls_connect(lbd.address, client_ctx(pki), sni) as s:
        assert subject_cn(s) == expect
        status, body = get(s)
    assert status == 200
    assert body == f"NONE TLSv1.3 {sni or ''} https\n"


def test_sni_with_openssl_s_client(lbd, pki):
    lbd.start(https_conf(pki))
    for name, cn in (("zz.w.example.com", "wild.w.example.com"),
                     ("a.example.com", "a.example.com"), ("b.example.com", "default.example.com")):
        out = subprocess.run(["openssl", "s_client", "-connect", lbd.address, "-servername", name,
                              "-CAfile", pki.path("ca.crt"), "-verify_return_error"],
                             input="", capture_output=True, text=True, timeout=20)
        assert re.search(rf"^subject=CN ?= ?{re.escape(cn)}$", out.stdout, re.M), out.stdout
        assert "Verify return code: 0 (ok)" in out.stdout


# Policies ------------------------------------------------------------------------

@pytest.mark.parametrize("policy,accepted", [
    ("modern", {V13}),
    ("intermediate", {V12, V13}),
    ("legacy", {V10, V11, V12, V13}),
])
def test_policy_accepts_exactly_its_versions(lbd, pki, policy, accepted):
    lbd.start(https_conf(pki, f'policy = "{policy}";'))
    names = {V10: "TLSv1", V11: "TLSv1.1", V12: "TLSv1.2", V13: "TLSv1.3"}
    for version in (V10, V11, V12, V13):
        ctx = client_ctx(pki, version)
        if version in accepted:
            verify, protocol, sni, scheme = answer(lbd.address, ctx, "a.example.com")
            assert (verify, protocol, sni, scheme) == ("NONE", names[version], "a.example.com",
                                                       "https")
        else:
            assert refused(lbd.address, ctx, "a.example.com"), f"{policy} took {version}"
    if len(accepted) < 4:
        lbd.wait_log(r"TLS handshake failed: .*(unsupported protocol|no protocols available|"
                     r"wrong version number|version too low)")
    assert_serving(lbd, pki)


def test_intermediate_refuses_cbc_suites_legacy_takes_them(lbd_factory, pki):
    cbc = client_ctx(pki, V12, "ECDHE-ECDSA-AES128-SHA")
    inter = lbd_factory("inter").start(https_conf(pki, 'policy = "intermediate";'))
    assert refused(inter.address, cbc)
    legacy = lbd_factory("legacy").start(https_conf(pki, 'policy = "legacy";'))
    with tls_connect(legacy.address, cbc) as s:
        assert s.cipher()[0] == "ECDHE-ECDSA-AES128-SHA"
        assert get(s)[0] == 200


@pytest.mark.parametrize("protocols,accepted", [
    ('["TLSv1.2"]', {V12}),
    ('["TLSv1.3"]', {V13}),
    ('["TLSv1.2", "TLSv1.3"]', {V12, V13}),
])
def test_protocols_override_the_policy(lbd, pki, protocols, accepted):
    lbd.start(https_conf(pki, f'policy = "legacy"; protocols = {protocols};'))
    for version in (V10, V11, V12, V13):
        ctx = client_ctx(pki, version)
        if version in accepted:
            assert answer(lbd.address, ctx)[1] in ("TLSv1.2", "TLSv1.3")
        else:
            assert refused(lbd.address, ctx), f"{protocols} took {version}"
    assert_serving(lbd, pki)


def test_ciphers_override_limits_tls12_suites(lbd, pki):
    lbd.start(https_conf(pki, 'ciphers = "ECDHE-ECDSA-AES256-GCM-SHA384";',
                         routes='{ return = { status = 200; body = "$$ssl_cipher\\n"; }; }'))
    assert refused(lbd.address, client_ctx(pki, V12, "ECDHE-ECDSA-AES128-GCM-SHA256"))
    assert refused(lbd.address, client_ctx(pki, V12, "ECDHE-ECDSA-CHACHA20-POLY1305"))
    with tls_connect(lbd.address, client_ctx(pki, V12)) as s:
        assert s.cipher()[0] == "ECDHE-ECDSA-AES256-GCM-SHA384"
        assert get(s) == (200, "ECDHE-ECDSA-AES256-GCM-SHA384\n")
    # TLS 1.3 suites are not the list's business
    with tls_connect(lbd.address, client_ctx(pki, V13)) as s:
        assert s.version() == "TLSv1.3"
        assert get(s)[0] == 200


# Resumption ------------------------------------------------------------------------

def first_session(address, ctx):
    with tls_connect(address, ctx, "a.example.com") as s:
        assert get(s)[0] == 200         # a TLS 1.3 ticket comes after the handshake
        assert not s.session_reused
        return s.session


def resume_on_every_worker(lbd, pki, version):
    ctx = client_ctx(pki, version)
    session = first_session(lbd.address, ctx)
    assert session.has_ticket
    workers, pids = set(lbd.workers()), []
    for _ in range(80):
        with tls_connect(lbd.address, ctx, "a.example.com", session) as s:
            pids.append(serving_worker(lbd, s))
            assert s.session_reused, f"connection {len(pids)} made a full handshake"
            assert get(s)[0] == 200
        if len(pids) >= 10 and set(pids) == workers:
            break
    assert set(pids) == workers, f"only {set(pids)} of {workers} served {len(pids)} connections"


def test_tls13_tickets_resume_on_every_worker(lbd, pki):
    lbd.start(https_conf(pki, workers=2))
    resume_on_every_worker(lbd, pki, V13)


def test_tls12_tickets_resume_on_every_worker(lbd, pki):
    lbd.start(https_conf(pki, workers=2))
    resume_on_every_worker(lbd, pki, V12)


def test_tls12_without_tickets_resumes_from_the_session_cache(lbd, pki):
    lbd.start(https_conf(pki, "session_tickets = false;", workers=1))
    ctx = client_ctx(pki, V12)
    session = first_session(lbd.address, ctx)
    assert not session.has_ticket and session.id
    for _ in range(5):
        with tls_connect(lbd.address, ctx, "a.example.com", session) as s:
            assert s.session_reused
            assert get(s)[0] == 200


def test_tls13_without_tickets_resumes_from_the_session_cache(lbd, pki):
    """Without session_tickets, TLS 1.3 tickets only name a session kept in
    the worker's cache (stateful): one worker resumes them."""
    lbd.start(https_conf(pki, "session_tickets = false;", workers=1))
    ctx = client_ctx(pki, V13)
    session = first_session(lbd.address, ctx)
    for _ in range(3):
        with tls_connect(lbd.address, ctx, "a.example.com", session) as s:
            assert get(s)[0] == 200
            assert s.session_reused
            session = s.session             # such a ticket is good for one use


def test_tickets_survive_a_reload(lbd, pki):
    """The ticket secret belongs to the master: the workers a reload starts
    resume the old workers' tickets."""
    lbd.start(https_conf(pki, workers=1))
    ctx = client_ctx(pki, V13)
    session = first_session(lbd.address, ctx)
    [old] = lbd.workers()
    out = lbd.reload(https_conf(pki, 'policy = "modern";', workers=1))
    assert out.returncode == 0, out.stderr
    lbd.wait_workers(lambda w: w and old not in w, what="the old worker to go")
    with tls_connect(lbd.address, ctx, "a.example.com", session) as s:
        assert serving_worker(lbd, s) != old
        assert s.session_reused
        assert get(s)[0] == 200


def test_resumption_with_openssl_s_client(lbd, pki, tmp_path):
    lbd.start(https_conf(pki, workers=2))
    sess = tmp_path / "sess.pem"
    base = ["openssl", "s_client", "-connect", lbd.address, "-servername", "a.example.com",
            "-ign_eof", "-CAfile", pki.path("ca.crt")]
    req = "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    out = subprocess.run(base + ["-sess_out", str(sess)], input=req, capture_output=True,
                         text=True, timeout=20)
    assert "\nNONE TLSv1.3 a.example.com https" in out.stdout, out.stdout
    for _ in range(6):
        out = subprocess.run(base + ["-sess_in", str(sess)], input=req, capture_output=True,
                             text=True, timeout=20)
        assert re.search(r"^Reused, TLSv1.3", out.stdout, re.M), out.stdout
        assert "\nNONE TLSv1.3 a.example.com https" in out.stdout


# Client certificates ----------------------------------------------------------------

@pytest.mark.parametrize("version", [V12, V13])
def test_verify_client_on_wants_a_certificate_from_client_ca(lbd, pki, version):
    lbd.start(https_conf(pki, f'client_ca = "{pki.path("ca.crt")}"; verify_client = "on";'))
    assert refused(lbd.address, client_ctx(pki, version), "a.example.com")
    assert refused(lbd.address, client_ctx(pki, version, cert="stranger"), "a.example.com")
    proto = "TLSv1.3" if version == V13 else "TLSv1.2"
    assert answer(lbd.address, client_ctx(pki, version, cert="client"), "a.example.com") == [
        "SUCCESS", proto, "a.example.com", "https"]
    lbd.wait_log(r"TLS handshake failed")
    assert lbd.running()


def test_verify_client_optional_takes_no_certificate_or_a_good_one(lbd, pki):
    lbd.start(https_conf(pki, f'client_ca = "{pki.path("ca.crt")}"; '
                              'verify_client = "optional";'))
    assert answer(lbd.address, client_ctx(pki), "a.example.com") == [
        "NONE", "TLSv1.3", "a.example.com", "https"]
    assert answer(lbd.address, client_ctx(pki, cert="client"), "x.w.example.com") == [
        "SUCCESS", "TLSv1.3", "x.w.example.com", "https"]
    assert answer(lbd.address, client_ctx(pki, V12, cert="client")) == [
        "SUCCESS", "TLSv1.2", "https"]


def test_without_verify_client_no_certificate_is_asked(lbd, pki):
    lbd.start(https_conf(pki))
    assert answer(lbd.address, client_ctx(pki, cert="stranger"))[0] == "NONE"


# https in front of an HTTP backend ------------------------------------------------------

def proxied(req):
    if req.target == "/big":
        return Behaviour(big=BIG, seed=7)
    if req.method == "POST":
        return Behaviour(body=hashlib.sha256(req.body).hexdigest() + "\n")
    return Behaviour(body="%s %s\n" % (req.header("X-Forwarded-Proto"),
                                       req.header("X-Forwarded-Port")))


def test_https_proxies_to_an_http_backend(lbd, pki):
    with RecordingBackend(proxied) as b:
        lbd.start(https_conf(pki, upstreams=one_upstream("web", b.address),
                             routes='{ upstream = "web"; }'))
        conn = http.client.HTTPSConnection("127.0.0.1", lbd.port, timeout=30,
                                           context=client_ctx(pki))
        try:
            conn.request("GET", "/small")
            r = conn.getresponse()
            assert (r.status, r.read()) == (200, f"https {lbd.port}\n".encode())
            [req] = b.wait_requests(1)
            assert req.header("X-Forwarded-Proto") == "https"

            conn.request("GET", "/big")             # same keep-alive connection
            r = conn.getresponse()
            assert r.status == 200 and int(r.getheader("Content-Length")) == BIG
            h, n = hashlib.sha256(), 0
            while True:
                chunk = r.read(1 << 20)
                if not chunk:
                    break
                h.update(chunk)
                n += len(chunk)
            assert (n, h.hexdigest()) == (BIG, helpers.pattern_digest(BIG, 7))

            upload = b"".join(helpers.pattern(BIG, 9))
            conn.request("POST", "/up", body=upload)
            r = conn.getresponse()
            assert r.status == 200
            assert r.read().decode().strip() == hashlib.sha256(upload).hexdigest()
        finally:
            conn.close()
        assert b.requests[-1].header("Content-Length") == str(BIG)


def test_https_negotiates_http11_by_alpn(lbd, pki):
    lbd.start(https_conf(pki))
    ctx = client_ctx(pki)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with tls_connect(lbd.address, ctx) as s:
        assert s.selected_alpn_protocol() == "http/1.1"
        assert get(s)[0] == 200
    ctx = client_ctx(pki)
    ctx.set_alpn_protocols(["h2"])
    with tls_connect(lbd.address, ctx) as s:      # nothing in common: no ALPN
        assert s.selected_alpn_protocol() is None
        assert get(s)[0] == 200


PLAIN_HTTP_400 = (b"HTTP/1.1 400 Bad Request\r\nServer: lbd\r\nContent-Type: text/plain\r\n"
                  b"Content-Length: 50\r\nConnection: close\r\n\r\n"
                  b"400 The plain HTTP request was sent to HTTPS port\n")


def test_plain_http_to_an_https_listener_gets_a_400_in_clear(lbd, pki):
    """A plain HTTP request to an https listener gets a readable 400, as
    from nginx, and nothing of the route; TLS clients are served as ever."""
    lbd.start(https_conf(pki))
    with connect(lbd.address) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert until_closed(s, 5) == PLAIN_HTTP_400
    lbd.wait_log(r"client 127\.0\.0\.1:\d+: plain HTTP sent to the https listener "
                 r'"secure"; answering 400$')
    # the method may come in pieces; a body after the head is drained, not reset
    with connect(lbd.address) as s:
        s.sendall(b"PO")
        time.sleep(0.2)
        s.sendall(b"ST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n")
        s.sendall(b"x" * 100000)
        assert until_closed(s, 5) == PLAIN_HTTP_400
    out = subprocess.run(["curl", "-s", "-i", f"http://{lbd.address}/"], capture_output=True,
                         timeout=30)
    assert out.stdout == PLAIN_HTTP_400
    # what is neither TLS nor HTTP still fails the handshake
    with connect(lbd.address) as s:
        s.sendall(b"get / HTTP/1.1\r\n\r\n")
        assert not until_closed(s, 5).startswith(b"HTTP/")
    lbd.wait_log(r"TLS handshake failed")
    assert_serving(lbd, pki)


def test_plain_http_to_a_tls_listener_is_closed(lbd, pki, backend):
    """A tls listener relays bytes, not HTTP: no HTTP answer there."""
    lbd.start(tls_listener_conf(pki, backend(helpers.echo).address))
    with connect(lbd.address) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert not until_closed(s, 5).startswith(b"HTTP/")
    lbd.wait_log(r"TLS handshake failed")


# tls listeners ---------------------------------------------------------------------------

def tls_listener_conf(pki, backend_address, extra=""):
    return ("workers = 1;\n"
            f"upstreams = {{ {one_upstream('echo', backend_address)} }};\n"
            'listeners = ( { protocol = "tls"; listen = "$listen"; upstream = "echo";\n  '
            + tls_group(pki, extra=extra) + "\n} );\n")


def pump(s, payload, expect, timeout=60):
    """Sends payload on a TLS socket while reading; returns what was read
    once expect bytes came (or EOF). One thread, non-blocking: OpenSSL's
    connection object is not for two threads at once."""
    s.setblocking(False)
    view, sent, got = memoryview(payload), 0, bytearray()
    deadline = time.monotonic() + timeout
    while len(got) < expect:
        assert time.monotonic() < deadline, f"sent {sent}, read {len(got)} of {expect}"
        want_write = sent < len(payload)
        r, w, _ = select.select([s], [s] if want_write else [], [], 1.0)
        if w or (want_write and not r):
            try:
                sent += s.send(view[sent:sent + 65536])
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                pass
        while True:
            try:
                data = s.recv(1 << 18)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            if not data:
                return bytes(got)
            got += data
    return bytes(got)


def test_tls_listener_relays_to_a_plain_tcp_backend(lbd, pki, backend):
    b = backend(helpers.echo)
    lbd.start(tls_listener_conf(pki, b.address))
    with tls_connect(lbd.address, client_ctx(pki), "x.w.example.com") as s:
        assert subject_cn(s) == "wild.w.example.com"
        assert s.selected_alpn_protocol() is None
        s.sendall(b"hello\n")
        assert helpers.recv_line(s) == b"hello\n"
        payload = b"".join(helpers.pattern(ECHO_BIG, 5))
        assert hashlib.sha256(pump(s, payload, ECHO_BIG)).hexdigest() == \
            hashlib.sha256(payload).hexdigest()
    assert b.accepted == 1


def test_tls_listener_half_close_ends_the_backend_side(lbd, pki, backend):
    b = backend(helpers.sink)
    lbd.start(tls_listener_conf(pki, b.address))
    with tls_connect(lbd.address, client_ctx(pki)) as s:
        payload = b"".join(helpers.pattern(1 << 20, 3))
        s.sendall(payload)
        # a FIN without close_notify (the TLS object stays for reading):
        # lbd half-closes towards the backend, which then answers
        dup = socket.socket(fileno=os.dup(s.fileno()))
        try:
            dup.shutdown(socket.SHUT_WR)
        finally:
            dup.close()
        line = helpers.recv_line(s)
    assert line == f"{1 << 20} {hashlib.sha256(payload).hexdigest()}\n".encode()


def test_tls_listener_with_openssl_s_client(lbd, pki, backend):
    b = backend(helpers.echo)
    lbd.start(tls_listener_conf(pki, b.address))
    out = subprocess.run(["openssl", "s_client", "-quiet", "-connect", lbd.address,
                          "-servername", "a.example.com", "-CAfile", pki.path("ca.crt")],
                         input="line one\nline two\n", capture_output=True, text=True,
                         timeout=20)
    assert out.stdout == "line one\nline two\n", out.stderr


# TLS to http upstreams ---------------------------------------------------------------------

class TlsRecordingBackend(RecordingBackend):
    """A RecordingBackend that speaks HTTPS with the given server context;
    records the SNI every client sent and every failed handshake."""

    def __init__(self, ctx, **kw):
        self.ctx = ctx
        self.snis = []
        self.failed = []
        ctx.sni_callback = lambda sock, name, _ctx: self.snis.append(name)
        super().__init__(**kw)

    def _serve_http(self, conn, backend):
        try:
            conn = self.ctx.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self.failed.append(str(e))
            return
        super()._serve_http(conn, backend)


def backend_ctx(pki, cert="backend"):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.path(cert + ".crt"), pki.path(cert + ".key"))
    return ctx


def upstream_conf(pki, address, tls):
    return ("workers = 1;\n"
            f"upstreams = {{ {one_upstream('tb', address, tls)} }};\n"
            'listeners = ( { protocol = "http"; listen = "$listen";\n'
            '  routes = ( { upstream = "tb"; } ); } );\n')


def plain_get(address):
    with connect(address) as s:
        s.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = helpers.recv_all(s)
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize("tls,status,reason", [
    ('verify = true; ca = "{ca}"; sni = "backend.test";', 200, None),
    ('ca = "{ca}"; sni = "backend.test";', 200, None),                     # verify defaults on
    ('verify = true; ca = "{other}"; sni = "backend.test";', 502,
     r"certificate verify failed|unable to get local issuer|self-signed"),
    ('verify = true; ca = "{ca}"; sni = "wrong.test";', 502, r"hostname mismatch"),
    ('verify = false; ca = "{other}"; sni = "backend.test";', 200, None),
    ('verify = false;', 200, None),
], ids=["good", "verify-default", "wrong-ca", "sni-mismatch", "no-verify", "no-verify-no-sni"])
def test_upstream_tls(lbd, pki, tls, status, reason):
    tls = tls.format(ca=pki.path("ca.crt"), other=pki.path("otherca.crt"))
    with TlsRecordingBackend(backend_ctx(pki), name="tb") as b:
        lbd.start(upstream_conf(pki, b.address, f"tls = {{ {tls} }};"))
        got, body = plain_get(lbd.address)
        assert got == status, body
        if status == 200:
            assert body == b"tb\n"
            [req] = b.wait_requests(1)
            assert req.header("X-Forwarded-Proto") == "http"
            sni = re.search(r'sni = "([^"]*)"', tls)
            assert b.snis == [sni.group(1) if sni else None]
        else:
            assert not b.requests
            lbd.wait_log(r"TLS handshake failed \((%s)[^)]*\)" % reason)


def test_upstream_tls_refuses_a_plain_server(lbd, pki):
    with RecordingBackend(name="plain") as b:
        lbd.start(upstream_conf(pki, b.address, "tls = { verify = false; };"))
        assert plain_get(lbd.address)[0] == 502
        lbd.wait_log(r"TLS handshake failed")


# Configuration errors --------------------------------------------------------------------

def config_error(tmp_path, text):
    conf = tmp_path / "bad.conf"
    conf.write_text(text)
    out = helpers.lbd_test(conf)
    assert out.returncode == 1, out
    lines = out.stderr.splitlines()
    assert len(lines) >= 1
    m = re.match(rf"^{re.escape(str(conf))}:(\d+): (.*)$", lines[0])
    assert m, out.stderr
    return int(m.group(1)), m.group(2)


def line_of(text, needle):
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def listener_text(pki, cert="default", key=None, extra="", protocol="https", tls=True):
    key = key or pki.path(cert + ".key")
    crt = cert if os.path.isabs(cert) else pki.path(cert + ".crt")
    group = (f'  tls = {{\n    certificates = (\n      {{ cert = "{crt}";\n'
             f'        key = "{key}"; }}\n    );\n    {extra}\n  }};\n') if tls else ""
    return ("error_log = \"stderr\";\n"
            'listeners = ( {\n  protocol = "%s"; listen = "127.0.0.1:%d";\n%s'
            '  routes = ( { return = { status = 200; }; } );\n} );\n'
            % (protocol, helpers.free_port(), group))


def test_config_key_not_matching_the_certificate(tmp_path, pki):
    text = listener_text(pki, "default", key=pki.path("a.key"))
    line, msg = config_error(tmp_path, text)
    assert line == line_of(text, "key =")
    assert "does not match" in msg and pki.path("a.key") in msg


def test_config_expired_certificate(tmp_path, pki):
    crt, key = pki.expired("old", "ca")
    text = listener_text(pki, crt, key=key)
    line, msg = config_error(tmp_path, text)
    assert line == line_of(text, "cert =")
    assert msg == f'certificate "{crt}" has expired'


@pytest.mark.parametrize("which", ["cert", "key"])
def test_config_missing_file(tmp_path, pki, which):
    missing = str(tmp_path / "nope.pem")
    text = (listener_text(pki, missing, key=pki.path("default.key")) if which == "cert"
            else listener_text(pki, "default", key=missing))
    line, msg = config_error(tmp_path, text)
    assert line == line_of(text, f"{which} =")
    assert missing in msg and "No such file or directory" in msg


def test_config_unreadable_file(tmp_path, pki):
    if os.geteuid() == 0:
        # root reads anything: a directory is the unreadable file then
        bad = str(tmp_path)
    else:
        bad = str(tmp_path / "secret.key")
        with open(bad, "w") as f:
            f.write(open(pki.path("default.key")).read())
        os.chmod(bad, 0)
    text = listener_text(pki, "default", key=bad)
    line, msg = config_error(tmp_path, text)
    assert line == line_of(text, "key =")
    assert msg.startswith(f'cannot load private key "{bad}"')


def test_config_garbage_certificate(tmp_path, pki):
    junk = tmp_path / "junk.crt"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    text = listener_text(pki, str(junk), key=pki.path("default.key"))
    line, msg = config_error(tmp_path, text)
    assert line == line_of(text, "cert =")
    assert msg.startswith(f'cannot load certificate "{junk}"')


@pytest.mark.parametrize("protocol", ["https", "tls"])
def test_config_listener_without_tls(tmp_path, pki, protocol):
    text = listener_text(pki, tls=False, protocol=protocol)
    if protocol == "tls":
        text = text.replace("  routes = ( { return = { status = 200; }; } );\n",
                            '  upstream = "u";\n')
        text = 'upstreams = { u = { servers = ( { address = "127.0.0.1:9"; } ); }; };\n' + text
    line, msg = config_error(tmp_path, text)
    assert line == line_of(text, "listeners = ( {")        # where the listener begins
    assert f'protocol "{protocol}" needs a "tls" group' in msg


def test_config_verify_client_without_client_ca(tmp_path, pki):
    text = listener_text(pki, extra='verify_client = "on";')
    line, msg = config_error(tmp_path, text)
    assert line == line_of(text, "verify_client")
    assert "client_ca" in msg


@pytest.mark.parametrize("setting,needle,message", [
    ('policy = "paranoid";', "policy", 'invalid policy "paranoid"'),
    ('protocols = ["TLSv1.4"];', "protocols", 'invalid'),
    ('verify_client = "sometimes"; client_ca = "x";', "verify_client", 'invalid verify_client'),
    ('ciphers = "NO-SUCH-CIPHER";', "ciphers", 'no usable cipher'),
    ('session_tickets = "yes";', "session_tickets", 'must be true or false'),
    ('handshake_timeout = "soon";', "handshake_timeout", ''),
    ('certficates = ();', "certficates", 'unknown setting'),
])
def test_config_bad_settings(tmp_path, pki, setting, needle, message):
    text = listener_text(pki, extra=setting)
    line, msg = config_error(tmp_path, text)
    if needle != "ciphers":             # the whole group is at fault there
        assert line == line_of(text, needle), msg
    assert message in msg


def test_config_client_ca_missing(tmp_path, pki):
    missing = str(tmp_path / "none-ca.pem")
    text = listener_text(pki, extra=f'client_ca = "{missing}"; verify_client = "on";')
    line, msg = config_error(tmp_path, text)
    assert line == line_of(text, "client_ca")
    assert missing in msg


def test_config_upstream_ca_missing(tmp_path, pki):
    missing = str(tmp_path / "none-ca.pem")
    text = upstream_conf(pki, "127.0.0.1:9", f'tls = {{ ca = "{missing}"; }};').replace(
        "$listen", f"127.0.0.1:{helpers.free_port()}")
    text = 'error_log = "stderr";\n' + text
    line, msg = config_error(tmp_path, text)
    assert line == line_of(text, "none-ca.pem")
    assert missing in msg


def test_config_good_tls_is_ok(tmp_path, pki):
    conf = tmp_path / "good.conf"
    conf.write_text(listener_text(pki, extra=f'client_ca = "{pki.path("ca.crt")}"; '
                                             'verify_client = "optional"; policy = "modern";'))
    out = helpers.lbd_test(conf)
    assert (out.returncode, out.stderr) == (0, "")


# Hostile clients ---------------------------------------------------------------------------

def client_hello(pki, sni="a.example.com"):
    """The bytes of a real ClientHello, made through memory BIOs."""
    ctx = client_ctx(pki)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def wait_handshake_log(lbd, message_regex):
    """Waits for lbd's info line about a client's failed handshake."""
    return lbd.wait_log(helpers.log_line(
        "info", r"\*\d+ client 127\.0\.0\.1:\d+: TLS handshake " + message_regex))


def handshake_conf(pki):
    return https_conf(pki, 'handshake_timeout = "500ms";')


def test_garbage_instead_of_a_client_hello(lbd, pki):
    lbd.start(handshake_conf(pki))
    with connect(lbd.address) as s:
        # (plain HTTP gets a 400: test_plain_http_to_an_https_listener_gets_a_400_in_clear)
        s.sendall(b"SSH-2.0-OpenSSH_9.2\r\n" + b"\x00" * 300)
        data = until_closed(s, 3)
        assert data == b"" or data[:1] == b"\x15", data      # at most an alert
    wait_handshake_log(lbd, r"failed: .+")
    assert_serving(lbd, pki)


@pytest.mark.parametrize("sent", ["nothing", "half"])
def test_stalled_handshake_times_out(lbd, pki, sent):
    lbd.start(handshake_conf(pki))
    hello = client_hello(pki)
    with connect(lbd.address) as s:
        if sent == "half":
            s.sendall(hello[:len(hello) // 2])
        start = time.monotonic()
        data = until_closed(s, 5)
        took = time.monotonic() - start
    assert data == b""
    assert 0.35 <= took <= 2.0, took
    wait_handshake_log(lbd, r"timed out; closing")
    assert_serving(lbd, pki)


@pytest.mark.parametrize("how", ["close", "reset"])
def test_client_vanishing_mid_handshake(lbd, pki, how):
    lbd.start(https_conf(pki))
    hello = client_hello(pki)
    s = connect(lbd.address)
    s.sendall(hello[:len(hello) - 10])
    time.sleep(0.1)
    if how == "reset":
        helpers.reset(s)
    else:
        s.close()
    lbd.wait_log(r"TLS handshake failed: .+")
    # and after a whole ClientHello, before the client's Finished
    s = connect(lbd.address)
    s.sendall(hello)
    s.settimeout(5)
    assert s.recv(5)[:1] == b"\x16"             # the server's flight begins
    helpers.reset(s) if how == "reset" else s.close()
    time.sleep(0.2)
    assert_serving(lbd, pki)
    assert len(re.findall(r"TLS handshake failed", lbd.error_log())) >= 2


def test_oversized_record_is_refused(lbd, pki):
    lbd.start(https_conf(pki))
    with connect(lbd.address) as s:
        # a handshake record claiming 20480 bytes (the limit is 16384 + 2048)
        s.sendall(struct.pack("!BHH", 0x16, 0x0301, 20480) + b"\x01" + b"\x00" * 2000)
        data = until_closed(s, 5)
        # closed, after an alert at most
        assert data == b"" or data[:1] == b"\x15", data
    wait_handshake_log(lbd, r"failed: .*packet length too long")
    assert_serving(lbd, pki)


def test_tls12_renegotiation_is_refused(lbd, pki):
    lbd.start('log_level = "debug";\n' + https_conf(pki))
    proc = subprocess.Popen(["openssl", "s_client", "-tls1_2", "-connect", lbd.address,
                             "-servername", "a.example.com", "-CAfile", pki.path("ca.crt")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        proc.stdin.write("R\n")
        proc.stdin.flush()
        # s_client ends by itself once the server refused; stdin stays open
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError("s_client still runs after the renegotiation: " + out)
    assert "RENEGOTIATING" in out, out
    assert "no renegotiation" in out, out
    # the client gave up on the connection; lbd saw it end (a debug line)
    lbd.wait_log(r"\*\d+ TLS error on 127\.0\.0\.1:\d+: .+")
    assert_serving(lbd, pki)


def test_a_sticky_cookie_made_on_https_is_secure(lbd, pki):
    with RecordingBackend(name="s1") as backend:
        lbd.start(https_conf(pki, routes='{ upstream = "web"; }',
                             upstreams=one_upstream("web", backend.address,
                                                    'sticky = { mode = "cookie"; };')))
        conn = http.client.HTTPSConnection("127.0.0.1", lbd.port, timeout=10,
                                           context=client_ctx(pki))
        try:
            conn.request("GET", "/")
            resp = conn.getresponse()
            resp.read()
        finally:
            conn.close()
        assert resp.status == 200
        assert re.fullmatch(r"LBSTICKY=[A-Za-z0-9_-]{44}; Path=/; Max-Age=3600; HttpOnly; "
                            r"SameSite=Lax; Secure", resp.getheader("Set-Cookie"))
