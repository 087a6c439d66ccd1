"""A small real HTTP/1.1 server for lbd's http tests: it parses every
request it is sent, records it, and answers as it is told to.

    from http_backend import Behaviour, RecordingBackend, RecordingBackends

    with RecordingBackend(status=201, body="made\\n") as b:
        lbd.start(CONF, a=b)                # $a in CONF becomes b.address
        ...
        [req] = b.wait_requests(1)
        assert req.method == "POST" and req.header("X-A") == "1"

RecordingBackend(behaviour=None, name="http", port=None, **options)
    A helpers.Backend on 127.0.0.1 (one thread per connection, keep-alive
    by default) that serves HTTP/1.1. `behaviour` says how it answers: a
    Behaviour, a dict of Behaviour options, or a callable(request) that
    returns either (or None for the default), called for every request.
    Without `behaviour`, the keyword options make one Behaviour.
    It is a context manager (stop() on exit); RecordingBackends (at the
    end) starts several and stops them all, for a pytest fixture.

  .address         "127.0.0.1:PORT" (lbd's config takes it as $NAME)
  .name            also the default response body (NAME + "\\n")
  .requests        every complete request, in arrival order (Request)
  .incomplete      requests cut short by the peer or unparseable (Request
                   with .error set); the connection was closed after each
  .accepted        connections accepted (from helpers.Backend); .active,
                   .max_active too
  .received_bytes  every byte ever received, on every connection, parsed
                   or not: 0 means nothing ever reached the backend
  .wait_requests(n, timeout=5)    the requests once there are n at least
  .wait_incomplete(n, timeout=5)  the same for .incomplete
  .stop()          closes the port and every connection

Request (a record; read its attributes):
  .method .target .version   strings, as in the request line ("HTTP/1.1")
  .fields          [(name, value), ...] in order, names as sent, values
                   without surrounding whitespace
  .header(name)    the first value of name (any case), or None
  .headers(name)   every value of name, in order
  .body            the body; decoded when chunked
  .chunked         True when the body came chunked; then .raw_body holds
                   the chunked bytes as sent and .trailers the trailer
                   fields [(name, value), ...]
  .raw_head .raw_body .raw   bytes as received (raw = raw_head + raw_body)
  .conn            which of the backend's connections it came on (1 for
                   the first connection the backend served, 2, ...)
  .number          its rank among all requests of the backend (1, 2, ...)
  .error           None, or why the request is in .incomplete

Behaviour(**options), every option optional:
  status=200, reason=None (the standard one)
  fields=()        extra response fields, [(name, value)] or a dict; they
                   replace the default fields of the same names, which are
                   Server: recording-backend, Content-Type: text/plain and
                   X-Backend: NAME
  body=None        bytes, str, or callable(request) -> bytes or str;
                   None: NAME + "\\n". Never sent to HEAD or for 1xx, 204, 304
  big=0            instead of body: `big` bytes of helpers.pattern(big, seed),
                   generated while sent (any size, little memory)
  seed=1
  framing="length" "length": Content-Length; "chunked": Transfer-Encoding:
                   chunked, in pieces of chunk_size; "close": no length,
                   the end of the body is the backend closing the connection;
                   "none": neither field and no body
  chunk_size=1024, trailers=()   (chunked: trailer fields [(name, value)])
  chunk_delay=0.0  seconds between chunks of the body (any framing)
  delay=0.0        seconds to wait before answering (a slow server)
  close=False      answer with Connection: close, then close
  never_answer=False   read and record the request, then never answer (the
                   connection stays open until the peer or stop() ends it)
  close_without_answer=0   close without a byte of response instead of
                   answering: an int N for the first N requests of the
                   backend, or a collection of request numbers (1-based)
  upgrade=False    answer 101 Switching Protocols (Upgrade: websocket), then
                   echo every byte back until the peer half-closes, then
                   half-close too
  interim=()       raw 1xx responses (bytes) sent before the response
  raw=None         bytes sent instead of a response; the connection closes
                   after them (for invalid or truncated responses)
  early=False      answer as soon as the request head is in, without reading
                   the body, then close (after reading what still comes, so
                   that the close sends no reset). Only for a fixed
                   behaviour: a callable sees whole requests. The request is
                   recorded with the body bytes that came with its head

A request with Connection: close, or an HTTP/1.0 one without Connection:
keep-alive, gets Connection: close and the connection closes after it.
"""

import http
import socket

import helpers

HEAD_LIMIT = 1 << 20            # longest request head accepted


class Request:
    __slots__ = ("method", "target", "version", "fields", "body", "chunked", "trailers",
                 "raw_head", "raw_body", "conn", "number", "error")

    def __init__(self, conn):
        self.method = self.target = self.version = None
        self.fields = []
        self.body = b""
        self.chunked = False
        self.trailers = []
        self.raw_head = b""
        self.raw_body = b""
        self.conn = conn
        self.number = None
        self.error = None

    @property
    def raw(self):
        return self.raw_head + self.raw_body

    def header(self, name, default=None):
        values = self.headers(name)
        return values[0] if values else default

    def headers(self, name):
        name = name.lower()
        return [v for n, v in self.fields if n.lower() == name]

    def __repr__(self):
        what = self.error or f"{len(self.body)} body bytes"
        return f"<Request #{self.number} conn {self.conn} {self.method} {self.target} {what}>"


class Behaviour:
    __slots__ = ("status", "reason", "fields", "body", "big", "seed", "framing",
                 "chunk_size", "trailers", "chunk_delay", "delay", "close", "never_answer",
                 "close_without_answer", "upgrade", "interim", "raw", "early")

    FRAMINGS = ("length", "chunked", "close", "none")

    def __init__(self, status=200, reason=None, fields=(), body=None, big=0, seed=1,
                 framing="length", chunk_size=1024, trailers=(), chunk_delay=0.0, delay=0.0,
                 close=False, never_answer=False, close_without_answer=0, upgrade=False,
                 interim=(), raw=None, early=False):
        if framing not in self.FRAMINGS:
            raise ValueError(f"framing must be one of {self.FRAMINGS}, not {framing!r}")
        self.status, self.reason = status, reason
        self.fields = list(fields.items() if isinstance(fields, dict) else fields)
        self.body, self.big, self.seed = body, big, seed
        self.framing, self.chunk_size, self.trailers = framing, chunk_size, list(trailers)
        self.chunk_delay, self.delay, self.close = chunk_delay, delay, close
        self.never_answer = never_answer
        self.close_without_answer = close_without_answer
        self.upgrade, self.interim, self.raw = upgrade, list(interim), raw
        self.early = early

    def closes_unanswered(self, number):
        n = self.close_without_answer
        if isinstance(n, int):
            return number <= n
        return number in n


class _Closed(Exception):
    """The peer closed (or reset) the connection, or the backend stops."""


class _Bad(Exception):
    """Bytes that are not an HTTP/1.1 request."""


class _Reader:
    """Buffered reads from one connection, counted into the backend."""

    def __init__(self, conn, backend):
        self.conn = conn
        self.backend = backend
        self.buf = b""

    def fill(self):
        try:
            data = self.conn.recv(1 << 16)
        except (ConnectionResetError, BrokenPipeError) as e:
            raise _Closed(str(e))
        if not data:
            raise _Closed("eof")
        self.backend._count(len(data))
        self.buf += data

    def until(self, sep, limit):
        """Bytes up to and including sep."""
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out, self.buf = self.buf[:i + len(sep)], self.buf[i + len(sep):]
                return out
            if len(self.buf) > limit:
                raise _Bad(f"no {sep!r} within {limit} bytes")
            self.fill()

    def exactly(self, n):
        while len(self.buf) < n:
            self.fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def take(self):
        out, self.buf = self.buf, b""
        return out


def _parse_fields(lines, what):
    fields = []
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or " " in name:
            raise _Bad(f"invalid {what} line {line!r}")
        fields.append((name, value.strip(" \t")))
    return fields


def _read_chunked(reader, req):
    """Decodes a chunked body into req (RFC 9112 §7.1)."""
    raw, body = [], []
    while True:
        line = reader.until(b"\r\n", 8192)
        raw.append(line)
        size_text = line[:-2].split(b";", 1)[0]
        try:
            size = int(size_text, 16)
        except ValueError:
            raise _Bad(f"invalid chunk size line {line!r}")
        if size_text.strip(b"0123456789abcdefABCDEF") or size < 0:
            raise _Bad(f"invalid chunk size line {line!r}")
        if size == 0:
            break
        data = reader.exactly(size + 2)
        raw.append(data)
        if data[-2:] != b"\r\n":
            raise _Bad("chunk data not followed by CRLF")
        body.append(data[:-2])
    trailer_lines = []
    while True:
        line = reader.until(b"\r\n", 8192)
        raw.append(line)
        if line == b"\r\n":
            break
        trailer_lines.append(line[:-2].decode("latin-1"))
    req.trailers = _parse_fields(trailer_lines, "trailer")
    req.raw_body = b"".join(raw)
    req.body = b"".join(body)
    req.chunked = True


class RecordingBackend(helpers.Backend):
    def __init__(self, behaviour=None, name="http", port=None, **options):
        if behaviour is None:
            behaviour = Behaviour(**options)
        elif options:
            raise TypeError("give either behaviour or Behaviour options, not both")
        elif isinstance(behaviour, dict):
            behaviour = Behaviour(**behaviour)
        self.behaviour = behaviour
        self.requests = []
        self.incomplete = []
        self._received = 0
        self._nconns = 0
        self._nrequests = 0
        super().__init__(self._serve_http, name=name, port=port)

    def __repr__(self):
        return f"<RecordingBackend {self.name} {self.address}>"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    @property
    def received_bytes(self):
        with self._lock:
            return self._received

    def _count(self, n):
        with self._lock:
            self._received += n

    def wait_requests(self, n, timeout=5):
        helpers.wait_until(lambda: len(self.requests) >= n, timeout,
                           what=f"{n} requests on {self}")
        return list(self.requests)

    def wait_incomplete(self, n, timeout=5):
        helpers.wait_until(lambda: len(self.incomplete) >= n, timeout,
                           what=f"{n} incomplete requests on {self}")
        return list(self.incomplete)

    # serving

    def _serve_http(self, conn, _backend):
        with self._lock:
            self._nconns += 1
            index = self._nconns
        reader = _Reader(conn, self)
        while not self._stopping.is_set():
            req = Request(index)
            try:
                self._read_request(reader, req)
            except (_Closed, _Bad, OSError) as e:
                if req.raw_head or reader.buf or isinstance(e, _Bad):
                    req.error = f"{type(e).__name__.strip('_').lower()}: {e}"
                    req.raw_head += reader.take()
                    with self._lock:
                        self.incomplete.append(req)
                return
            with self._lock:
                self._nrequests += 1
                req.number = self._nrequests
                self.requests.append(req)
            try:
                if not self._answer(conn, reader, req, self._behaviour_for(req)):
                    return
            except _Closed:
                return

    def _behaviour_for(self, req):
        b = self.behaviour
        if callable(b) and not isinstance(b, Behaviour):
            b = b(req)
        if b is None:
            return Behaviour()
        if isinstance(b, dict):
            return Behaviour(**b)
        return b

    def _read_request(self, reader, req):
        head = reader.until(b"\r\n\r\n", HEAD_LIMIT)
        req.raw_head = head
        lines = head[:-4].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            raise _Bad(f"invalid request line {lines[0]!r}")
        req.method, req.target, req.version = parts
        req.fields = _parse_fields(lines[1:], "field")
        if isinstance(self.behaviour, Behaviour) and self.behaviour.early:
            req.raw_body = req.body = reader.take()
            return
        te = ",".join(req.headers("Transfer-Encoding")).strip()
        lengths = req.headers("Content-Length")
        if te:
            if te.split(",")[-1].strip().lower() != "chunked":
                raise _Bad(f"cannot read a body with Transfer-Encoding {te!r}")
            _read_chunked(reader, req)
        elif lengths:
            if len(set(lengths)) != 1 or not lengths[0].isdigit():
                raise _Bad(f"invalid Content-Length {lengths!r}")
            req.raw_body = req.body = reader.exactly(int(lengths[0]))

    def _wait(self, seconds):
        """Sleeps; raises _Closed when the backend stops meanwhile."""
        if seconds > 0 and self._stopping.wait(seconds):
            raise _Closed("stopping")

    def _answer(self, conn, reader, req, b):
        """Answers req per b; True when the connection goes on."""
        if b.closes_unanswered(req.number):
            return False
        if b.never_answer:
            while True:
                reader.fill()
                reader.take()
        self._wait(b.delay)
        for interim in b.interim:
            conn.sendall(interim)
        if b.raw is not None:
            conn.sendall(b.raw)
            return False
        if b.early:
            self._answer_early(conn, reader, req, b)
            return False
        if b.upgrade:
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\n\r\n")
            self._echo(conn, reader)
            return False

        connection = req.header("Connection", "").lower()
        keep = not b.close and b.framing != "close" and (
            "close" not in connection if req.version == "HTTP/1.1"
            else "keep-alive" in connection)
        no_body = (b.framing == "none" or b.status < 200 or b.status in (204, 304))
        body = None if no_body else self._body(req, b)
        size = b.big if b.big else (len(body) if body is not None else 0)

        fields = [("Server", "recording-backend"), ("Content-Type", "text/plain"),
                  ("X-Backend", self.name)]
        names = {n.lower() for n, _ in b.fields}
        fields = [f for f in fields if f[0].lower() not in names] + b.fields
        if not no_body:
            if b.framing == "length":
                fields.append(("Content-Length", str(size)))
            elif b.framing == "chunked":
                fields.append(("Transfer-Encoding", "chunked"))
        if not keep:
            fields.append(("Connection", "close"))
        reason = b.reason if b.reason is not None else self._reason(b.status)
        head = f"HTTP/1.1 {b.status} {reason}\r\n" + "".join(
            f"{n}: {v}\r\n" for n, v in fields) + "\r\n"
        conn.sendall(head.encode("latin-1"))
        if not no_body and req.method != "HEAD":
            self._send_body(conn, b, body)
        return keep

    @staticmethod
    def _reason(status):
        try:
            return http.HTTPStatus(status).phrase
        except ValueError:
            return "Whatever"

    def _body(self, req, b):
        if b.big:
            return None
        body = b.body
        if callable(body):
            body = body(req)
        if body is None:
            body = self.name + "\n"
        return body.encode("latin-1") if isinstance(body, str) else bytes(body)

    def _pieces(self, b, body):
        if b.big:
            yield from helpers.pattern(b.big, b.seed, chunk=b.chunk_size if b.framing ==
                                       "chunked" else 1 << 16)
            return
        step = b.chunk_size if b.framing == "chunked" or b.chunk_delay else len(body) or 1
        for i in range(0, len(body), step):
            yield body[i:i + step]

    def _send_body(self, conn, b, body):
        for i, piece in enumerate(self._pieces(b, body)):
            if i:
                self._wait(b.chunk_delay)
            if b.framing == "chunked":
                piece = b"%x\r\n" % len(piece) + piece + b"\r\n"
            conn.sendall(piece)
        if b.framing == "chunked":
            trailers = "".join(f"{n}: {v}\r\n" for n, v in b.trailers)
            conn.sendall(b"0\r\n" + trailers.encode("latin-1") + b"\r\n")

    def _answer_early(self, conn, reader, req, b):
        b = Behaviour(**{k: getattr(b, k) for k in Behaviour.__slots__ if k != "early"})
        b.close = True
        self._answer(conn, reader, req, b)
        conn.shutdown(socket.SHUT_WR)
        while True:                 # what the peer still sends, until it closes
            try:
                reader.fill()
            except _Closed:
                return
            reader.take()

    def _echo(self, conn, reader):
        """After 101: every byte back, until the peer half-closes; then
        half-closes too."""
        pending = reader.take()
        if pending:
            conn.sendall(pending)
        while True:
            try:
                reader.fill()
            except _Closed:
                break
            conn.sendall(reader.take())
        try:
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class RecordingBackends:
    """Starts backends and stops them all at the end: a context manager
    whose value is start(behaviour=None, name="http", port=None,
    **options) -> RecordingBackend. A test module's fixture:

        @pytest.fixture
        def http_backends():
            with RecordingBackends() as start:
                yield start
    """

    def __init__(self):
        self.started = []

    def start(self, behaviour=None, name="http", port=None, **options):
        b = RecordingBackend(behaviour, name=name, port=port, **options)
        self.started.append(b)
        return b

    def __enter__(self):
        return self.start

    def __exit__(self, *exc):
        for b in self.started:
            b.stop()
