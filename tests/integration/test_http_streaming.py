"""Bodies stream through the http proxy with bounded buffers (SPEC §4):
1 GB each way with Content-Length and 200 MB each way chunked arrive whole
(byte count and CRC-32 end to end) while the RSS of every lbd process
stays flat; a WebSocket upgrade becomes a tunnel that carries frames both
ways. The backends here speak just enough HTTP for one request each, and
move the data in big preallocated blocks so that Python keeps up."""

import base64
import hashlib
import os
import socket
import struct
import threading
import time
import zlib
from functools import lru_cache

import pytest

from helpers import connect, wait_until

MB = 1 << 20
GB = 1 << 30
RSS_GROWTH_MAX = 20 * MB
IO = 30.0                       # bound of one socket operation in these tests
PAUSE = 1.0                     # a receiver stops reading this long mid-transfer

PROXY = """
upstreams = { app = { servers = ( { address = "$app"; } ); }; };
listeners = ( { protocol = "http"; listen = "$listen"; max_body_size = "2g";
  routes = ( { path_prefix = "/"; upstream = "app"; } ); } );
"""

# 1 MiB + 13: the block boundaries drift against any power-of-two buffer in
# lbd, so a byte lost, repeated or moved shows in the CRC
BLOCK = os.urandom(MB + 13)


def blocks(total):
    """memoryviews of BLOCK, repeated, making total bytes."""
    view = memoryview(BLOCK)
    while total > 0:
        n = min(total, len(view))
        yield view[:n]
        total -= n


@lru_cache(maxsize=None)
def stream_crc(total):
    crc = 0
    for b in blocks(total):
        crc = zlib.crc32(b, crc)
    return crc


def chunk_frames(total):
    """The chunked encoding of blocks(total), as prebuilt frames (a full
    block's frame is built once), then the last chunk."""
    full = b"%x\r\n" % len(BLOCK) + BLOCK + b"\r\n"
    for b in blocks(total):
        yield full if len(b) == len(BLOCK) else b"%x\r\n" % len(b) + b + b"\r\n"
    yield b"0\r\n\r\n"


# Reading HTTP off a socket, without copies of the body ----------------------

class Reader:
    """A buffered reader over a socket: head lines, then body bytes read
    straight into a preallocated buffer. With pause_at, it stops reading
    for PAUSE seconds once that many body bytes are in: the sender then
    runs ahead of the receiver, and only lbd's own buffers are between."""

    def __init__(self, sock, pause_at=None):
        self.f = sock.makefile("rb", buffering=256 * 1024)
        self.buf = bytearray(MB)
        self.pause_at = pause_at

    def line(self):
        line = self.f.readline(65537)
        if not line.endswith(b"\r\n"):
            raise ConnectionError(f"line cut short: {line[:100]!r}")
        return line[:-2]

    def head(self):
        """(start line, {lowercase name: value}) of a message head."""
        start = self.line()
        fields = {}
        while True:
            line = self.line()
            if not line:
                return start, fields
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()

    def body(self, fields):
        """Reads the body framed per fields: (byte count, CRC-32)."""
        if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
            return self.chunked()
        return self.exactly(int(fields.get(b"content-length", b"0")))

    def exactly(self, n, count=0, crc=0):
        view = memoryview(self.buf)
        while n > 0:
            got = self.f.readinto(view[:min(n, len(view))])
            if not got:
                raise ConnectionError(f"EOF with {n} body bytes still due")
            crc = zlib.crc32(view[:got], crc)
            count += got
            n -= got
            if self.pause_at is not None and count >= self.pause_at:
                self.pause_at = None
                time.sleep(PAUSE)
        return count, crc

    def chunked(self):
        count = crc = 0
        while True:
            size = int(self.line().split(b";")[0], 16)
            if size == 0:
                while self.line():
                    pass                # trailers
                return count, crc
            count, crc = self.exactly(size, count, crc)
            if self.line() != b"":
                raise ConnectionError("no CRLF after chunk data")


def send_body(sock, total, chunked):
    frames = chunk_frames(total) if chunked else blocks(total)
    for frame in frames:
        sock.sendall(frame)


# Backends -------------------------------------------------------------------

def sink(pause_at):
    """Reads one request and its body, pausing at pause_at bytes; answers
    "COUNT CRC"."""
    def handler(conn, backend):
        conn.settimeout(IO)
        r = Reader(conn, pause_at)
        _, fields = r.head()
        count, crc = r.body(fields)
        backend.record((count, crc))
        reply = b"%d %d" % (count, crc)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(reply), reply))
        r.f.read()                      # until lbd closes or pools us
    return handler


def source(total, chunked):
    """Reads one request; answers with a body of total bytes."""
    def handler(conn, backend):
        conn.settimeout(IO)
        r = Reader(conn)
        r.head()
        framing = (b"Transfer-Encoding: chunked" if chunked
                   else b"Content-Length: %d" % total)
        conn.sendall(b"HTTP/1.1 200 OK\r\n" + framing + b"\r\n\r\n")
        send_body(conn, total, chunked)
        backend.record("sent")
        r.f.read()
    return handler


# RSS of lbd -----------------------------------------------------------------

def vm_rss(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class RssWatch:
    """Samples VmRSS of lbd's master and workers every 50 ms in a thread;
    growth is the largest rise of one process above its first sample."""

    def __init__(self, lbd):
        self.pids = [lbd.master_pid] + lbd.workers()
        self.first, self.peak = {}, {}
        self._stop = threading.Event()
        self._sample()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self):
        for pid in self.pids:
            rss = vm_rss(pid)
            if rss is not None:
                self.first.setdefault(pid, rss)
                self.peak[pid] = max(self.peak.get(pid, 0), rss)

    def _run(self):
        while not self._stop.wait(0.05):
            self._sample()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
        self._sample()

    @property
    def growth(self):
        return max(self.peak[pid] - self.first[pid] for pid in self.first)

    def report(self):
        return ", ".join(f"pid {pid}: {self.first[pid] // 1024} -> {self.peak[pid] // 1024} KiB"
                         for pid in self.first)


def report(what, nbytes, seconds, watch):
    print(f"\n{what}: {nbytes / MB:.0f} MiB in {seconds:.1f} s = "
          f"{nbytes / MB / seconds:.0f} MiB/s; RSS growth {watch.growth / 1024:.0f} KiB "
          f"({watch.report()})")


# Transfers ------------------------------------------------------------------

@pytest.mark.parametrize("total,chunked", [(GB, False), (200 * MB, True)],
                         ids=["1GB_content_length", "200MB_chunked"])
def test_upload_streams_whole_with_flat_rss(lbd, backend, total, chunked):
    app = backend(sink(pause_at=total // 2), name="sink")
    lbd.start(PROXY, app=app)
    framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % total
    with RssWatch(lbd) as watch, connect(lbd.address, timeout=IO) as s:
        start = time.monotonic()
        s.sendall(b"PUT /upload HTTP/1.1\r\nHost: t\r\n" + framing + b"\r\n\r\n")
        send_body(s, total, chunked)
        r = Reader(s)
        status, fields = r.head()
        reply = r.f.read(int(fields[b"content-length"]))
        elapsed = time.monotonic() - start
    report(f"upload {'chunked' if chunked else 'content-length'}", total, elapsed, watch)
    assert status == b"HTTP/1.1 200 OK"
    assert reply == b"%d %d" % (total, stream_crc(total))
    assert app.records == [(total, stream_crc(total))]
    assert watch.growth < RSS_GROWTH_MAX, watch.report()


@pytest.mark.parametrize("total,chunked", [(GB, False), (200 * MB, True)],
                         ids=["1GB_content_length", "200MB_chunked"])
def test_download_streams_whole_with_flat_rss(lbd, backend, total, chunked):
    app = backend(source(total, chunked), name="source")
    lbd.start(PROXY, app=app)
    with RssWatch(lbd) as watch, connect(lbd.address, timeout=IO) as s:
        start = time.monotonic()
        s.sendall(b"GET /download HTTP/1.1\r\nHost: t\r\n\r\n")
        r = Reader(s, pause_at=total // 2)
        status, fields = r.head()
        got = r.body(fields)
        elapsed = time.monotonic() - start
    report(f"download {'chunked' if chunked else 'content-length'}", total, elapsed, watch)
    assert status == b"HTTP/1.1 200 OK"
    assert (b"transfer-encoding" in fields) == chunked
    assert got == (total, stream_crc(total))
    assert watch.growth < RSS_GROWTH_MAX, watch.report()


# WebSocket ------------------------------------------------------------------

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_accept(key):
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + WS_GUID).digest())


def ws_frame(opcode, payload, mask=None):
    """One final frame; masked when mask (4 bytes) is given (RFC 6455 §5.2)."""
    head = bytes([0x80 | opcode])
    bit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head += bytes([bit | n])
    elif n < 1 << 16:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


def recv_exactly(sock, n):
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"EOF after {len(data)} of {n} bytes")
        data += chunk
    return bytes(data)


def ws_read(sock):
    """(opcode, masked, payload) of the next frame, unmasked."""
    b0, b1 = recv_exactly(sock, 2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", recv_exactly(sock, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", recv_exactly(sock, 8))[0]
    mask = recv_exactly(sock, 4) if b1 & 0x80 else None
    payload = recv_exactly(sock, n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert b0 & 0x80, "fragmented frames are not used here"
    return b0 & 0x0F, mask is not None, payload


def ws_echo(conn, backend):
    """A WebSocket server: the handshake with a real 101, then every
    frame echoed unmasked (a server never masks); a close frame is echoed
    and ends the connection. Records the handshake request head."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = conn.recv(4096)
        if not chunk:
            return
        head += chunk
    head, _, rest = head.partition(b"\r\n\r\n")
    assert not rest
    backend.record(head)
    fields = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip()
    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                 + ws_accept(fields[b"sec-websocket-key"]) + b"\r\n\r\n")
    while True:
        opcode, masked, payload = ws_read(conn)
        if not masked:
            conn.sendall(ws_frame(0x8, struct.pack("!H", 1002)))
            return
        conn.sendall(ws_frame(opcode, payload))
        if opcode == 0x8:
            conn.shutdown(socket.SHUT_WR)
            while conn.recv(4096):
                pass
            return


def test_websocket_echo_through_a_101_tunnel(lbd, backend):
    # the example of RFC 6455 §1.3 keeps ws_accept honest
    assert ws_accept(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    app = backend(ws_echo, name="ws")
    lbd.start(PROXY, app=app)
    key = base64.b64encode(os.urandom(16))
    with connect(lbd.address, timeout=10) as s:
        s.sendall(b"GET /chat HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
                  b"Sec-WebSocket-Version: 13\r\n\r\n")
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += recv_exactly(s, 1)      # nothing of the tunnel read with it
        lines = head[:-4].split(b"\r\n")
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
        assert lines[0] == b"HTTP/1.1 101 Switching Protocols"
        # what a client checks before it uses the connection (RFC 6455 §4.1)
        assert fields.get(b"upgrade", b"").lower() == b"websocket", head
        assert b"upgrade" in fields.get(b"connection", b"").lower(), head
        assert fields.get(b"sec-websocket-accept") == ws_accept(key), head

        messages = [b"hello", "h\u00e9llo w\u00f6rld".encode(), b"x" * 200, b"y" * 70000]
        for i, text in enumerate(messages):
            s.sendall(ws_frame(0x1, text, mask=struct.pack("!I", 0x1234567 * (i + 1))))
            assert ws_read(s) == (0x1, False, text)
        # two frames in one segment come back as two frames
        s.sendall(ws_frame(0x1, b"one", b"abcd") + ws_frame(0x2, b"\x00\xff", b"efgh"))
        assert ws_read(s) == (0x1, False, b"one")
        assert ws_read(s) == (0x2, False, b"\x00\xff")

        close = struct.pack("!H", 1000) + b"bye"
        s.sendall(ws_frame(0x8, close, mask=b"\x01\x02\x03\x04"))
        assert ws_read(s) == (0x8, False, close)
        s.settimeout(5)
        assert s.recv(1) == b""             # the server's close reached us
    [request] = app.records
    assert request.startswith(b"GET /chat HTTP/1.1\r\n")
    assert b"\r\nSec-WebSocket-Key: " + key + b"\r\n" in request + b"\r\n"
    assert b"\r\nUpgrade: websocket\r\n" in request + b"\r\n"
    wait_until(lambda: app.active == 0, 5, what="the tunnel to end at the backend")
