"""auto/demo-backend.py: a tiny HTTP backend for `make run` (auto/run-demo).

usage: demo-backend.py PORT [READY_FILE]
Listens on 127.0.0.1:PORT and answers every request with
"hello from backend PORT". Writes READY_FILE once it is listening.
"""

import http.server
import signal
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self, send_body=True):
        body = ("hello from backend %d\n" % self.server.server_address[1]).encode()
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def do_HEAD(self):
        self._answer(send_body=False)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _answer

    def log_message(self, fmt, *args):
        pass


def main():
    port = int(sys.argv[1])
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    except OSError as e:
        sys.exit("demo backend: cannot listen on 127.0.0.1:%d: %s" % (port, e.strerror))
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if len(sys.argv) > 2:
        with open(sys.argv[2], "w") as f:
            f.write("%d\n" % port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
