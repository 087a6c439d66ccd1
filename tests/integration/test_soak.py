"""The short soak (tests/soak/soak.py, `make soak` runs it at full size beside
nginx and HAProxy): 10 reloads — upstream-only changes alternating with
other ones — and 2 binary upgrades between two builds, under wrk, WebSocket
sessions, TCP streams and UDP sessions. Nothing may be lost: no failed
request, no socket error, no session or stream cut that was not on a draining
generation, no TCP byte, no UDP reply; every reload and upgrade succeeds;
the old generations all go."""

import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "soak"))
import soak  # noqa: E402


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is missing (auto/deps installs it)")
def test_short_soak_loses_nothing(tmp_path):
    r = soak.soak("lbd", reloads=10, upgrades=2, interval=0.5, workdir=str(tmp_path),
                  ws_sessions=4, tcp_streams=1)
    print(soak.table([r]))
    assert "error" not in r, r
    assert r["failed"] == [], r["failed"]
    assert r["reloads"] == 10 and r["upgrades"] == 2
    # every other reload changes only upstream servers: the running workers take it
    assert r["in_place"] == 5 and r["full"] == 5, r
    assert r["requests"] > 0
    assert r["non2xx"] == 0 and r["socket_errors"] == 0, r["socket_errors_detail"]
    assert r["ws_opened"] >= 4 and r["ws_lost"] == 0, r["errors"]
    assert r["tcp_completed"] > 0 and r["tcp_lost"] == 0 and r["tcp_bytes_lost"] == 0, r["errors"]
    assert r["udp_sent"] > 0 and r["udp_lost"] == 0
    assert r["procs_end"] == r["procs_start"], "the old generations are gone"
