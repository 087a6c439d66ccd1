"""Fixtures for lbd's integration tests: `lbd` (an Lbd in the test's tmp_path,
always cleaned up by pid, its logs checked for sanitizer reports) and
`backend` (starts Backend servers that are stopped at teardown)."""

import ctypes
import os

import pytest

import helpers

PR_SET_CHILD_SUBREAPER = 36


def pytest_report_header(config):
    return [f"lbd: {helpers.LBD}", f"lbctl: {helpers.LBCTL}"]


def pytest_configure(config):
    # Become a child subreaper: a daemonized lbd (and any worker whose master
    # died) is then re-parented to this process, not to PID 1, so the Lbd
    # helper reaps it the moment it exits and can always find it by pid.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def pytest_sessionstart(session):
    for path in (helpers.LBD, helpers.LBCTL):
        if not os.access(path, os.X_OK):
            raise pytest.UsageError(f"{path} is not an executable: build lbd first (make)")


@pytest.fixture
def lbd_factory(tmp_path):
    """lbd_factory(name) makes another Lbd, in tmp_path/name. At teardown
    every one is ended by pid, and the test fails if lbd's stderr or error
    log holds a sanitizer report."""
    made = []

    def make(name=None):
        directory = tmp_path / name if name else tmp_path
        directory.mkdir(exist_ok=True)
        made.append(helpers.Lbd(directory))
        return made[-1]

    try:
        yield make
    finally:
        for instance in made:
            instance.cleanup()
    reports = [line for instance in made for line in instance.sanitizer_reports()]
    if reports:
        pytest.fail("sanitizer reports in lbd's output:\n" + "\n".join(reports[:20]),
                    pytrace=False)


@pytest.fixture
def lbd(lbd_factory):
    """An Lbd in the test's tmp_path (see lbd_factory)."""
    return lbd_factory()


@pytest.fixture
def backend():
    """backend(handler, name=..., port=...) starts a Backend; all are
    stopped at teardown."""
    started = []

    def start(handler, name="backend", port=None):
        b = helpers.Backend(handler, name=name, port=port)
        started.append(b)
        return b

    yield start
    for b in started:
        b.stop()
