"""The access log of http listeners (SPEC §7): the combined, json and
custom formats, lines for generated errors, reopening on USR1 and the
1 s flush. Lines are read from the file once lbd has flushed them."""

import json
import os
import re
import signal

from helpers import connect, lbd_test, wait_until

# $$ is a literal $ for the helper's string.Template
ROUTES = """
  routes = (
    { path = "/ok"; return = { status = 200; body = "ok\\n"; }; }
  );
"""


def conf(log):
    return ('workers = 1;\nlisteners = ( { protocol = "http"; listen = "$listen"; '
            'name = "web";\n  access_log = ' + log + "\n" + ROUTES + "} );\n")


def exchange(address, raw):
    with connect(address) as s:
        s.sendall(raw)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk


def get(address, path, extra=""):
    return exchange(address, (f"GET {path} HTTP/1.1\r\nHost: ex.test\r\n{extra}"
                              "Connection: close\r\n\r\n").encode("latin-1"))


def lines(path, n, timeout=5):
    """The first n lines of the file, waiting for the flush."""
    def ready():
        if not os.path.exists(path):
            return None
        with open(path, "rb") as f:
            got = f.read().decode("utf-8", "replace").splitlines()
        return got if len(got) >= n else None
    return wait_until(ready, timeout, what=f"{n} lines in {path}")


def test_combined_line(lbd):
    os.makedirs(os.path.join(lbd.dir, "logs"), exist_ok=True)
    lbd.start(conf('{ path = "logs/access.log"; };'))     # relative to the prefix
    get(lbd.address, "/ok", "Referer: http://r.test/\r\nUser-Agent: t/1.0\r\n")
    [line] = lines(os.path.join(lbd.dir, "logs/access.log"), 1)
    assert re.fullmatch(r'127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
                        r'"GET /ok HTTP/1\.1" 200 \d+ "http://r\.test/" "t/1\.0"', line), line


def test_json_lines_are_escaped(lbd):
    lbd.start(conf('{ path = "$dir/access.json"; format = "json"; };'))
    get(lbd.address, "/ok", "User-Agent: ua\tx\r\n")
    get(lbd.address, '/q"b\\s')
    first, second = [json.loads(x) for x in lines(os.path.join(lbd.dir, "access.json"), 2)]
    assert first["method"] == "GET" and first["uri"] == "/ok"
    assert first["protocol"] == "HTTP/1.1" and first["status"] == 200
    assert first["bytes_sent"] > 0 and first["host"] == "ex.test"
    assert first["user_agent"] == "ua\tx" and first["referer"] == ""
    assert first["remote_addr"] == "127.0.0.1"
    assert re.fullmatch(r"[0-9a-f]{32}", first["request_id"])
    assert first["upstream_addr"] == "" and isinstance(first["request_time"], float)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", first["time"])
    assert second["uri"] == '/q"b\\s' and second["status"] == 404
    with open(os.path.join(lbd.dir, "access.json")) as f:
        assert "\\u0009" in f.read()


def test_custom_format(lbd):
    lbd.start(conf('{ path = "$dir/custom.log"; format = "$$method $$uri $$status '
                   '$$http_x_a"; };'))
    get(lbd.address, "/ok?z=1", "X-A: hello\r\n")
    assert lines(os.path.join(lbd.dir, "custom.log"), 1) == ["GET /ok 200 hello"]


# libconfig reads \" as a quote: the format is {"ua":"$http_user_agent",...}
JSON_FORMAT = ('{\\"ua\\":\\"$$http_user_agent\\",\\"uri\\":\\"$$request_uri\\",'
               '\\"x\\":\\"$$http_x_a\\",\\"status\\":$$status}')


def test_custom_format_with_escape_json_makes_json_lines(lbd):
    lbd.start(conf('{ path = "$dir/a.json"; escape = "json";\n'
                   '  format = "' + JSON_FORMAT + '"; };'))
    ua = 'say "hi"\\ \tnow'
    # get() sends latin-1: these two characters are the UTF-8 bytes of "é"
    get(lbd.address, '/q"b\\s?a="1"', f"User-Agent: {ua}\r\nX-A: caf\u00c3\u00a9\r\n")
    get(lbd.address, "/ok")
    first, second = [json.loads(x) for x in lines(os.path.join(lbd.dir, "a.json"), 2)]
    assert first == {"ua": ua, "uri": '/q"b\\s?a="1"', "x": "caf\u00e9", "status": 404}
    assert second == {"ua": "", "uri": "/ok", "x": "", "status": 200}
    with open(os.path.join(lbd.dir, "a.json"), "rb") as f:
        raw = f.read()
    assert b'say \\"hi\\"\\\\ \\tnow"' in raw and b"caf\xc3\xa9" in raw


def test_custom_format_escape_default_writes_values_as_they_are(lbd):
    lbd.start(conf('{ path = "$dir/a.log"; escape = "default";\n'
                   '  format = "' + JSON_FORMAT + '"; };'))
    get(lbd.address, "/ok", 'User-Agent: a "b"\r\n')
    [line] = lines(os.path.join(lbd.dir, "a.log"), 1)
    assert line == '{"ua":"a "b"","uri":"/ok","x":"","status":200}'


def test_404_and_400_are_logged(lbd):
    lbd.start(conf('{ path = "$dir/a.log"; format = "$$request|$$status"; };'))
    get(lbd.address, "/nothing")
    exchange(lbd.address, b"GET /x HTTP/1.1\r\nBad Header\r\n\r\n")
    got = lines(os.path.join(lbd.dir, "a.log"), 2)
    assert got == ["GET /nothing HTTP/1.1|404", "GET /x HTTP/1.1|400"]


def test_no_line_without_a_request_line(lbd):
    lbd.start(conf('{ path = "$dir/a.log"; format = "$$status"; };'))
    with connect(lbd.address):
        pass
    get(lbd.address, "/ok")
    assert lines(os.path.join(lbd.dir, "a.log"), 1) == ["200"]


def test_reopen_on_usr1(lbd):
    lbd.start(conf('{ path = "$dir/a.log"; format = "$$uri"; };'))
    path = os.path.join(lbd.dir, "a.log")
    get(lbd.address, "/one")
    assert lines(path, 1) == ["/one"]
    os.rename(path, path + ".1")
    lbd.signal(signal.SIGUSR1)
    wait_until(lambda: os.path.exists(path), 5, what="a new access log")
    get(lbd.address, "/two")
    assert lines(path, 1) == ["/two"]
    assert lines(path + ".1", 1) == ["/one"]


def test_line_flushed_within_two_seconds(lbd):
    lbd.start(conf('{ path = "$dir/a.log"; format = "$$uri"; };'))
    get(lbd.address, "/ok")
    assert lines(os.path.join(lbd.dir, "a.log"), 1, timeout=2.5) == ["/ok"]


def test_unknown_variable_in_format(lbd):
    path = lbd.write_config(conf('{ path = "$dir/a.log";\n format = "$$hots"; };'))
    out = lbd_test(path)
    line = lbd.line_of('format = "$hots"')
    assert out.returncode != 0
    assert (f'{path}:{line}: access_log format: unknown variable "$hots" '
            f'(did you mean "$host"?)') in out.stderr, out.stderr


def test_unwritable_path_refuses_to_start(lbd):
    lbd.start(conf('{ path = "$dir/no/such/dir/a.log"; };'), wait=False)
    assert lbd.wait_exit() != 0
    assert "cannot open access log" in lbd.error_log() + lbd.stderr()


def test_request_with_a_body_logs_its_own_head(lbd):
    lbd.start(conf('{ path = "$dir/a.log"; format = "$$request|$$status|$$http_x"; };'))
    with connect(lbd.address) as s:
        s.sendall(b"POST /ok HTTP/1.1\r\nHost: a\r\nX: one\r\nContent-Length: 40000\r\n\r\n")
        s.sendall(b"B" * 40000)
        s.sendall(b"GET /ok HTTP/1.1\r\nHost: a\r\nX: two\r\nConnection: close\r\n\r\n")
        while s.recv(65536):
            pass
    assert lines(os.path.join(lbd.dir, "a.log"), 2) == ["POST /ok HTTP/1.1|200|one",
                                                        "GET /ok HTTP/1.1|200|two"]


def test_request_cut_off_in_its_body_is_logged_without_a_status(lbd):
    lbd.start(conf('{ path = "$dir/a.log"; format = "$$request|$$status|$$bytes_sent"; };'))
    with connect(lbd.address) as s:
        s.sendall(b"POST /ok HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\n\r\nabc")
    get(lbd.address, "/ok")
    assert sorted(lines(os.path.join(lbd.dir, "a.log"), 2)) == ["GET /ok HTTP/1.1|200|184",
                                                                "POST /ok HTTP/1.1||0"]
