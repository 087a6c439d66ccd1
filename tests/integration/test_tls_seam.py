"""TLS behind one seam (docs/modules.md, "TLS"): no module but the tls module
(modules/core/tls/) includes OpenSSL headers, calls OpenSSL or looks at a
connection's I/O layer; the others ask core/lb_tls.h and core/lb_crypto.h.
And no core header a module may include pulls OpenSSL in. The sources are
read, comments left out; the files are found by glob, so a new module is
checked without touching this test."""

import glob
import os
import re

from helpers import ROOT

SEAM = os.path.join(ROOT, "modules", "core", "tls")

# what only the seam may write, each with what to do instead
FORBIDDEN = [
    (re.compile(r'#\s*include\s*[<"]openssl/'), "an OpenSSL header"),
    (re.compile(r'\b(?:SSL|SSL_\w+|X509\w*|EVP_\w+|RAND_\w+|HMAC\w*|ERR_\w+)\b'),
     "an OpenSSL name (use lb_tls_* / lb_random_bytes / lb_hmac_sha256)"),
    (re.compile(r'\blb_io_tls\b'), "lb_io_tls (use lb_conn_is_tls)"),
    (re.compile(r'\bio\s*[!=]=|[!=]=\s*&?\s*lb_io_\w+|\blb_io_\w+\s*[!=]='),
     "a comparison of c->io (use lb_conn_is_tls)"),
    (re.compile(r'\bio_ctx\b'), "the I/O layer's state, c->io_ctx"),
]

COMMENT = re.compile(r'/\*.*?\*/|//[^\n]*', re.DOTALL)


def code_of(text):
    """text with its comments blanked out (newlines kept, so line numbers
    still hold)."""
    return COMMENT.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def code(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return code_of(f.read())


def violations(path, text):
    found = []
    for lineno, line in enumerate(text.split("\n"), 1):
        for pattern, what in FORBIDDEN:
            m = pattern.search(line)
            if m:
                found.append("%s:%d: %s: %r" % (os.path.relpath(path, ROOT), lineno, what,
                                                m.group(0)))
    return found


def sources(*parts):
    return sorted(glob.glob(os.path.join(ROOT, *parts, "**", "*.[ch]"), recursive=True))


def test_the_checks_see_what_they_must():
    bad = """
        #include <openssl/ssl.h>
        long v = SSL_get_verify_result(c->io_ctx);
        if (c->io == &lb_io_tls) { X509_free(x); }
        if (&lb_io_plain != hc->c->io) {}
    """
    found = violations(os.path.join(ROOT, "x.c"), bad)
    assert len(found) == 7, found
    # names of lbd's own that only look alike are no OpenSSL
    fine = """
        LB_HTTP_VAR_SSL_PROTOCOL, "$ssl_cipher", lb_tls_hello_t h;
        n = c->io->sendv(c, iov, k); if (c->io->raw) {}
    """
    assert violations(os.path.join(ROOT, "x.c"), code_of(fine)) == []
    assert code_of("/* SSL_read */ x; // X509\n") == "               x;        \n"


def test_only_the_tls_module_uses_openssl_or_looks_at_the_io_layer():
    files = [p for p in sources("modules") if not p.startswith(SEAM + os.sep)]
    assert len(files) > 20                  # the glob found the modules
    found = []
    for path in files:
        found += violations(path, code(path))
    assert found == [], "outside the TLS seam:\n" + "\n".join(found)


def test_no_core_header_pulls_openssl_in():
    found = []
    for path in sorted(glob.glob(os.path.join(ROOT, "core", "*.h"))):
        for lineno, line in enumerate(code(path).split("\n"), 1):
            if FORBIDDEN[0][0].search(line):
                found.append("%s:%d" % (os.path.relpath(path, ROOT), lineno))
    assert found == [], "core headers including OpenSSL: " + ", ".join(found)
