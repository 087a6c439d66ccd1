"""Packaging (SPEC §12): make install lays out the binaries, the
configuration, the man pages, the systemd unit and the logrotate file with
the installation's paths; the man pages render without a warning; systemd
accepts the unit; make deb builds a package that lintian accepts without
an error, with the configuration as a conffile."""

import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make(*args, timeout=600):
    return subprocess.run(["make", "--no-print-directory", "-C", ROOT] + list(args),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    dest = tmp_path_factory.mktemp("destdir")
    r = make("install", f"DESTDIR={dest}", "PREFIX=/opt/lbd-test")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return dest / "opt" / "lbd-test"


def test_make_install_lays_out_every_file(installed):
    for path in ["sbin/lbd", "sbin/lbctl", "conf/lbd.conf", "conf/examples/lbd.conf",
                 "share/man/man8/lbd.8", "share/man/man8/lbctl.8",
                 "share/man/man5/lbd.conf.5", "lib/systemd/system/lbd.service",
                 "etc/logrotate.d/lbd", "share/doc/lbd/configuration.md",
                 "share/doc/lbd/routing.md", "share/doc/lbd/README.md"]:
        assert (installed / path).is_file(), path
    assert os.access(installed / "sbin/lbd", os.X_OK)
    assert (installed / "logs").is_dir()
    unit = (installed / "lib/systemd/system/lbd.service").read_text()
    assert "ExecStart=/opt/lbd-test/sbin/lbd -f -c /opt/lbd-test/conf/lbd.conf" in unit
    assert "ExecReload=/opt/lbd-test/sbin/lbctl -c /opt/lbd-test/conf/lbd.conf reload" in unit
    assert re.search(r"^Type=notify$", unit, re.M) and "@" not in unit.replace("man:", "")
    rotate = (installed / "etc/logrotate.d/lbd").read_text()
    assert "/opt/lbd-test/logs/*.log" in rotate
    assert "/opt/lbd-test/sbin/lbctl -c /opt/lbd-test/conf/lbd.conf reopen" in rotate


@pytest.mark.parametrize("page", ["man8/lbd.8", "man8/lbctl.8", "man5/lbd.conf.5"])
def test_the_man_pages_render_without_a_warning(installed, page):
    path = installed / "share/man" / page
    r = subprocess.run(["groff", "-man", "-ww", "-z", "-Tutf8", str(path)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    r = subprocess.run(["man", "-l", str(path)], capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, MANWIDTH="80", MANPAGER="cat", PAGER="cat"))
    assert r.returncode == 0 and "SYNOPSIS" in r.stdout or "DESCRIPTION" in r.stdout


def test_lbd_conf_5_is_generated_from_the_configuration_reference():
    """docs/man/lbd.conf.5 is what auto/man-conf makes of docs/configuration.md
    (run it after changing a settings table), and it names every setting of
    the reference's tables."""
    r = subprocess.run([os.path.join(ROOT, "auto/man-conf"),
                        os.path.join(ROOT, "docs/configuration.md")],
                       capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(ROOT, "docs/man/lbd.conf.5")) as f:
        assert f.read() == r.stdout, "run: auto/man-conf >docs/man/lbd.conf.5"
    for name in ("workers", "max_old_generations", "keepalive_time", "slow_start",
                 "max_conns_per_ip", "handshake_timeout"):
        assert re.search(r"^\\fB%s\\fR$" % name, r.stdout, re.M), name


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_accepts_the_unit(tmp_path):
    sbin = tmp_path / "sbin"
    sbin.mkdir()
    for b in ("lbd", "lbctl"):
        shutil.copy2(os.path.join(ROOT, "objs", b), sbin / b)
    unit = tmp_path / "lbd.service"
    text = open(os.path.join(ROOT, "conf/systemd/lbd.service.in")).read()
    unit.write_text(text.replace("@SBIN@", str(sbin)).replace("@CONF@", str(tmp_path / "lbd.conf"))
                    .replace("@LOGS@", str(tmp_path)))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                       text=True, timeout=60)
    # the Documentation= man pages are not installed here: that is all it may say
    problems = [line for line in (r.stdout + r.stderr).splitlines()
                if line.strip() and not re.search(r"Command 'man .*' failed", line)]
    assert problems == [], problems


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="no dpkg-deb")
def test_make_deb_builds_a_package_lintian_accepts():
    r = make("deb")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    deb = os.path.join(ROOT, r.stdout.strip().splitlines()[-1])
    listing = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True).stdout
    for path in ["./usr/sbin/lbd", "./usr/sbin/lbctl", "./etc/lbd/conf/lbd.conf",
                 "./lib/systemd/system/lbd.service", "./etc/logrotate.d/lbd",
                 "./usr/share/man/man8/lbd.8.gz", "./usr/share/man/man5/lbd.conf.5.gz",
                 "./usr/share/doc/lbd/copyright", "./usr/share/doc/lbd/configuration.md.gz"]:
        assert path in listing, path
    conffiles = subprocess.run(["dpkg-deb", "-I", deb, "conffiles"], capture_output=True,
                               text=True).stdout
    assert "/etc/lbd/conf/lbd.conf" in conffiles
    depends = subprocess.run(["dpkg-deb", "-f", deb, "Depends"], capture_output=True,
                             text=True).stdout
    assert "libssl3" in depends and "libconfig9" in depends
    if shutil.which("lintian") is None:
        pytest.skip("lintian is not installed (auto/deps installs it)")
    r = subprocess.run(["lintian", deb], capture_output=True, text=True, timeout=300)
    errors = [line for line in r.stdout.splitlines() if line.startswith("E:")]
    print("\n" + r.stdout)
    assert errors == [], errors
