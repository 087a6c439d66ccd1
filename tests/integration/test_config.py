"""Configuration checking (SPEC §2 `lbd -t`, §3): every error is one line
`FILE:LINE: message` and exit 1; a valid file prints `configuration ok`; a
test never binds a listening socket."""

import os
import re
import socket
import subprocess
import tempfile
import textwrap

import pytest

from helpers import LBD, free_port, lbctl, lbd_test, listening_sockets

UPSTREAM = """\
upstreams = {
  backend = {
    servers = ( { address = "127.0.0.1:9001"; } );
  };
};
"""
LISTENER = """\
listeners = (
  { protocol = "tcp"; listen = "127.0.0.1:8080"; upstream = "backend"; }
);
"""

GLOBAL_SETTINGS = ("admin_socket, error_log, ipv6_prefix, limits_memory, listeners, log_level, "
                   "max_old_generations, pid_file, shutdown_timeout, upgrade_timeout, upstreams, "
                   "user, worker_rlimit_nofile, workers")
ROUTE_SETTINGS = ("allow, cookie, deny, error_pages, gzip, header, host, limits, method, path, "
                  "path_prefix, path_regex, query, "
                  "redirect, request_buffering, request_headers, response_headers, return, "
                  "rewrite, upstream, waf")

# (name, configuration, line, message): one class of error each.
BROKEN = [
    ("cidr_with_host_bits",
     'upstreams = { backend = { servers = ( { address = "127.0.0.1:9001"; } ); }; };\n'
     'listeners = ( { protocol = "tcp"; listen = "127.0.0.1:9000"; upstream = "backend";\n'
     '  allow = ["10.0.0.0/8", "192.168.1.1/24"]; } );\n',
     3, 'invalid address block "192.168.1.1/24": host bits set in "192.168.1.1/24" '
        '(did you mean "192.168.1.0/24"?)'),
    ("unknown_setting_with_did_you_mean",
     'workers = 1;\nlog_levle = "info";\n',
     2, 'unknown setting "log_levle" in the global section (did you mean "log_level"?); '
        'valid here: ' + GLOBAL_SETTINGS),
    ("unknown_setting_without_suggestion",
     'workers = 1;\ncolour = "blue";\n',
     2, 'unknown setting "colour" in the global section; valid here: ' + GLOBAL_SETTINGS),
    ("unknown_setting_in_a_server",
     'upstreams = {\n  backend = {\n'
     '    servers = ( { address = "127.0.0.1:9001"; max_conn = 10; } );\n  };\n};\n',
     3, 'unknown setting "max_conn" in server #1 of upstream "backend" '
        '(did you mean "max_conns"?); valid here: address, backup, max_conns, weight'),
    ("wrong_type_integer",
     'upstreams = {\n  backend = {\n'
     '    servers = ( { address = "127.0.0.1:9001"; weight = "3"; } );\n  };\n};\n',
     3, '"weight" must be an integer, not a string'),
    ("wrong_type_boolean",
     'upstreams = {\n  backend = {\n'
     '    servers = ( { address = "127.0.0.1:9001"; backup = 1; } );\n  };\n};\n',
     3, '"backup" must be true or false, not an integer'),
    ("workers_out_of_range",
     'pid_file = "lbd.pid";\nworkers = 0;\n',
     2, '"workers" must be between 1 and 256, got 0'),
    ("integer_out_of_range",
     'upstreams = {\n  backend = {\n    retries = 101;\n'
     '    servers = ( { address = "127.0.0.1:9001"; } );\n  };\n};\n',
     3, '"retries" must be between 0 and 100, got 101'),
    ("duration_out_of_range",
     'upstreams = {\n  backend = {\n    connect_timeout = "2h";\n'
     '    servers = ( { address = "127.0.0.1:9001"; } );\n  };\n};\n',
     3, '"connect_timeout" must be between 1ms and 3600000ms, got 7200000ms'),
    ("bad_duration",
     UPSTREAM + 'listeners = (\n  { protocol = "tcp"; listen = "127.0.0.1:8080"; '
     'upstream = "backend";\n    idle_timeout = "10 minutes"; }\n);\n',
     8, '"idle_timeout" must be a duration such as "250ms", "5s", "2m", "1h" or "1d", '
        'got "10 minutes"'),
    ("bad_listen_port",
     UPSTREAM + 'listeners = (\n  { protocol = "tcp"; listen = "127.0.0.1:99999"; '
     'upstream = "backend"; }\n);\n',
     7, 'invalid address "127.0.0.1:99999" in "listen": invalid port "99999" '
        '(must be 1..65535)'),
    ("bad_server_address",
     'upstreams = {\n  backend = {\n'
     '    servers = ( { address = "localhost"; } );\n  };\n};\n',
     3, 'invalid address "localhost" in "address": expected "HOST:PORT", "[IPV6]:PORT", '
        '"*:PORT" or "unix:PATH"'),
    ("unknown_passive_setting_with_did_you_mean",
     'upstreams = {\n  backend = {\n    passive = { max_fail = 3; };\n'
     '    servers = ( { address = "127.0.0.1:9001"; } );\n  };\n};\n',
     3, 'unknown setting "max_fail" in "passive" of upstream "backend" '
        '(did you mean "max_fails"?)'),
    ("passive_fail_timeout_out_of_range",
     'upstreams = {\n  backend = {\n    passive = { max_fails = 2; fail_timeout = "0s"; };\n'
     '    servers = ( { address = "127.0.0.1:9001"; } );\n  };\n};\n',
     3, '"fail_timeout" must be between 1ms and 86400000ms, got 0ms'),
    ("passive_is_a_group",
     'upstreams = {\n  backend = {\n    passive = 3;\n'
     '    servers = ( { address = "127.0.0.1:9001"; } );\n  };\n};\n',
     3, '"passive" must be a group { ... }, not an integer'),
    ("unknown_enum_value_with_did_you_mean",
     'upstreams = {\n  backend = {\n    balance = "round-robin";\n'
     '    servers = ( { address = "127.0.0.1:9001"; } );\n  };\n};\n',
     3, 'invalid value "round-robin" for "balance" (did you mean "round_robin"?); '
        'expected one of: round_robin, least_conn, random_two, hash'),
    ("unknown_log_level",
     'workers = 1;\nlog_level = "verbose";\n',
     2, 'invalid value "verbose" for "log_level"; expected one of: '
        'debug, info, notice, warn, error'),
    ("dangling_upstream_with_did_you_mean",
     UPSTREAM + 'listeners = (\n  { protocol = "tcp"; listen = "127.0.0.1:8080";\n'
     '    upstream = "backnd"; }\n);\n',
     8, 'unknown upstream "backnd" in listener "tcp:127.0.0.1:8080" '
        '(did you mean "backend"?)'),
    ("missing_upstream_setting",
     UPSTREAM + 'listeners = (\n  {\n    protocol = "tcp";\n'
     '    listen = "127.0.0.1:8080";\n  }\n);\n',
     7, 'missing required setting "upstream" in listener "tcp:127.0.0.1:8080"'),
    ("missing_server_address",
     'upstreams = {\n  backend = {\n    servers = ( { weight = 2; } );\n  };\n};\n',
     3, 'missing required setting "address" in server #1 of upstream "backend"'),
    ("duplicate_listen_address",
     UPSTREAM + 'listeners = (\n'
     '  { name = "a"; protocol = "tcp"; listen = "127.0.0.1:8080"; upstream = "backend"; },\n'
     '  { name = "b"; protocol = "tcp";\n'
     '    listen = [ "127.0.0.1:8081", "127.0.0.1:8080" ]; upstream = "backend"; }\n);\n',
     8, 'address 127.0.0.1:8080 of listener "b" is already used by listener "a"'),
    ("framing_field_in_request_headers",
     UPSTREAM + 'listeners = (\n  { protocol = "http"; listen = "127.0.0.1:8080";\n'
     '    request_headers = { set = ["Content-Length: 0"]; };\n'
     '    routes = ( { upstream = "backend"; } ); }\n);\n',
     8, 'request_headers.set: "Content-Length" is framing or hop-by-hop: lbd writes it '
        'itself for every message it forwards, so it cannot be edited'),
    ("hop_by_hop_field_in_response_headers",
     UPSTREAM + 'listeners = (\n  { protocol = "http"; listen = "127.0.0.1:8080";\n'
     '    routes = ( { upstream = "backend";\n'
     '      response_headers = { remove = ["Transfer-Encoding"]; }; } ); }\n);\n',
     9, 'response_headers.remove: "Transfer-Encoding" is framing or hop-by-hop: lbd writes '
         'it itself for every message it forwards, so it cannot be edited'),
    ("host_removed_from_requests",
     UPSTREAM + 'listeners = (\n  { protocol = "http"; listen = "127.0.0.1:8080";\n'
     '    request_headers = { remove = ["Host"]; };\n'
     '    routes = ( { upstream = "backend"; } ); }\n);\n',
     8, 'request_headers.remove: a forwarded request carries exactly one Host; '
        'use set to replace it'),
    ("syntax_error_quotes_the_line",
     'workers = 1;\n  log_level "info";\t\nerror_log = "error.log";\n',
     2, 'syntax error (the line reads: log_level "info";)'),
    ("unbalanced_braces",
     'workers = 1;\nupstreams = {\n  backend = {\n',
     4, 'syntax error at the end of the file'),
    ("duplicate_setting_quotes_the_line",
     'workers = 1;\nworkers = 2;\n',
     2, 'duplicate setting name (the line reads: workers = 2;)'),
    ("unknown_route_setting_lists_the_route_settings",
     UPSTREAM + 'listeners = (\n  { protocol = "http"; listen = "127.0.0.1:8080";\n'
     '    routes = ( { path = "/a"; upstream = "backend"; },\n'
     '               { pth = "/b"; upstream = "backend"; } ); }\n);\n',
     9, 'unknown setting "pth" in route #2 of listener "http:127.0.0.1:8080" '
        '(did you mean "path"?); valid here: ' + ROUTE_SETTINGS),
    ("unknown_member_of_return",
     UPSTREAM + 'listeners = (\n  { protocol = "http"; listen = "127.0.0.1:8080";\n'
     '    routes = ( { return = { status = 200; bdy = "x"; }; } ); }\n);\n',
     8, 'unknown setting "bdy" in "return" of route #1 of listener "http:127.0.0.1:8080" '
        '(did you mean "body"?); valid here: body, body_file, content_type, status'),
    ("unknown_member_of_access_log",
     UPSTREAM + 'listeners = (\n  { protocol = "http"; listen = "127.0.0.1:8080";\n'
     '    access_log = { path = "a.log"; escpe = "json"; };\n'
     '    routes = ( { upstream = "backend"; } ); }\n);\n',
     8, 'unknown setting "escpe" in access_log (did you mean "escape"?); '
        'valid here: escape, format, path'),
    ("unknown_member_of_a_stream_access_log",
     UPSTREAM + 'listeners = (\n  { protocol = "tcp"; listen = "127.0.0.1:8080";\n'
     '    upstream = "backend"; access_log = { path = "a.log"; fromat = "json"; }; }\n);\n',
     8, 'unknown setting "fromat" in access_log (did you mean "format"?); '
        'valid here: format, path'),
    ("bad_access_log_escape",
     UPSTREAM + 'listeners = (\n  { protocol = "http"; listen = "127.0.0.1:8080";\n'
     '    access_log = { path = "a.log"; format = "$uri"; escape = "jsn"; };\n'
     '    routes = ( { upstream = "backend"; } ); }\n);\n',
     8, 'invalid value "jsn" for "escape" (did you mean "json"?); '
        'expected one of: default, json'),
    ("nginx_variable_name_gets_lbds",
     UPSTREAM + 'listeners = (\n  { protocol = "http"; listen = "127.0.0.1:8080";\n'
     '    request_headers = { set = ["X-M: $request_method"]; };\n'
     '    routes = ( { upstream = "backend"; } ); }\n);\n',
     8, 'request_headers.set: unknown variable "$request_method" (did you mean "$method"?)'),
]


def check(tmp_path, text, name="lbd.conf"):
    conf = tmp_path / name
    conf.write_text(text)
    return conf, lbd_test(conf)


@pytest.mark.parametrize("text,line,message",
                         [case[1:] for case in BROKEN], ids=[case[0] for case in BROKEN])
def test_broken_configuration_is_one_file_line_message(tmp_path, text, line, message):
    conf, out = check(tmp_path, text)
    assert (out.returncode, out.stdout, out.stderr) == (1, "", f"{conf}:{line}: {message}\n")


def test_unknown_protocol_suggests_one_and_lists_those_built_in(tmp_path):
    conf, out = check(tmp_path, UPSTREAM + 'listeners = (\n  { protocol = "tcpp"; '
                      'listen = "127.0.0.1:8080"; upstream = "backend"; }\n);\n')
    assert out.returncode == 1
    assert re.fullmatch(re.escape(f'{conf}:7: unknown protocol "tcpp" (did you mean "tcp"?); '
                                  'this build serves: ') + r'(\w+, )*tcp(, \w+)*\n',
                        out.stderr), out.stderr


def test_every_error_of_a_file_is_reported_one_per_line(tmp_path):
    conf, out = check(tmp_path, 'workers = 0;\nlog_level = "loud";\n'
                      'upstreams = {\n  backend = {\n'
                      '    servers = ( { address = "127.0.0.1:9001"; weight = 0; } );\n'
                      '  };\n};\n')
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f'{conf}:1: "workers" must be between 1 and 256, got 0',
        f'{conf}:2: invalid value "loud" for "log_level"; expected one of: '
        'debug, info, notice, warn, error',
        f'{conf}:5: "weight" must be between 1 and 1000, got 0',
    ]


def test_every_unknown_variable_of_a_string_is_its_own_line(tmp_path):
    conf, out = check(tmp_path, UPSTREAM + 'listeners = (\n'
                      '  { protocol = "http"; listen = "127.0.0.1:8080";\n'
                      '    response_headers = { set = ["X-A: $hots $request_method $uri $ok"]; };\n'
                      '    routes = ( { upstream = "backend"; } ); }\n);\n')
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f'{conf}:8: response_headers.set: unknown variable "$hots" (did you mean "$host"?)',
        f'{conf}:8: response_headers.set: unknown variable "$request_method" '
        '(did you mean "$method"?)',
        f'{conf}:8: response_headers.set: unknown variable "$ok"',
    ]


def test_route_errors_are_reported_with_the_listeners_in_one_pass(tmp_path):
    # before, a listener error hid its routes, and a route error hid the
    # route's own checks (the action, rewrite, captures) until it was fixed
    conf, out = check(tmp_path, UPSTREAM + 'listeners = (\n'
                      '  { protocol = "http"; listen = "127.0.0.1:8080";\n'      # 7
                      '    keepalive_timeout = "soon";\n'                        # 8
                      '    routes = (\n'                                          # 9
                      '      { pth = "/a"; upstream = "backend"; },\n'            # 10
                      '      { path = "/b"; },\n'                                 # 11
                      '      { path_regex = "^/c/(.*)$"; method = "get";\n'      # 12
                      '        upstream = "backend"; rewrite = "/$2"; },\n'      # 13
                      '      { path = "/d"; upstream = 5; return = { status = 200; }; }\n'
                      '    ); }\n);\n')
    assert out.returncode == 1
    listener = 'listener "http:127.0.0.1:8080"'
    assert out.stderr.splitlines() == [
        f'{conf}:8: "keepalive_timeout" must be a duration such as "250ms", "5s", "2m", '
        '"1h" or "1d", got "soon"',
        f'{conf}:10: unknown setting "pth" in route #1 of {listener} (did you mean "path"?); '
        'valid here: ' + ROUTE_SETTINGS,
        f'{conf}:11: route #2 of {listener} needs exactly one action: upstream, return '
        'or redirect',
        f'{conf}:12: method "get" would only match requests that send "get": methods are '
        'case-sensitive (did you mean "GET"?)',
        f'{conf}:13: "rewrite" uses $2, but path_regex "^/c/(.*)$" has 1 capture group',
        f'{conf}:14: "upstream" must be a string, not an integer',
        f'{conf}:14: route #4 of {listener} needs exactly one action: upstream, return '
        'or redirect',
    ]


def routes_conf(routes):
    return (UPSTREAM + 'listeners = (\n  { protocol = "http"; listen = "127.0.0.1:8080";\n'
            '    routes = (\n' + ",\n".join(routes) + '\n    ); }\n);\n')


def test_a_route_an_earlier_one_leaves_nothing_to_is_a_warning(tmp_path):
    conf, out = check(tmp_path, routes_conf([
        '      { host = "a.test"; path_prefix = "/api/"; upstream = "backend"; }',     # 9
        '      { host = "a.test"; path = "/api/users"; method = "GET"; upstream = "backend"; }',
        '      { host = "*.b.test"; upstream = "backend"; }',                         # 11
        '      { host = "x.b.test"; header = "X-Beta"; return = { status = 204; }; }',
        '      { upstream = "backend"; }',                                            # 13
        '      { path = "/late"; return = { status = 200; }; }',                      # 14
    ]))
    listener = 'listener "http:127.0.0.1:8080"'
    # warnings do not change the exit status
    assert (out.returncode, out.stdout) == (0, "configuration ok\n")
    assert out.stderr.splitlines() == [
        f'{conf}:10: warning: route #2 of {listener} can never match: route #1 ({conf}:9) '
        'takes all its requests',
        f'{conf}:12: warning: route #4 of {listener} can never match: route #3 ({conf}:11) '
        'takes all its requests',
        f'{conf}:14: warning: route #6 of {listener} can never match: route #5 ({conf}:13) '
        'takes all its requests',
    ]


def test_no_warning_for_a_route_that_can_still_match(tmp_path):
    conf, out = check(tmp_path, routes_conf([
        # narrower first, broader after: each still serves something
        '      { path = "/api/users"; upstream = "backend"; }',
        '      { path_prefix = "/api/"; upstream = "backend"; }',
        # other host, other method, other header value, a prefix that is
        # not a prefix of the later one
        '      { host = "a.test"; upstream = "backend"; }',
        '      { host = "b.test"; path = "/x"; upstream = "backend"; }',
        '      { method = "POST"; upstream = "backend"; }',
        '      { method = ["GET", "POST"]; upstream = "backend"; }',
        '      { header = "X-A: 1"; upstream = "backend"; }',
        '      { header = "X-A: 2"; upstream = "backend"; }',
        '      { path_prefix = "/img"; upstream = "backend"; }',
        '      { path_prefix = "/im"; upstream = "backend"; }',
        # a regex is never judged against a prefix, even one it covers
        '      { path_regex = "^/"; upstream = "backend"; }',
        '      { path_prefix = "/z"; upstream = "backend"; }',
        '      { host = "*.c.test"; upstream = "backend"; }',
        '      { host = "c.test"; upstream = "backend"; }',
    ]))
    assert (out.returncode, out.stdout, out.stderr) == (0, "configuration ok\n", "")


def test_no_warning_when_the_routes_have_errors(tmp_path):
    # the first route's condition did not parse: it is not known to match all
    conf, out = check(tmp_path, routes_conf([
        '      { pth = "/a"; upstream = "backend"; }',
        '      { path = "/b"; upstream = "backend"; }',
    ]))
    assert out.returncode == 1
    assert ": warning: " not in out.stderr and len(out.stderr.splitlines()) == 1, out.stderr


def test_files_of_error_pages_and_body_file_are_read_at_load(tmp_path):
    (tmp_path / "50x.html").write_text("<h1>down</h1>\n")
    (tmp_path / "secret.html").write_text("x")
    (tmp_path / "secret.html").chmod(0)
    conf, out = check(tmp_path, UPSTREAM + 'listeners = (\n'
                      '  { protocol = "http"; listen = "127.0.0.1:8080";\n'
                      '    error_pages = ( { status = [502, 504]; file = "50x.html"; },\n'
                      '                    { status = 503; file = "missing.html"; },\n'
                      '                    { status = 504; file = "50x.html"; } );\n'
                      '    routes = ( { upstream = "backend"; } ); }\n);\n')
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f'{conf}:9: cannot read "{tmp_path}/missing.html" (file): No such file or directory',
        f'{conf}:10: status 504 has two error pages in listener "http:127.0.0.1:8080"',
    ]
    # routes are compiled once their listener's own settings are valid
    conf, out = check(tmp_path, UPSTREAM + 'listeners = (\n'
                      '  { protocol = "http"; listen = "127.0.0.1:8080";\n'
                      '    error_pages = ( { status = [502, 504]; file = "50x.html"; } );\n'
                      '    routes = (\n'
                      '      { path = "/a"; return = { status = 200; body = "a";\n'
                      '                                body_file = "50x.html"; }; },\n'
                      '      { path = "/b"; return = { status = 200; body_file = "nope.txt"; }; },\n'
                      '      { error_pages = ( { status = 302; file = "50x.html"; } );\n'
                      '        upstream = "backend"; } ); }\n);\n')
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f'{conf}:11: "return" of route #1 of listener "http:127.0.0.1:8080" has both "body" '
        'and "body_file": give one',
        f'{conf}:12: cannot read "{tmp_path}/nope.txt" (body_file): No such file or directory',
        f'{conf}:13: "status" of "error_pages" must be between 400 and 599 (the errors lbd '
        'answers itself), got 302',
    ]
    if os.geteuid() != 0:                   # root reads any file
        conf, out = check(tmp_path, UPSTREAM + 'listeners = (\n'
                          '  { protocol = "http"; listen = "127.0.0.1:8080";\n'
                          '    error_pages = ( { status = 500; file = "secret.html"; } );\n'
                          '    routes = ( { upstream = "backend"; } ); }\n);\n')
        assert out.stderr == (f'{conf}:8: cannot read "{tmp_path}/secret.html" (file): '
                              'Permission denied\n')


def test_error_in_an_included_file_names_that_file(tmp_path):
    (tmp_path / "upstreams.conf").write_text(
        'upstreams = {\n  backend = {\n    balance = "fastest";\n'
        '    servers = ( { address = "127.0.0.1:9001"; } );\n  };\n};\n')
    conf, out = check(tmp_path, 'workers = 1;\n@include "upstreams.conf"\n' + LISTENER)
    assert out.returncode == 1
    assert out.stderr == (f'{tmp_path}/upstreams.conf:3: invalid value "fastest" for '
                          '"balance"; expected one of: round_robin, least_conn, '
                          'random_two, hash\n')


def test_missing_include_names_the_path_and_the_reason(tmp_path):
    conf, out = check(tmp_path, 'workers = 1;\n\n@include "nothere.conf"\n')
    assert (out.returncode, out.stderr) == (
        1, f'{conf}:3: cannot open include file "{tmp_path}/nothere.conf": '
           'No such file or directory\n')


def test_unreadable_include_names_the_path_and_the_reason(tmp_path):
    # as root every file is readable: run the check as nobody on a
    # directory nobody may read
    shared = tempfile.mkdtemp(prefix="lbd-include-", dir="/tmp")
    try:
        os.chmod(shared, 0o755)
        conf = os.path.join(shared, "lbd.conf")
        secret = os.path.join(shared, "secret.conf")
        with open(conf, "w") as f:
            f.write('workers = 1;\n@include "secret.conf"\n')
        with open(secret, "w") as f:
            f.write('workers = 2;\n')
        os.chmod(conf, 0o644)
        os.chmod(secret, 0o000)
        as_nobody = None
        if os.geteuid() == 0:
            def as_nobody():
                os.setgid(65534)
                os.setuid(65534)
        out = subprocess.run([LBD, "-t", "-p", shared, "-c", conf], capture_output=True,
                             text=True, timeout=30, preexec_fn=as_nobody)
        assert (out.returncode, out.stderr) == (
            1, f'{conf}:2: cannot open include file "{secret}": Permission denied\n')
    finally:
        for name in ("lbd.conf", "secret.conf"):
            try:
                os.unlink(os.path.join(shared, name))
            except FileNotFoundError:
                pass
        os.rmdir(shared)


# Regression: libconfig's scanner exits the process when it includes a
# directory; lbd checks every @include first and reports FILE:LINE.
def test_include_of_a_directory_is_a_file_line_error(tmp_path):
    (tmp_path / "conf.d").mkdir()
    conf, out = check(tmp_path, 'workers = 1;\n@include "conf.d"\n')
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith(f"{conf}:2: "), out.stderr


# Regression: libconfig 1.5 prepends its include directory even to absolute
# paths; lbd reads the file from its own directory instead.
def test_include_with_an_absolute_path_is_read(tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "upstreams.conf").write_text(UPSTREAM)
    conf, out = check(tmp_path, f'workers = 1;\n@include "{other}/upstreams.conf"\n'
                      + LISTENER)
    assert (out.returncode, out.stdout, out.stderr) == (0, "configuration ok\n", "")


def test_valid_configuration_from_include_is_ok(tmp_path):
    (tmp_path / "upstreams.conf").write_text(UPSTREAM)
    conf, out = check(tmp_path, 'workers = 1;\n@include "upstreams.conf"\n' + LISTENER)
    assert (out.returncode, out.stdout, out.stderr) == (0, "configuration ok\n", "")


def test_missing_configuration_file_is_one_line(tmp_path):
    out = lbd_test(tmp_path / "none.conf")
    assert (out.returncode, out.stderr) == (
        1, f"{tmp_path}/none.conf:0: cannot read the configuration file: "
           "No such file or directory\n")


def test_valid_configuration_is_ok_and_binds_nothing(tmp_path):
    port = free_port()
    conf = tmp_path / "lbd.conf"
    conf.write_text(UPSTREAM + LISTENER.replace("8080", str(port)))
    # we hold the port without SO_REUSEPORT: lbd -t may not even probe it
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        out = lbd_test(conf)
        assert (out.returncode, out.stdout, out.stderr) == (0, "configuration ok\n", "")
        assert listening_sockets(port) == 1
    with socket.socket() as after:
        after.bind(("127.0.0.1", port))


def test_lbctl_test_says_configuration_ok_for_a_valid_file(tmp_path):
    conf = tmp_path / "lbd.conf"
    conf.write_text(UPSTREAM + LISTENER)
    out = lbctl(conf, "test")
    assert (out.returncode, out.stdout, out.stderr) == (0, "configuration ok\n", "")


def test_lbctl_test_reports_errors_like_lbd_t(tmp_path):
    conf, expected = check(tmp_path, UPSTREAM + 'listeners = (\n  { protocol = "tcp"; '
                           'listen = "127.0.0.1:8080"; upstream = "nope"; }\n);\n')
    out = lbctl(conf, "test")
    assert expected.returncode == 1
    assert (out.returncode, out.stdout, out.stderr) == (1, "", expected.stderr)
    assert out.stderr == f'{conf}:7: unknown upstream "nope" in listener "tcp:127.0.0.1:8080"\n'


def test_lbd_does_not_start_on_a_broken_configuration(lbd):
    lbd.start(textwrap.dedent("""\
        upstreams = { backend = { servers = ( { address = "127.0.0.1:9001"; } ); }; };
        listeners = ( { protocol = "tcp"; listen = "$listen"; upstream = "backend";
                        idle_timeout = "forever"; } );
        """), wait=False)
    assert lbd.wait_exit(10) == 1
    line = lbd.line_of('idle_timeout = "forever"')
    assert lbd.stderr() == (f'{lbd.conf_path}:{line}: "idle_timeout" must be a duration such '
                            'as "250ms", "5s", "2m", "1h" or "1d", got "forever"\n')
    assert listening_sockets(lbd.port) == 0
    assert not os.path.exists(lbd.pid_file)
