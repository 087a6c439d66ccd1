"""The admin API's status page, GET / (SPEC §9): the HTML as lbd serves it
(its type, a Content-Security-Policy that lets only its own inline script
and style run, HEAD, 405 for other methods, nothing loaded from elsewhere,
no token needed for the page itself), and the page in a real browser:
headless Chromium (Debian's `chromium`) shows the servers as lbd has them,
a server drained with lbctl as draining, and its Drain and Enable buttons
work once the operator has typed the token. Each browser test saves a
screenshot under objs/ whether it passes or fails."""

import base64
import fcntl
import hashlib
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

import helpers
from helpers import wait_until
from http_backend import RecordingBackends

TOKEN = "page-token-0123456789abcdef"
SHOTS = os.path.join(helpers.ROOT, "objs")

CONF = """
upstreams = { web = { keepalive = 0; servers = ( { address = "$a"; }, { address = "$b"; } ); }; };
listeners = ( { protocol = "http"; listen = "$listen"; routes = ( { upstream = "web"; } ); },
              { protocol = "admin"; listen = "$admin"; allow = ["127.0.0.1/32"]; $token } );
"""


@pytest.fixture
def http_backends():
    with RecordingBackends() as start:
        yield start


def start(lbd, http_backends, tmp_path, token=False):
    """lbd with backends a and b behind upstream web, and an admin
    listener (with token_file when token): (a, b, admin address)."""
    a, b = http_backends(name="a"), http_backends(name="b")
    where = f"127.0.0.1:{helpers.free_port()}"
    line = ""
    if token:
        path = tmp_path / "admin.token"
        path.write_text(TOKEN + "\n")
        path.chmod(0o600)
        line = f'token_file = "{path}";'
    lbd.start(CONF, a=a, b=b, admin=where, token=line)
    return a, b, where


def request(address, method, path, headers=None):
    """(status, headers, body bytes) of one request to address, or to the
    unix socket at address when it is a path."""
    if address.startswith("/"):
        conn = http.client.HTTPConnection("lbd", timeout=10)
        conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.sock.settimeout(10)
        conn.sock.connect(address)
    else:
        host, port = address.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.msg, resp.read()
    finally:
        conn.close()


def inline_hash(page, tag):
    """The CSP source of the first <tag> element's text: 'sha256-...'."""
    m = re.search(rf"<{tag}>(.*?)</{tag}>".encode(), page, re.S)
    assert m, f"no <{tag}> in the page"
    return "'sha256-" + base64.b64encode(hashlib.sha256(m.group(1)).digest()).decode() + "'"


def servers(lbd):
    """{address: state} as lbctl sees it."""
    out = lbd.lbctl("servers", "web", "--json")
    assert out.returncode == 0, out.stderr
    return {s["address"]: s["state"] for s in json.loads(out.stdout)["servers"]}


# The page as lbd serves it ---------------------------------------------------------

def test_the_page_is_html_with_a_policy_and_loads_nothing_from_elsewhere(lbd, http_backends,
                                                                         tmp_path):
    _, _, where = start(lbd, http_backends, tmp_path)
    status, headers, page = request(where, "GET", "/")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert int(headers["Content-Length"]) == len(page)
    csp = [d.strip() for d in headers["Content-Security-Policy"].split(";")]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    # only the page's own script and style, by their hashes
    assert f"script-src {inline_hash(page, 'script')}" in csp
    assert f"style-src {inline_hash(page, 'style')}" in csp
    text = page.decode()
    assert text.startswith("<!DOCTYPE html>")
    assert "://" not in text and "@import" not in text and "url(" not in text
    markup = re.sub(r"<script>.*?</script>", "", text, flags=re.S)
    links = re.findall(r"""\b(?:src|href|action)\s*=\s*["']?([^"'\s>]*)""", markup, re.I)
    assert links == ["data:,"], links
    # no markup from data: every string goes in as text
    assert "innerHTML" not in text and "insertAdjacentHTML" not in text

    status, headers, body = request(where, "HEAD", "/")
    assert (status, body) == (200, b"")
    assert int(headers["Content-Length"]) == len(page)
    assert headers["Content-Security-Policy"]
    # the admin socket serves it too
    assert request(os.path.join(lbd.dir, "admin.sock"), "GET", "/")[2] == page


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_only_get_and_head_reach_the_page(lbd, http_backends, tmp_path, method):
    _, _, where = start(lbd, http_backends, tmp_path)
    status, headers, body = request(where, method, "/", {"Content-Length": "0"})
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    assert json.loads(body) == {"error": f"/ takes GET, not {method}"}


def test_with_a_token_the_page_needs_none_and_everything_else_does(lbd, http_backends,
                                                                     tmp_path):
    """A browser cannot send a token when it navigates; the page holds no
    data, its script sends the token for every request for data."""
    _, _, where = start(lbd, http_backends, tmp_path, token=True)
    assert request(where, "GET", "/")[0] == 200
    assert request(where, "GET", "/?refresh=1")[0] == 200
    assert request(where, "HEAD", "/")[0] == 200
    for method, path in (("GET", "/status"), ("GET", "/upstreams"), ("POST", "/")):
        assert request(where, method, path, {"Content-Length": "0"})[0] == 401, (method, path)
    assert request(where, "GET", "/status", {"Authorization": f"Bearer {TOKEN}"})[0] == 200


# The page in a browser -----------------------------------------------------------------

def process_group(pgid):
    """Live pids of process group pgid."""
    pids = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/stat") as f:
                data = f.read()
        except (OSError, ValueError):
            continue
        fields = data[data.rindex(")") + 2:].split()
        if fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            pids.append(int(name))
    return pids


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe
    (--remote-debugging-pipe: it reads commands on its descriptor 3 and
    writes answers and events on 4, JSON messages each ended by a NUL).
    It runs in a process group of its own; close() asks it to quit, then
    kills by pid whatever of it is left (the group and its crash handlers,
    which start sessions of their own). Every wait is bounded."""

    def __init__(self, directory):
        exe = shutil.which("chromium")
        assert exe, ("chromium is not installed: the status page is tested in a real "
                     "browser (Debian package chromium; sh auto/deps installs it)")
        os.makedirs(directory, exist_ok=True)
        self.log_path = os.path.join(directory, "chromium.log")
        # its profile, caches and crash reports stay in directory
        self.home = str(directory)
        env = dict(os.environ, HOME=self.home, XDG_CONFIG_HOME=f"{self.home}/.config",
                   XDG_CACHE_HOME=f"{self.home}/.cache")
        self.events = []
        self.session = None
        self._id = 0
        self._buf = b""
        # above 4, so that the shell's 3<& and 4>& cannot clobber one another
        # (bash: dash takes one digit only)
        cmd_r, self._w = (self._high(fd) for fd in os.pipe())
        self._r, out_w = (self._high(fd) for fd in os.pipe())
        argv = [exe, "--headless=new", "--no-sandbox", "--disable-gpu",
                "--remote-debugging-pipe", f"--user-data-dir={directory}/profile",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-sync", "--disable-background-networking",
                "--disable-component-update", "--window-size=1200,800", "about:blank"]
        try:
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    ["bash", "-c", f'exec "$@" 3<&{cmd_r} 4>&{out_w}', "bash"] + argv,
                    pass_fds=(cmd_r, out_w), start_new_session=True, env=env,
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        except OSError:
            for fd in (cmd_r, out_w, self._r, self._w):
                os.close(fd)
            raise
        os.close(cmd_r)
        os.close(out_w)

    @staticmethod
    def _high(fd):
        high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(fd)
        return high

    def _message(self, deadline):
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._r], [], [], left)[0]:
                raise AssertionError("chromium did not answer in time; see " + self.log_path)
            data = os.read(self._r, 1 << 20)
            if not data:
                raise AssertionError("chromium exited; see " + self.log_path)
            self._buf += data
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method, params=None, session=True, timeout=10):
        """The result of one DevTools command (on the page's session unless
        session is False); events that arrive meanwhile go to .events."""
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        try:
            os.write(self._w, json.dumps(msg).encode() + b"\0")
        except BrokenPipeError:
            raise AssertionError("chromium exited; see " + self.log_path) from None
        deadline = time.monotonic() + timeout
        while True:
            reply = self._message(deadline)
            if reply.get("id") != self._id:
                self.events.append(reply)
                continue
            if "error" in reply:
                raise AssertionError(f"{method}: {reply['error']}")
            return reply["result"]

    def open(self, url):
        target = self.send("Target.createTarget", {"url": "about:blank"},
                           session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]
        self.send("Network.enable")
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Page.navigate", {"url": url})

        def loaded():
            try:
                return self.evaluate(f"location.href == {json.dumps(url)} "
                                     "&& document.readyState == 'complete'")
            except AssertionError:      # between two documents
                return False
        wait_until(loaded, 10, interval=0.05, what=f"chromium to load {url}")

    def evaluate(self, expression):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression, timeout=10, what=None):
        return wait_until(lambda: self.evaluate(expression), timeout, interval=0.1,
                          what=what or expression)

    def type_into(self, selector, text):
        """Focuses the element and types text as keyboard input would."""
        self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        self.send("Input.insertText", {"text": text})

    def click(self, selector):
        self.evaluate(f"document.querySelector({json.dumps(selector)}).click()")

    def screenshot(self, path):
        """Saves what the page shows as a PNG at path; on a failure (the
        browser gone), says so on stderr rather than hide the test's own."""
        try:
            data = self.send("Page.captureScreenshot", {"format": "png"}, timeout=20)["data"]
        except AssertionError as e:
            print(f"no screenshot {path}: {e}", file=sys.stderr)
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def requested(self):
        """Every URL the page asked for."""
        return [e["params"]["request"]["url"] for e in self.events
                if e.get("method") == "Network.requestWillBeSent"]

    def problems(self):
        """Exceptions and console errors of the page (a policy violation
        among them)."""
        found = []
        for e in self.events:
            if e.get("method") == "Runtime.exceptionThrown":
                found.append(e["params"]["exceptionDetails"].get("text", "exception"))
            elif (e.get("method") == "Runtime.consoleAPICalled"
                  and e["params"].get("type") == "error"):
                found.append(str(e["params"].get("args")))
        return found

    def processes(self):
        """Live pids of this browser: its process group, and its crash
        handlers, which leave the group (found by their database, under
        this browser's HOME)."""
        return sorted(set(process_group(self.proc.pid)) | set(helpers.processes_with_arg(
            f"--database={self.home}/.config/chromium/Crash Reports")))

    def close(self):
        seen = set(self.processes())
        try:
            self.send("Browser.close", session=False, timeout=5)
        except AssertionError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        try:
            wait_until(lambda: not self.processes(), 3, what="chromium to exit")
        except AssertionError:
            pass
        for pid in self.processes():
            seen.add(pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.wait(5)
        wait_until(lambda: not self.processes(), 5, what="chromium's processes to end")
        # the ones whose parent ended came back to us, a subreaper: reap
        # them too (bounded: a zombie is dead already)
        try:
            wait_until(lambda: all(reaped(p) for p in seen), 5, what="chromium's zombies")
        except AssertionError:
            pass
        os.close(self._r)
        os.close(self._w)


def reaped(pid):
    """True once pid is gone for good: reaped here, or by its parent."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    except ChildProcessError:
        pass
    return not os.path.exists(f"/proc/{pid}")


@pytest.fixture
def browser(tmp_path):
    b = Browser(tmp_path / "chromium")
    try:
        yield b
    finally:
        b.close()


def screenshot_path(name):
    """objs/NAME, the screenshot of an earlier run removed."""
    path = os.path.join(SHOTS, name)
    if os.path.exists(path):
        os.unlink(path)
    return path


def rows_js():
    """The server table as the page shows it: [[upstream, address, state,
    the text of the visible button], ...]."""
    return """Array.from(document.querySelectorAll("section.upstream tbody tr")).map(tr =>
        [tr.dataset.upstream, tr.querySelector("td.server").firstChild.textContent,
         tr.querySelector("td.state").textContent,
         Array.from(tr.querySelectorAll("button")).filter(b => !b.hidden)
             .map(b => b.textContent).join()])"""


def row_js(address, what):
    return (f'document.querySelector(\'tr[data-address="{address}"] {what}\')')


# How many pixels the upstream's graph has painted under its label.
GRAPH_PIXELS = """(() => {
    const c = document.querySelector("section.upstream canvas"), top = c.height / 3;
    const d = c.getContext("2d").getImageData(0, top, c.width, c.height - top).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) {
        n += d[i] > 0;
    }
    return n;
})()"""


def test_a_browser_shows_the_servers_and_one_drained_with_lbctl(lbd, http_backends, browser,
                                                                tmp_path):
    a, b, where = start(lbd, http_backends, tmp_path)
    out = lbd.lbctl("drain", "web", b.address)
    assert out.returncode == 0, out.stderr
    shot = screenshot_path("status-page.png")
    load = None
    try:
        browser.open(f"http://{where}/")
        browser.wait_for("document.querySelectorAll('section.upstream tbody tr').length == 2",
                         what="the server table")
        assert browser.evaluate(rows_js()) == [["web", a.address, "up", "Drain"],
                                               ["web", b.address, "draining", "Enable"]]
        status = {k: browser.evaluate(f"document.getElementById('{k}').textContent")
                  for k in ("listeners", "generation", "workers", "master-pid")}
        assert status == {"listeners": "2", "generation": "0", "workers": "2",
                          "master-pid": str(lbd.master_pid)}
        # the style applies too: the policy lets its hash through
        assert browser.evaluate(f"getComputedStyle({row_js(b.address, 'td.state')}).fontWeight"
                                ) == "600"
        # the rates come from two polls' counters: requests_total and
        # failures_total, or connections_total and no error rate from an
        # lbd that does not count requests; traffic while the page is
        # open, each request a new connection to a
        fields = json.loads(request(where, "GET", "/upstreams")[2])["upstreams"][0]["servers"][0]
        load = helpers.Load(lbd.address, duration=20,
                            action=lambda address: request(address, "GET", "/")[0])
        load.start()
        browser.wait_for(f"parseFloat({row_js(a.address, 'td.req-rate')}.textContent) > 0",
                         what="a's rate")
        assert browser.evaluate(f"{row_js(b.address, 'td.req-rate')}.textContent") == "0.0"
        assert browser.evaluate(f"{row_js(a.address, 'td.err-rate')}.textContent") == \
            ("0.0" if "failures_total" in fields else "\u2013")
        assert browser.evaluate("document.querySelector('section.upstream th.num + th.num + "
                                "th.num').textContent") == \
            ("Req/s" if "requests_total" in fields else "Conn/s")
        # the graph: the traffic painted below its label line
        browser.wait_for(GRAPH_PIXELS + " > 500", what="the traffic graph")
        browser.screenshot(shot)
        load.stop()
        assert not load.failures and {x.value for x in load.attempts} == {200}

        # a change made with lbctl while the page is open: the next poll shows it
        assert lbd.lbctl("enable", "web", b.address).returncode == 0
        browser.wait_for(f"{row_js(b.address, 'td.state')}.textContent == 'up'", 5,
                         what="the page to show b up again")
    except BaseException:
        browser.screenshot(shot)    # what the page showed when it failed
        raise
    finally:
        if load:
            load.stop()
    assert open(shot, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    requested = browser.requested()
    assert f"http://{where}/status" in requested and f"http://{where}/upstreams" in requested
    assert [u for u in requested if not u.startswith(f"http://{where}/")] == []
    assert browser.problems() == []


def test_the_buttons_work_once_the_token_is_typed(lbd, http_backends, browser, tmp_path):
    a, b, where = start(lbd, http_backends, tmp_path, token=True)
    alert = "document.getElementById('alert').textContent"
    message = "document.getElementById('message').textContent"
    shot = screenshot_path("status-page-token.png")
    try:
        browser.open(f"http://{where}/")
        browser.wait_for(f"{alert}.includes('401')", what="the page to say it needs a token")
        assert "needs its token; type it above" in browser.evaluate(alert)
        assert browser.evaluate("document.querySelectorAll('section.upstream').length") == 0

        # what lbd would never accept is not kept
        browser.type_into("#token", "not a token!")
        browser.click("#token-use")
        assert "only letters, digits" in browser.evaluate(message)
        assert browser.evaluate("sessionStorage.getItem('lbd-admin-token')") is None
        browser.evaluate("document.getElementById('token').value = ''")

        browser.type_into("#token", TOKEN)
        browser.click("#token-use")
        browser.wait_for("document.querySelectorAll('section.upstream tbody tr').length == 2",
                         what="the server table")
        assert browser.evaluate(alert) == ""
        # kept for the tab, not in the field
        assert browser.evaluate("sessionStorage.getItem('lbd-admin-token')") == TOKEN
        assert browser.evaluate("document.getElementById('token').value") == ""

        browser.click(f'tr[data-address="{a.address}"] button.drain')
        wait_until(lambda: servers(lbd)[a.address] == "draining", 5, what="a drained")
        browser.wait_for(f"{row_js(a.address, 'td.state')}.textContent == 'draining'", 5)
        assert "Drained " + a.address in browser.evaluate(message)
        # the page's POST came from the listener, with its Origin accepted
        assert re.search(rf'admin: 127\.0\.0\.1:\d+ drained server {a.address} in upstream '
                         r'"web"', lbd.error_log())

        browser.click(f'tr[data-address="{a.address}"] button.enable')
        wait_until(lambda: servers(lbd)[a.address] == "up", 5, what="a enabled")
        browser.wait_for(f"{row_js(a.address, 'td.state')}.textContent == 'up'", 5)

        # a wrong token: the button's refusal is shown, nothing changes
        browser.type_into("#token", "wrong-token-0123456789")
        browser.click("#token-use")
        browser.wait_for(f"{alert}.includes('refused this token')",
                         what="the refusal of the wrong token")
        browser.click(f'tr[data-address="{b.address}"] button.drain')
        browser.wait_for(f"{message}.startsWith('drain {b.address} in web: 401')",
                         what="the drain's refusal")
        assert servers(lbd) == {a.address: "up", b.address: "up"}
    finally:
        browser.screenshot(shot)
    assert open(shot, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert [u for u in browser.requested() if not u.startswith(f"http://{where}/")] == []
    assert browser.problems() == []
