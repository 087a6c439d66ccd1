"""The output path under failure (issue 12, "Bad input"): a filter that
cannot build a response head, or a client that goes away mid-response,
ends that one request cleanly - logged with the client (and the server
for a proxied response) - and lbd goes on serving. Real binary, real
backends, plain sockets."""

import socket
import struct

import helpers
from helpers import connect, log_line
from test_http_listener import Client
from test_http_proxy import conf, http_backends, read_response, request  # noqa: F401

CLIENT = r"\*\d+ client 127\.0\.0\.1:\d+: "


def big_header_conf():
    # a response field whose value is the request's X-Big: more than the
    # request's 4 KiB arena for values filters make
    return conf(routes='{ path = "/p"; upstream = "web"; '
                       'response_headers = { add = ["X-Echo: $$http_x_big"]; }; },'
                       '{ path = "/r"; return = { status = 200; body = "ok\\n"; }; '
                       'response_headers = { add = ["X-Echo: $$http_x_big"]; }; }')


def test_response_headers_that_do_not_fit_end_the_request_and_lbd_goes_on(lbd, http_backends):
    a = http_backends()
    lbd.start(big_header_conf(), a=a)
    for path in ("/p", "/r"):
        with connect(lbd.address) as s:
            s.sendall(request(path, extra="X-Big: " + "z" * 6000 + "\r\n"))
            data = helpers.recv_all(s)
        # response_headers apply to lbd's errors too, so not even a 502 or
        # 500 fits: the connection ends with nothing rather than a head
        # without the edits the operator asked for
        assert data == b"", data[:200]
        # a small value works, on a new connection
        status, fields, body, _ = read_response(_client(lbd, request(path, extra="X-Big: y\r\n")))
        assert status == "HTTP/1.1 200 OK" and fields["x-echo"] == "y"
    lbd.wait_log(log_line("error", CLIENT + r"response_headers do not fit in 4096 bytes"))
    lbd.wait_log(log_line("info", CLIENT + r"502: the response head of server "
                                           r"127\.0\.0\.1:\d+ with response_headers does not fit"))
    lbd.wait_log(log_line("error", CLIENT + r"the response head with response_headers does "
                                            r"not fit; closing"))


def test_client_gone_mid_response_is_logged_with_the_server(lbd, http_backends):
    a = http_backends(big=64 << 20, framing="chunked", chunk_size=65536)
    lbd.start(conf(), a=a)
    s = connect(lbd.address)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(request("/"))
    got = 0
    while got < 1 << 20:
        got += len(s.recv(65536))
    # a reset, not a FIN: lbd's next send fails
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    lbd.wait_log(log_line("info", CLIENT + r"the response of server 127\.0\.0\.1:\d+ of "
                                           r'upstream "web" was cut off'), timeout=10)
    # the worker is fine: the next request is served whole
    c = Client(lbd.address)
    c.send(request("/x", method="HEAD"))
    status, fields, _, _ = read_response(c, head_request=True)
    c.close()
    assert status == "HTTP/1.1 200 OK"


def _client(lbd, data):
    c = Client(lbd.address)
    c.send(data)
    return c


def test_forwarded_head_that_outgrows_its_room_is_431(lbd, http_backends):
    # the client's 8 KB field fits its max_header_size, but request_headers
    # copy it twice into the head sent upstream, which then does not fit
    a = http_backends()
    lbd.start(conf(routes='{ upstream = "web"; request_headers = { add = '
                          '["X-Copy1: $$http_x_big", "X-Copy2: $$http_x_big"]; }; }'), a=a)
    with connect(lbd.address) as s:
        s.sendall(request("/", extra="X-Big: " + "q" * 8000 + "\r\n"))
        data = helpers.recv_all(s)
    assert data.startswith(b"HTTP/1.1 431 "), data[:100]
    assert a.requests == []
    lbd.wait_log(log_line("info", CLIENT + r"431: the request head with forwarding fields "
                                           r"does not fit"))
    status, _, _, _ = read_response(_client(lbd, request("/", extra="X-Big: q\r\n")))
    assert status == "HTTP/1.1 200 OK"
