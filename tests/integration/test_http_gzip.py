"""gzip compression of http responses (SPEC §3.6, modules/http/gzip):
bodies from a real backend, and lbd's own, come back gzip-encoded when
the client accepts it and byte-exact once decoded (Python's zlib and
curl --compressed); every case that must stay plain stays plain; Vary,
ETag, HTTP/1.0, keep-alive and pipelining, weights in Accept-Encoding,
a route's gzip over its listener's, $gzip_ratio in the access log; a
large body streams through with the worker's RSS flat, and streams cut
off by the client leave nothing behind.

The large transfer is 64 MiB in `make test`, 16 MiB under the sanitizer
build and 1 GiB with LBD_SOAK=1 (`make soak`)."""

import os
import random
import re
import subprocess
import threading
import time
import zlib

import pytest

import helpers
from helpers import connect
from http_backend import Behaviour, RecordingBackends
from test_http_access_log import lines
from test_http_listener import Client
from test_http_proxy import ask, read_response, request

MB = 1 << 20
IO = 30.0


def _sanitizer_build():
    try:
        out = subprocess.run([helpers.LBD, "-V"], capture_output=True, text=True, timeout=10)
    except OSError:
        return False
    return "--with-sanitizers" in out.stdout + out.stderr


SOAK = os.environ.get("LBD_SOAK") == "1"
SANITIZER = _sanitizer_build()
BIG = 1 << 30 if SOAK else 16 * MB if SANITIZER else 64 * MB
RSS_GROWTH_MAX = 8 * MB


@pytest.fixture
def http_backends():
    with RecordingBackends() as start:
        yield start


# Bodies ------------------------------------------------------------------------

WORDS = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod "
         "tempor incididunt ut labore et dolore magna aliqua <div class=row> "
         "</div> {\"key\": 12, \"value\": [1, 2, 3]}").split()


def text(n, seed=7):
    """n bytes of text that compresses a few times over, as HTML and JSON
    do; the same for the same n and seed."""
    rng = random.Random(seed)
    out, size = [], 0
    while size < n:
        line = " ".join(rng.choice(WORDS) for _ in range(12)) + f" {rng.randrange(1 << 30)}\n"
        out.append(line)
        size += len(line)
    return "".join(out).encode()[:n]


def gunzip(data):
    """The bytes of one whole gzip member; fails on anything after it or
    a member cut short."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = d.decompress(data) + d.flush()
    assert d.eof, "the gzip stream is not complete"
    assert d.unused_data == b"", "bytes after the gzip member"
    return out


# Configurations ------------------------------------------------------------------

def gzip_conf(gzip="gzip = { enabled = true; };", routes='{ upstream = "app"; }',
              access_log=None):
    log = ""
    if access_log:
        log = f'access_log = {{ path = "$dir/access.log"; format = "{access_log}"; }};\n'
    return ("workers = 1;\n"
            'upstreams = { app = { servers = ( { address = "$a"; } ); }; };\n'
            'listeners = ( { protocol = "http"; listen = "$listen"; name = "web";\n'
            f"  {gzip}\n  {log}"
            f"  routes = ( {routes} );\n}} );\n")


AE = "Accept-Encoding: gzip\r\n"


def get(lbd, path="/", extra=AE, method="GET", version="HTTP/1.1"):
    """One request on its own connection: (status line, fields, body as
    sent). For HTTP/1.0 the body ends with the connection."""
    return ask(lbd.address, request(path, extra=extra, method=method, version=version),
               head_request=method == "HEAD")[:3]


# Compressed and byte-exact -----------------------------------------------------------

@pytest.mark.parametrize("size,framing,compressed", [
    (0, "chunked", True),
    (1, "chunked", True),
    (255, "length", False),         # min_length - 1, its length known
    (255, "chunked", True),         # the same, its length unknown
    (256, "length", True),
    (64 * 1024, "length", True),
    (64 * 1024, "chunked", True),
    (10 * MB, "length", True),
    (10 * MB, "close", True),
], ids=lambda v: str(v))
def test_bodies_come_back_whole(lbd, http_backends, size, framing, compressed):
    body = text(size)
    app = http_backends(body=body, framing=framing, chunk_size=4000)
    lbd.start(gzip_conf(), a=app)
    status, fields, got = get(lbd)
    assert status == "HTTP/1.1 200 OK"
    if compressed:
        assert fields["content-encoding"] == "gzip"
        assert fields["transfer-encoding"] == "chunked"
        assert "content-length" not in fields
        assert fields["vary"] == "Accept-Encoding"
        decoded = gunzip(got)
        assert len(decoded) == size and decoded == body
        if size >= 64 * 1024:
            assert len(got) < size / 2
    else:
        assert "content-encoding" not in fields and "vary" not in fields
        assert fields["content-length"] == str(size) and got == body


def test_curl_compressed(lbd, http_backends, tmp_path):
    body = text(300 * 1024)
    app = http_backends(body=body, fields={"Content-Type": "application/json"})
    lbd.start(gzip_conf(), a=app)
    out_file = tmp_path / "body"
    out = helpers.run(["curl", "-s", "-S", "--compressed", "-D", "-", "-o", out_file,
                       f"http://{lbd.address}/data.json"])
    assert out.returncode == 0, out.stderr
    head = out.stdout.lower()
    assert "content-encoding: gzip" in head and "vary: accept-encoding" in head
    assert out_file.read_bytes() == body


def test_http10_client_gets_a_close_delimited_gzip_body(lbd, http_backends):
    body = text(100 * 1024)
    lbd.start(gzip_conf(), a=http_backends(body=body))
    with connect(lbd.address, timeout=IO) as s:
        s.sendall(b"GET / HTTP/1.0\r\n" + AE.encode() + b"\r\n")
        raw = helpers.recv_all(s)                   # until lbd closes
    head, _, got = raw.partition(b"\r\n\r\n")
    head = head.decode("latin-1").lower()
    assert head.startswith("http/1.1 200")
    assert "content-encoding: gzip" in head
    assert "content-length" not in head and "transfer-encoding" not in head
    assert "connection: close" in head
    assert gunzip(got) == body


def test_a_return_route_is_compressed_too(lbd):
    body = text(2000).replace(b'"', b"'")
    in_conf = body.decode().replace("\n", "\\n")
    lbd.start(gzip_conf(routes='{ path = "/r"; return = { status = 200; body = "%s"; }; },'
                        '{ path = "/small"; return = { status = 200; body = "short"; }; }'
                        % in_conf), a="127.0.0.1:1")
    status, fields, got = get(lbd, "/r")
    assert status == "HTTP/1.1 200 OK"
    assert fields["content-type"] == "text/plain"
    assert fields["content-encoding"] == "gzip"
    assert gunzip(got) == body
    status, fields, got = get(lbd, "/small")
    assert "content-encoding" not in fields and got == b"short"
    # lbd's own 404 is short: below min_length, plain
    status, fields, got = get(lbd, "/nowhere")
    assert status.startswith("HTTP/1.1 404") and "content-encoding" not in fields


def test_upstream_trailers_follow_the_gzip_body(lbd, http_backends):
    body = text(50_000)
    app = http_backends(body=body, framing="chunked", trailers=[("X-Sum", "42")])
    lbd.start(gzip_conf(), a=app)
    c = Client(lbd.address, timeout=IO)
    c.send(request("/", extra="TE: trailers\r\n" + AE))
    status, fields, got, raw = read_response(c)
    c.close()
    assert fields["content-encoding"] == "gzip"
    assert gunzip(got) == body
    # trailers, when lbd passes them on, come after the whole gzip member
    if b"X-Sum" in raw:
        assert raw.endswith(b"0\r\nX-Sum: 42\r\n\r\n")


# Never compressed -------------------------------------------------------------------

BIG_TEXT = text(10_000)


def never(lbd, http_backends, behaviour, path="/", extra=AE, method="GET"):
    app = http_backends(behaviour)
    lbd.start(gzip_conf(), a=app)
    return get(lbd, path, extra=extra, method=method)


def test_head_is_never_compressed(lbd, http_backends):
    status, fields, got = never(lbd, http_backends, Behaviour(body=BIG_TEXT), method="HEAD")
    assert status == "HTTP/1.1 200 OK" and got == b""
    assert "content-encoding" not in fields
    assert fields["content-length"] == str(len(BIG_TEXT))
    assert fields["vary"] == "Accept-Encoding"      # a GET would get it compressed


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses_are_never_compressed(lbd, http_backends, status):
    st, fields, got = never(lbd, http_backends, Behaviour(status=status, body=BIG_TEXT))
    assert st.startswith(f"HTTP/1.1 {status}") and got == b""
    assert "content-encoding" not in fields


def test_partial_content_is_never_compressed(lbd, http_backends):
    part = BIG_TEXT[:5000]
    st, fields, got = never(lbd, http_backends, Behaviour(
        status=206, body=part, fields={"Content-Range": f"bytes 0-4999/{len(BIG_TEXT)}"}))
    assert st.startswith("HTTP/1.1 206") and got == part
    assert "content-encoding" not in fields


def test_a_range_request_is_never_compressed(lbd, http_backends):
    st, fields, got = never(lbd, http_backends, Behaviour(body=BIG_TEXT),
                            extra="Range: bytes=0-99\r\n" + AE)
    assert got == BIG_TEXT and "content-encoding" not in fields
    assert fields["vary"] == "Accept-Encoding"


def test_an_encoded_response_is_never_compressed_again(lbd, http_backends):
    st, fields, got = never(lbd, http_backends, Behaviour(
        body=BIG_TEXT, fields={"Content-Encoding": "br"}))
    assert fields["content-encoding"] == "br" and got == BIG_TEXT
    assert "vary" not in fields


def test_identity_encoding_is_compressed(lbd, http_backends):
    st, fields, got = never(lbd, http_backends, Behaviour(
        body=BIG_TEXT, fields={"Content-Encoding": "identity"}))
    assert fields["content-encoding"] == "gzip"
    assert gunzip(got) == BIG_TEXT


def test_no_transform_is_never_compressed(lbd, http_backends):
    st, fields, got = never(lbd, http_backends, Behaviour(
        body=BIG_TEXT, fields={"Cache-Control": "public, No-Transform"}))
    assert "content-encoding" not in fields and got == BIG_TEXT


@pytest.mark.parametrize("ctype", ["image/png", "application/octet-stream"])
def test_other_types_are_never_compressed(lbd, http_backends, ctype):
    st, fields, got = never(lbd, http_backends, Behaviour(
        body=BIG_TEXT, fields={"Content-Type": ctype}))
    assert "content-encoding" not in fields and got == BIG_TEXT
    assert "vary" not in fields


def test_no_content_type_is_never_compressed(lbd, http_backends):
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(BIG_TEXT), BIG_TEXT)
    st, fields, got = never(lbd, http_backends, Behaviour(raw=raw))
    assert "content-type" not in fields
    assert "content-encoding" not in fields and got == BIG_TEXT


def test_a_type_with_parameters_and_case_matches(lbd, http_backends):
    st, fields, got = never(lbd, http_backends, Behaviour(
        body=BIG_TEXT, fields={"Content-Type": "Text/HTML; charset=UTF-8"}))
    assert fields["content-encoding"] == "gzip" and gunzip(got) == BIG_TEXT


def test_below_min_length_is_never_compressed(lbd, http_backends):
    st, fields, got = never(lbd, http_backends, Behaviour(body=BIG_TEXT[:255]))
    assert "content-encoding" not in fields and got == BIG_TEXT[:255]


@pytest.mark.parametrize("accept", [None, "gzip;q=0", "identity", "br, deflate", "*;q=0",
                                    "*, gzip;q=0"])
def test_a_client_that_refuses_gzip_gets_plain_with_vary(lbd, http_backends, accept):
    extra = f"Accept-Encoding: {accept}\r\n" if accept is not None else ""
    st, fields, got = never(lbd, http_backends, Behaviour(body=BIG_TEXT), extra=extra)
    assert "content-encoding" not in fields and got == BIG_TEXT
    assert fields["vary"] == "Accept-Encoding"


@pytest.mark.parametrize("accept", ["gzip;q=0.5", "GZIP", "x-gzip", "*", "br;q=1, gzip;q=0.1",
                                    "*;q=0, gzip"])
def test_weights_that_accept_gzip(lbd, http_backends, accept):
    st, fields, got = never(lbd, http_backends, Behaviour(body=BIG_TEXT),
                            extra=f"Accept-Encoding: {accept}\r\n")
    assert fields["content-encoding"] == "gzip" and gunzip(got) == BIG_TEXT


# Vary, ETag, Accept-Ranges -----------------------------------------------------------

def raw_fields(raw, name):
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    return [v.strip() for n, _, v in (line.partition(":") for line in head)
            if n.lower() == name.lower()]


def compressed_raw(lbd, http_backends, fields):
    lbd.start(gzip_conf(), a=http_backends(body=BIG_TEXT, fields=fields))
    status, got_fields, body, raw = ask(lbd.address, request("/", extra=AE))
    assert got_fields["content-encoding"] == "gzip" and gunzip(body) == BIG_TEXT
    return raw


def test_vary_is_merged_into_the_servers(lbd, http_backends):
    raw = compressed_raw(lbd, http_backends, {"Vary": "Cookie"})
    assert raw_fields(raw, "Vary") == ["Cookie, Accept-Encoding"]


def test_vary_that_names_it_already_is_kept(lbd, http_backends):
    raw = compressed_raw(lbd, http_backends, [("Vary", "Cookie"), ("Vary", "accept-encoding")])
    assert raw_fields(raw, "Vary") == ["Cookie", "accept-encoding"]


def test_vary_star_is_kept(lbd, http_backends):
    raw = compressed_raw(lbd, http_backends, {"Vary": "*"})
    assert raw_fields(raw, "Vary") == ["*"]


def test_strong_etag_is_weakened(lbd, http_backends):
    raw = compressed_raw(lbd, http_backends, {"ETag": '"v1-abc"', "Accept-Ranges": "bytes"})
    assert raw_fields(raw, "ETag") == ['W/"v1-abc"']
    assert raw_fields(raw, "Accept-Ranges") == []


def test_weak_etag_stays(lbd, http_backends):
    raw = compressed_raw(lbd, http_backends, {"ETag": 'W/"v1-abc"'})
    assert raw_fields(raw, "ETag") == ['W/"v1-abc"']


def test_plain_response_keeps_its_strong_etag(lbd, http_backends):
    lbd.start(gzip_conf(), a=http_backends(body=BIG_TEXT, fields={"ETag": '"v1"'}))
    status, fields, body, raw = ask(lbd.address, request("/"))
    assert raw_fields(raw, "ETag") == ['"v1"'] and body == BIG_TEXT


# Connections ------------------------------------------------------------------------

def test_keep_alive_pipelined_mix_of_compressed_and_plain(lbd, http_backends):
    bodies = {"/a": text(30_000, 1), "/b": text(20_000, 2), "/c": text(40_000, 3),
              "/png": text(5_000, 4), "/d": text(100, 5)}

    def behaviour(req):
        ctype = "image/png" if req.target == "/png" else "text/html"
        return Behaviour(body=bodies[req.target], fields={"Content-Type": ctype},
                         framing="chunked" if req.target == "/c" else "length")
    lbd.start(gzip_conf(), a=http_backends(behaviour))
    plan = [("/a", True), ("/b", False), ("/c", True), ("/png", True), ("/d", True),
            ("/a", False), ("/c", True)]
    c = Client(lbd.address, timeout=IO)
    c.send(b"".join(request(p, extra=AE if accept else "") for p, accept in plan))
    for path, accept in plan:
        status, fields, body, _ = read_response(c)
        assert status == "HTTP/1.1 200 OK", path
        expect_gzip = accept and path not in ("/png", "/d")
        if expect_gzip:
            assert fields["content-encoding"] == "gzip", path
            assert gunzip(body) == bodies[path], path
        else:
            assert "content-encoding" not in fields, path
            assert body == bodies[path], path
    # the connection is still usable
    c.send(request("/b", extra=AE))
    status, fields, body, _ = read_response(c)
    assert gunzip(body) == bodies["/b"]
    c.close()


# Routes -------------------------------------------------------------------------------

def test_a_route_turns_gzip_off_under_a_listener_that_has_it(lbd, http_backends):
    lbd.start(gzip_conf(routes='{ path_prefix = "/plain"; gzip = { enabled = false; }; '
                        'upstream = "app"; }, { upstream = "app"; }'),
              a=http_backends(body=BIG_TEXT))
    _, fields, got = get(lbd, "/plain/x")
    assert "content-encoding" not in fields and "vary" not in fields and got == BIG_TEXT
    _, fields, got = get(lbd, "/other")
    assert fields["content-encoding"] == "gzip" and gunzip(got) == BIG_TEXT


def test_a_route_turns_gzip_on_under_a_listener_without_it(lbd, http_backends):
    lbd.start(gzip_conf(gzip="", routes='{ path_prefix = "/gz"; gzip = { min_length = 10; '
                        'types = ["text/*"]; level = 9; }; upstream = "app"; }, '
                        '{ upstream = "app"; }'),
              a=http_backends(body=BIG_TEXT[:100]))
    _, fields, got = get(lbd, "/gz/x")
    assert fields["content-encoding"] == "gzip" and gunzip(got) == BIG_TEXT[:100]
    _, fields, got = get(lbd, "/other")
    assert "content-encoding" not in fields and got == BIG_TEXT[:100]


def test_a_written_group_turns_gzip_on_and_enabled_false_off(lbd, http_backends):
    lbd.start(gzip_conf(gzip="gzip = { level = 1; };",
                        routes='{ path = "/off"; gzip = { enabled = false; level = 9; }; '
                        'upstream = "app"; }, { upstream = "app"; }'),
              a=http_backends(body=BIG_TEXT))
    _, fields, got = get(lbd, "/on")
    assert fields["content-encoding"] == "gzip" and gunzip(got) == BIG_TEXT
    _, fields, got = get(lbd, "/off")
    assert "content-encoding" not in fields


# $gzip_ratio --------------------------------------------------------------------------

def test_gzip_ratio_in_the_access_log(lbd, http_backends):
    body = text(200_000)
    lbd.start(gzip_conf(access_log="$$request_uri [$$gzip_ratio] $$status"),
              a=http_backends(body=body))
    _, fields, got = get(lbd, "/z")
    _, fields2, plain = get(lbd, "/p", extra="")
    assert plain == body
    first, second = lines(os.path.join(lbd.dir, "access.log"), 2)
    ratio = len(body) / len(got)
    m = re.fullmatch(r"/z \[(\d+\.\d\d)\] 200", first)
    assert m, first
    assert m.group(1) == f"{ratio:.2f}" or abs(float(m.group(1)) - ratio) <= 0.006, (first, ratio)
    assert float(m.group(1)) > 1.5
    assert second == "/p [] 200"


# Configuration errors -----------------------------------------------------------------

def check_conf(tmp_path, text_):
    path = tmp_path / "lbd.conf"
    path.write_text(text_)
    return path, helpers.lbd_test(path)


def test_unknown_member_of_gzip_is_an_error_with_file_and_line(tmp_path):
    path, out = check_conf(tmp_path, 'listeners = (\n'
                           '  { protocol = "http"; listen = "127.0.0.1:8080"; name = "w";\n'
                           '    gzip = { enabled = true;\n'
                           '             min_lenght = 10; };\n'
                           '    routes = ( { return = { status = 200; }; } ); }\n);\n')
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f'{path}:4: unknown setting "min_lenght" in "gzip" of listener "w" '
        '(did you mean "min_length"?)']


def test_bad_level_and_type_are_errors(tmp_path):
    path, out = check_conf(tmp_path, 'listeners = (\n'
                           '  { protocol = "http"; listen = "127.0.0.1:8080"; name = "w";\n'
                           '    routes = ( { gzip = { level = 0;\n'
                           '                          types = ["text/html;q=1"]; };\n'
                           '                 return = { status = 200; }; } ); }\n);\n')
    assert out.returncode == 1
    errors = out.stderr.splitlines()
    assert len(errors) == 2, errors
    assert errors[0].startswith(f'{path}:3: ') and '"level"' in errors[0]
    assert errors[1].startswith(f'{path}:4: invalid type "text/html;q=1"')


# Streaming and memory ---------------------------------------------------------------------

def vm_rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


BLOCK = text(MB + 13, seed=99)


def big_source(total):
    """A raw backend that answers each request on a connection with BLOCK
    repeated, with Content-Length: 1 MiB for /warm, total bytes for any
    other path. It writes in big pieces, so that Python keeps up."""
    def handler(conn, backend):
        conn.settimeout(IO)
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            head, buf = buf.split(b"\r\n\r\n", 1)
            size = MB if head.split(b" ")[1] == b"/warm" else total
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                         b"Content-Length: %d\r\n\r\n" % size)
            left = size
            view = memoryview(BLOCK)
            while left > 0:
                n = min(left, len(view))
                conn.sendall(view[:n])
                left -= n
    return handler


class ChunkedGunzip:
    """Reads a chunked, gzip-encoded body off a socket and decodes it as
    it comes: the decoded length and CRC-32, and the encoded length."""

    def __init__(self, f):
        self.f = f
        self.z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.length = 0
        self.crc = 0
        self.encoded = 0

    def feed(self, data):
        self.encoded += len(data)
        out = self.z.decompress(data)
        self.length += len(out)
        self.crc = zlib.crc32(out, self.crc)

    def run(self, on_progress=None):
        while True:
            line = self.f.readline(100)
            size = int(line.split(b";")[0], 16)
            if size == 0:
                break
            left = size
            while left:
                data = self.f.read(min(left, 1 << 20))
                if not data:
                    raise AssertionError("connection closed inside a chunk")
                left -= len(data)
                self.feed(data)
                if on_progress:
                    on_progress(self.length)
            assert self.f.read(2) == b"\r\n"
        while self.f.readline(1000) not in (b"\r\n", b""):
            pass
        tail = self.z.flush()
        self.length += len(tail)
        self.crc = zlib.crc32(tail, self.crc)
        assert self.z.eof and self.z.unused_data == b""


def block_crc(total):
    crc, left = 0, total
    while left > 0:
        n = min(left, len(BLOCK))
        crc = zlib.crc32(BLOCK[:n], crc)
        left -= n
    return crc


def read_head(f):
    status = f.readline(1000)
    fields = {}
    while True:
        line = f.readline(65536)
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        fields[name.strip().lower()] = value.strip()
    return status, fields


def test_a_large_body_streams_compressed_with_flat_rss(lbd, backend):
    app = backend(big_source(BIG), name="big")
    lbd.start(gzip_conf(), a=app)
    [worker] = lbd.workers()
    # a compressed response first: a stream exists, and goes back to the
    # free list, before the measure begins
    _, fields, got = get(lbd, "/warm")
    assert gunzip(got) == BLOCK[:MB]
    before = vm_rss(worker)
    peak = [before]
    stop = threading.Event()

    def sample():
        while not stop.wait(0.05):
            peak[0] = max(peak[0], vm_rss(worker))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    paused = [False]
    try:
        with connect(lbd.address, timeout=IO) as s:
            s.sendall(request("/big", extra=AE))
            f = s.makefile("rb", buffering=256 * 1024)
            status, fields = read_head(f)
            assert status.startswith(b"HTTP/1.1 200")
            assert fields["content-encoding"] == "gzip"
            assert fields["transfer-encoding"] == "chunked"
            reader = ChunkedGunzip(f)

            def progress(n):
                # a client that stops reading for a while half-way: lbd
                # must hold back, not buffer the rest
                if not paused[0] and n >= BIG // 2:
                    paused[0] = True
                    time.sleep(1.0)
            t0 = time.monotonic()
            reader.run(progress)
            elapsed = time.monotonic() - t0
    finally:
        stop.set()
        sampler.join(5)
    print(f"\ngzip {BIG // MB} MiB -> {reader.encoded // MB} MiB in {elapsed:.1f}s; "
          f"worker RSS {before // 1024} -> {peak[0] // 1024} KiB")
    assert reader.length == BIG and reader.crc == block_crc(BIG)
    assert reader.encoded < BIG / 2
    assert peak[0] - before < RSS_GROWTH_MAX, (before, peak[0])


def test_streams_cut_off_by_clients_are_given_back(lbd, backend):
    """Clients that leave in the middle of compressed responses: the log
    phase gives each stream back, so the worker does not grow with them."""
    app = backend(big_source(8 * MB), name="big")
    lbd.start(gzip_conf(), a=app)
    [worker] = lbd.workers()

    def cut_one():
        with connect(lbd.address, timeout=IO) as s:
            s.sendall(request("/big", extra=AE))
            got = 0
            while got < 64 * 1024:
                data = s.recv(65536)
                assert data
                got += len(data)
            helpers.reset(s)

    for _ in range(5):
        cut_one()
    time.sleep(0.5)
    before = vm_rss(worker)
    for _ in range(40):
        cut_one()
    time.sleep(0.5)
    after = vm_rss(worker)
    # each stream is ~270 KiB: 40 kept would be ~10 MiB
    assert after - before < 4 * MB, (before, after)
    # and the worker still compresses
    status, fields, got = get(lbd, "/warm")
    assert fields["content-encoding"] == "gzip"
    assert gunzip(got) == BLOCK[:MB]
