"""The keep-alive 502, end to end: a real Python app behind the `lbsim` binary.

An AWS ALB keeps its connection to the app open for its idle timeout (Anyscale's 300 s,
scaled here by 0.01 to 3 s) and reuses it for the next request. An app whose own keep-alive
is shorter closes that idle connection first; the ALB's next request lands on a closed
connection and the client gets a 502. With `--race-window always` lbsim makes that race
certain, so one sleep between two requests on one client connection shows it:

* app keep-alive 1 s, idle 2 s, LB keep-alive 3 s  -> 200, then 502 target_closed_connection
* app keep-alive 5 s, idle 2 s, LB keep-alive 3 s  -> 200, then 200

The app is Ray Serve (app.py) when `ray[serve]` is importable, else the same app on plain
uvicorn (uvicorn_app.py), else the tests are skipped. Force one with LBSIM_EXAMPLE_APP=ray
or LBSIM_EXAMPLE_APP=uvicorn.

lbsim itself is started by the `lbsim_factory` fixture of the lbsim pytest plugin, which
`pip install` of the lbsim wheel brings (python/ in this repository): it runs the installed
`lbsim` binary (or `--lbsim-bin PATH`) on ephemeral ports, waits until it listens, and
stops it after the test. These tests pin `cloud="aws"`: they check the ALB's own 502 page.
"""

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

TIME_SCALE = 0.01
# lbsim's keep-alive towards the app: the ALB idle timeout, 300 s (Anyscale's default) x 0.01.
LB_KEEP_ALIVE_S = 300 * TIME_SCALE
# Time between the two requests: longer than the short app keep-alive, shorter than the LB's.
IDLE_S = 2.0
SHORT_APP_KEEP_ALIVE_S = 1
LONG_APP_KEEP_ALIVE_S = 5
assert SHORT_APP_KEEP_ALIVE_S < IDLE_S < LB_KEEP_ALIVE_S < LONG_APP_KEEP_ALIVE_S

# The ALB's own 502 page, byte for byte (CRLF line ends).
ALB_502_BODY = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)


# --- processes -------------------------------------------------------------------------


class Proc:
    """A child process with its output in a log file, stopped by terminate + wait (kill
    on timeout). It gets its own process group so that a kill also reaches anything it
    started (Ray's raylet and workers)."""

    def __init__(self, name, argv, log_path, stop_timeout, env=None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        self.stop_timeout = stop_timeout
        self._log = open(log_path, "wb")
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def exited(self):
        return self.popen.poll() is not None

    def tail(self, lines=40):
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def describe(self):
        return f"{self.name} ({' '.join(self.argv)}); last lines of {self.log_path}:\n{self.tail()}"

    def stop(self):
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.popen.wait(timeout=10)
        # Whatever the child left behind in its group: Ray's DashboardAgent and
        # RuntimeEnvAgent outlive a driver that shut Ray down, and ignore SIGTERM.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not self._signal_group(sig):
                break
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline and self._signal_group(0):
                time.sleep(0.1)
        self._log.close()

    def _signal_group(self, sig):
        """Sends `sig` to the child's process group; False once the group is gone."""
        try:
            os.killpg(self.popen.pid, sig)
            return True
        except ProcessLookupError:
            return False


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers_hello(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/", headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp.status == 200 and resp.read() == b"hello"
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def wait_until(ready, timeout, proc, what):
    """Polls `ready` until it holds; fails at once if `proc` exits, or after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.exited():
            pytest.fail(f"{what} exited with code {proc.popen.returncode}: {proc.describe()}")
        if ready():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not ready within {timeout:.0f} s: {proc.describe()}")
        time.sleep(0.1)


# --- the app ------------------------------------------------------------------------


def importable(module):
    """Whether this Python can import `module`, asked in a child process so that importing
    Ray (slow, noisy) does not happen inside pytest."""
    probe = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
    )
    return probe.returncode == 0


class RayServeApp:
    name = "Ray Serve app"
    ready_timeout = 180.0  # a local Ray cluster takes a while to come up on a small machine
    stop_timeout = 60.0

    def start(self, port, keep_alive_s, log_dir):
        env = dict(os.environ)
        env.pop("RAY_SERVE_HTTP_KEEP_ALIVE_TIMEOUT_S", None)  # would override http_options
        argv = [sys.executable, HERE / "app.py", "--port", port, "--keep-alive", keep_alive_s]
        log = log_dir / f"ray-app-{port}.log"
        return Proc(self.name, argv, log, self.stop_timeout, env=env)


class UvicornApp:
    name = "uvicorn app"
    ready_timeout = 20.0
    stop_timeout = 10.0

    def start(self, port, keep_alive_s, log_dir):
        argv = [
            sys.executable, "-m", "uvicorn", "uvicorn_app:app", "--app-dir", HERE,
            "--host", "127.0.0.1", "--port", port, "--timeout-keep-alive", keep_alive_s,
        ]  # fmt: skip
        log = log_dir / f"uvicorn-app-{port}.log"
        return Proc(self.name, argv, log, self.stop_timeout)


@pytest.fixture(scope="session")
def app_kind():
    forced = os.environ.get("LBSIM_EXAMPLE_APP", "").strip().lower()
    if forced not in ("", "ray", "uvicorn"):
        pytest.fail(f"LBSIM_EXAMPLE_APP={forced!r}: expected `ray` or `uvicorn`")
    if forced in ("", "ray") and importable("ray.serve"):
        return RayServeApp()
    if forced == "ray":
        missing("LBSIM_EXAMPLE_APP=ray but `ray.serve` is not importable: pip install 'ray[serve]'")
    if importable("uvicorn"):
        return UvicornApp()
    missing(
        "neither ray[serve] nor uvicorn is installed in this Python: "
        "pip install -r examples/python/requirements.txt"
    )


def missing(why):
    """A missing app skips the tests on a laptop; in CI (CI set) it fails them, so that a
    broken install step cannot pass as green."""
    if os.environ.get("CI"):
        pytest.fail(f"{why} (CI is set, so this fails instead of skipping)", pytrace=False)
    pytest.skip(why)


@pytest.fixture
def start_stack(tmp_path, app_kind, lbsim_factory):
    """Returns start(app_keep_alive_s) -> the lbsim (AWS ALB) in front of a fresh app."""
    apps = []

    def start(app_keep_alive_s):
        app_port = free_port()
        app = app_kind.start(app_port, app_keep_alive_s, tmp_path)
        apps.append(app)
        # The app is ready when it says hello (Ray's proxy accepts before the app is deployed).
        wait_until(lambda: answers_hello(app_port), app_kind.ready_timeout, app, app_kind.name)
        # Ready once it says where it listens: no request goes through it before the test's
        # own, which must control the age of the pooled connection lbsim reuses.
        return lbsim_factory(
            cloud="aws",
            upstream=("127.0.0.1", app_port),
            time_scale=TIME_SCALE,
            race_window="always",
            health_checks=False,
        )

    yield start
    for app in reversed(apps):
        app.stop()


# --- the client ------------------------------------------------------------------------


def get(conn):
    started = time.monotonic()
    conn.request("GET", "/")
    resp = conn.getresponse()
    body = resp.read()
    return resp, body, time.monotonic() - started


def two_requests_one_connection(lb):
    """GET /, idle IDLE_S, GET / again on the same client connection to lbsim."""
    conn = http.client.HTTPConnection(*lb.addr, timeout=10)
    try:
        first, first_body, _ = get(conn)
        assert first.status == 200, (first.status, first.getheaders(), first_body)
        assert first_body == b"hello"
        assert not first.will_close, "lbsim should keep the client connection open"
        sock = conn.sock
        time.sleep(IDLE_S)
        # http.client only opens a new connection when the old one was closed (sock None).
        assert conn.sock is sock and sock is not None
        second, second_body, elapsed = get(conn)
        return second, second_body, elapsed
    finally:
        conn.close()


def test_short_app_keep_alive_gives_502(start_stack):
    lb = start_stack(SHORT_APP_KEEP_ALIVE_S)

    resp, body, elapsed = two_requests_one_connection(lb)

    assert resp.status == 502, (resp.status, resp.getheaders(), body)
    assert resp.reason == "Bad Gateway"
    assert resp.getheader("x-lbsim-reason") == "target_closed_connection"
    assert resp.getheader("server") == "awselb/2.0"
    assert resp.getheader("content-type") == "text/html"
    assert body == ALB_502_BODY
    # Answered at once on the dead connection, not after some timeout (the LB's is 3 s).
    assert elapsed < 1.5, f"502 took {elapsed:.2f} s"
    # lbsim's counters (its control API, GET /stats) say the same: one 502 of the ALB's
    # own, which lbsim's cause tells apart from an app that crashed.
    stats = lb.stats()
    assert stats["lb_by_status"] == {"502": 1}, stats
    assert stats["by_reason"] == {"target_closed_connection": 1}, stats
    assert stats["by_cause"] == {"keep_alive_race": 1}, stats


def test_app_keep_alive_above_lb_keep_alive_gives_200(start_stack):
    lb = start_stack(LONG_APP_KEEP_ALIVE_S)

    resp, body, _ = two_requests_one_connection(lb)

    assert resp.status == 200, (resp.status, resp.getheaders(), body)
    assert body == b"hello"
    assert resp.getheader("x-lbsim-reason") is None
    stats = lb.stats()
    assert stats["by_status"] == {"200": 2}, stats
    assert stats["lb_by_status"] == {}, stats
