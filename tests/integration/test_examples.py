"""Every configuration shipped under conf/ (conf/lbd.conf and
conf/examples/*.conf) passes `lbd -t`. Files are found by glob, so a new
example is checked without touching this test. Each one is copied, with
its directory, into a fresh prefix; the certificate, key and CA files it
names are made there with the openssl command (never shipped), at the
paths it gives relative to the prefix. A file that another example
@includes is a fragment: it is checked through the file that includes it."""

import glob
import os
import re
import shutil
import subprocess

import pytest

from helpers import ROOT, lbd_test

CONF = os.path.join(ROOT, "conf")
INCLUDE = re.compile(r'^\s*@include\s+"([^"]+)"', re.MULTILINE)
# cert = "A"; key = "B"; in a certificates entry (either order)
CERT_KEY = re.compile(r'\bcert\s*=\s*"([^"]+)"\s*;\s*key\s*=\s*"([^"]+)"'
                      r'|\bkey\s*=\s*"([^"]+)"\s*;\s*cert\s*=\s*"([^"]+)"')
# CA bundles: a listener's client_ca, an upstream's tls ca
CA = re.compile(r'\b(?:client_ca|ca)\s*=\s*"([^"]+)"')


def strip_comments(text):
    """The text without # and // comments (not inside strings) and without
    /* */ ones, so a commented-out setting asks for no file."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.DOTALL)
    out = []
    for line in text.splitlines():
        quoted = False
        for i, ch in enumerate(line):
            if ch == '"' and (i == 0 or line[i - 1] != "\\"):
                quoted = not quoted
            elif not quoted and (ch == "#" or line.startswith("//", i)):
                line = line[:i]
                break
        out.append(line)
    return "\n".join(out)


def examples():
    files = sorted([os.path.join(CONF, "lbd.conf")]
                   + glob.glob(os.path.join(CONF, "examples", "*.conf")))
    included = set()
    for f in files:
        with open(f) as fh:
            for name in INCLUDE.findall(strip_comments(fh.read())):
                included.add(os.path.normpath(os.path.join(os.path.dirname(f), name)))
    return [f for f in files if os.path.normpath(f) not in included]


def openssl(*args):
    out = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"openssl {' '.join(args)}: {out.stderr}"


def make_cert(cert, key):
    """A self-signed certificate for the name the file is called after
    ("conf/certs/api.example.com.crt" -> api.example.com), valid for a day."""
    name = re.sub(r"\.(crt|pem|cert)$", "", os.path.basename(cert))
    if not re.fullmatch(r"[A-Za-z0-9*][A-Za-z0-9.*-]*", name):
        name = "localhost"
    for path in (cert, key):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", "1", "-subj", f"/CN={name}",
            "-addext", f"subjectAltName=DNS:{name}", "-keyout", key, "-out", cert)


def make_files(text, prefix):
    """Makes every certificate, key and CA file text names, relative to
    prefix, that does not exist yet."""
    text = strip_comments(text)

    def at(path):
        return path if os.path.isabs(path) else os.path.join(prefix, path)

    for m in CERT_KEY.finditer(text):
        cert, key = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(3))
        assert not os.path.isabs(cert) and not os.path.isabs(key), \
            f"an example should name its certificates relative to the prefix: {cert}, {key}"
        if not os.path.exists(at(cert)):
            make_cert(at(cert), at(key))
    for ca in CA.findall(text):
        if not os.path.exists(at(ca)):
            make_cert(at(ca), at(ca) + ".key")


def install(example, prefix):
    """Copies the example's directory into PREFIX/conf (so its @include
    files come along) and returns the copy's path."""
    src_dir = os.path.dirname(example)
    dst_dir = os.path.join(prefix, "conf")
    shutil.copytree(src_dir, dst_dir, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("examples"))
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    copy = os.path.join(dst_dir, os.path.basename(example))
    make_files(read_with_includes(copy), prefix)
    return copy


def read_with_includes(path, depth=0):
    """The text of path and of the files it @includes (relative to its
    directory, as lbd reads them when path is the main file)."""
    with open(path) as fh:
        text = fh.read()
    if depth < 8:
        for name in INCLUDE.findall(strip_comments(text)):
            text += "\n" + read_with_includes(os.path.join(os.path.dirname(path), name),
                                              depth + 1)
    return text


def test_the_examples_are_found():
    found = [os.path.relpath(f, ROOT) for f in examples()]
    assert "conf/lbd.conf" in found
    assert "conf/examples/https-site.conf" in found
    assert "conf/examples/canary.conf" in found
    # a fragment is checked through its includer, not alone
    assert "conf/examples/tcp-mysql-listeners.conf" not in found
    assert "conf/examples/tcp-mysql.conf" in found


@pytest.mark.parametrize("example", examples(),
                         ids=lambda f: os.path.relpath(f, ROOT))
def test_example_passes_lbd_t(example, tmp_path):
    prefix = str(tmp_path)
    copy = install(example, prefix)
    out = lbd_test(copy, prefix=prefix)
    assert out.returncode == 0, f"{os.path.relpath(example, ROOT)}:\n{out.stderr}"
    assert "ok" in out.stdout, out.stdout
    assert out.stderr == "", out.stderr


def test_certificates_are_made_where_the_example_names_them(tmp_path):
    prefix = str(tmp_path)
    install(os.path.join(CONF, "examples", "https-site.conf"), prefix)
    for name in ("www.example.com", "api.example.com"):
        crt = tmp_path / "conf" / "certs" / f"{name}.crt"
        assert crt.exists() and (tmp_path / "conf" / "certs" / f"{name}.key").exists()
        subj = subprocess.run(["openssl", "x509", "-noout", "-subject", "-in", str(crt)],
                              capture_output=True, text=True, check=True).stdout
        assert name in subj
