"""One running `lbsim` binary: started on ephemeral loopback ports, ready once it has said
where it listens, stopped with SIGTERM.

lbsim announces its addresses on stderr (src/cli.rs), after both listeners are bound:

    lbsim: no --upstream given; started the mock app on http://127.0.0.1:40211 (paths: ...)
    lbsim: AWS ALB listening on http://127.0.0.1:41783 -> 127.0.0.1:40211 (...)
    lbsim: control API on http://127.0.0.1:43117 (GET /targets /stats ...)

so `--listen 127.0.0.1:0 --admin 127.0.0.1:0` needs no free-port guess (a port found
free and released could be taken by someone else before lbsim binds it), and readiness is
an event read from the process, not a poll.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["Lbsim", "LbsimStartError", "find_binary", "lbsim_argv"]

# How long lbsim may take to say it listens. It binds at once; the margin is for a loaded
# CI machine (and a debug build).
DEFAULT_READY_TIMEOUT_S = 15.0
# How long SIGTERM may take: lbsim lets in-flight requests finish (its --shutdown-grace,
# 10 s by default) and then prints its summary. After this, SIGKILL.
DEFAULT_STOP_TIMEOUT_S = 15.0
# How long one control API request may take (it answers in milliseconds; 503 after 10 s).
ADMIN_TIMEOUT_S = 5.0

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_LISTENING = re.compile(r"^lbsim: .* listening on (https?)://(\S+?) -> ")
_CONTROL_API = re.compile(r"^lbsim: control API on (http://\S+) ")
_MOCK = re.compile(r"^lbsim: no --upstream given; started the mock app on (http://\S+) ")


class LbsimStartError(RuntimeError):
    """lbsim could not be started or did not become ready; the message has the command,
    the exit code (if it exited) and everything it wrote on stderr, which says why (a bad
    flag, a port in use, an unreachable upstream name)."""


def find_binary(explicit=None):
    """The lbsim executable to run, as a Path.

    `explicit` (the `--lbsim-bin` option) wins and must be an executable file. Otherwise
    the `lbsim` in this interpreter's scripts directory, where installing the wheel put it
    (it is found even when the virtualenv is not activated, e.g. `.venv/bin/pytest`), and
    then the first `lbsim` on PATH. Raises LbsimStartError saying what was looked at.
    """
    if explicit:
        path = Path(explicit).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return path.resolve()
        raise LbsimStartError(f"--lbsim-bin {explicit}: not an executable file")
    exe = "lbsim.exe" if sys.platform == "win32" else "lbsim"
    scripts = Path(sysconfig.get_path("scripts"))
    installed = scripts / exe
    if installed.is_file() and os.access(installed, os.X_OK):
        return installed
    on_path = shutil.which("lbsim")
    if on_path:
        return Path(on_path)
    raise LbsimStartError(
        f"no lbsim binary: not in {scripts} (where `pip install` of the lbsim wheel puts it) "
        "nor on PATH. Install the wheel (see python/README.md in the lbsim repository), or "
        "pass --lbsim-bin PATH (e.g. target/debug/lbsim after `cargo build`)"
    )


def _duration(value, name):
    """A lbsim duration flag value: a number is seconds (sent as whole milliseconds, which
    lbsim's parser takes exactly); a string ("3s", "250ms", "always") is passed as is."""
    if isinstance(value, bool):
        raise TypeError(f"{name}={value!r}: expected seconds (a number) or a string like '3s'")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"{name}={value!r}: a duration cannot be negative")
        return f"{round(value * 1000)}ms"
    if isinstance(value, str):
        return value
    raise TypeError(f"{name}={value!r}: expected seconds (a number) or a string like '3s'")


def lbsim_argv(
    binary,
    cloud="aws",
    upstream=None,
    time_scale=None,
    idle_timeout=None,
    backend_timeout=None,
    race_window=None,
    health_checks=True,
    extra_args=(),
):
    """The command line for one lbsim on ephemeral loopback ports with these settings.

    `upstream` is "HOST:PORT", a (host, port) tuple, or a list of either (round-robin);
    None starts lbsim's embedded mock app. `idle_timeout` is AWS's and ingress-nginx's
    timer, `backend_timeout` GCP's (lbsim refuses the other cloud's flag and says which
    one to use). `extra_args` go last, as given (e.g. ["--explain"]).
    """
    argv = [str(binary), "--cloud", cloud, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"]
    if upstream is not None:
        targets = upstream if isinstance(upstream, list) else [upstream]
        for target in targets:
            if isinstance(target, tuple):
                host, port = target
                target = f"{host}:{port}"
            argv += ["--upstream", str(target)]
    if time_scale is not None:
        argv += ["--time-scale", repr(float(time_scale))]
    if idle_timeout is not None:
        argv += ["--idle-timeout", _duration(idle_timeout, "idle_timeout")]
    if backend_timeout is not None:
        argv += ["--backend-timeout", _duration(backend_timeout, "backend_timeout")]
    if race_window is not None:
        argv += ["--race-window", _duration(race_window, "race_window")]
    if not health_checks:
        argv.append("--no-health-checks")
    if isinstance(extra_args, str):
        raise TypeError(f"extra_args={extra_args!r}: expected a list of arguments")
    argv += [str(a) for a in extra_args]
    return argv


class _Lines:
    """Lines of one of the child's output streams, collected by a thread as they arrive
    (so the pipe never fills and blocks lbsim), with a condition to wait on."""

    def __init__(self, stream):
        self.lines = []
        self.eof = False
        self.changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream):
        with stream:
            for raw in stream:
                line = _ANSI.sub("", raw.decode("utf-8", "replace").rstrip("\r\n"))
                with self.changed:
                    self.lines.append(line)
                    self.changed.notify_all()
        with self.changed:
            self.eof = True
            self.changed.notify_all()

    def wait_for(self, done, timeout):
        """Waits until done(lines, eof) holds; False after `timeout` seconds."""
        with self.changed:
            return self.changed.wait_for(lambda: done(self.lines, self.eof), timeout)

    def text(self):
        with self.changed:
            return "\n".join(self.lines)

    def join(self, timeout):
        self._thread.join(timeout)


class Lbsim:
    """A running lbsim. Start one with `Lbsim.start(...)` (or the pytest fixtures), use
    `url` as the app's address, read its counters with `stats()`, and `stop()` it."""

    def __init__(self, argv, popen, stderr, stdout):
        #: The command line it was started with (for messages and reproduction).
        self.argv = argv
        #: The process; `popen.pid` for signals of your own.
        self.popen = popen
        self._stderr = stderr
        self._stdout = stdout
        #: "http" or "https" (with --tls in extra_args).
        self.scheme = None
        #: (host, port) where clients connect: the simulated load balancer.
        self.addr = None
        #: The control API's base URL, e.g. http://127.0.0.1:43117 (`GET /stats` there).
        self.admin_url = None
        #: The embedded mock app's URL when no upstream was given, else None.
        self.mock_url = None
        self._stopped_code = None

    @classmethod
    def start(cls, binary, ready_timeout=DEFAULT_READY_TIMEOUT_S, env=None, **settings):
        """Starts lbsim with `lbsim_argv(binary, **settings)` and waits until it has said
        where it listens and where its control API is. Raises LbsimStartError (with
        lbsim's stderr) if it exits first or says nothing within `ready_timeout` s."""
        argv = lbsim_argv(binary, **settings)
        try:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            )
        except OSError as e:
            raise LbsimStartError(f"cannot run {argv[0]}: {e}") from e
        lb = cls(argv, popen, _Lines(popen.stderr), _Lines(popen.stdout))
        try:
            lb._wait_ready(ready_timeout)
        except BaseException:
            lb._kill()
            raise
        return lb

    def _wait_ready(self, timeout):
        def announced(lines, eof):
            return eof or any(_CONTROL_API.match(line) for line in lines)

        in_time = self._stderr.wait_for(announced, timeout)
        listening = control = None
        for line in self._stderr.lines[:]:
            listening = listening or _LISTENING.match(line)
            control = control or _CONTROL_API.match(line)
            mock = _MOCK.match(line)
            if mock:
                self.mock_url = mock.group(1)
        if listening and control:
            self.scheme = listening.group(1)
            host, _, port = listening.group(2).rpartition(":")
            self.addr = (host.strip("[]"), int(port))
            self.admin_url = control.group(1)
            return
        if not in_time:
            self._kill()
            why = f"did not say it listens within {timeout:g} s"
        else:
            try:
                code = self.popen.wait(timeout=5)
                why = f"exited with code {code} before it was ready"
            except subprocess.TimeoutExpired:
                why = "closed its stderr before it was ready"
        raise LbsimStartError(f"lbsim {why}.\ncommand: {' '.join(self.argv)}\n{self._said()}")

    def _said(self):
        self._stderr.join(timeout=2)
        text = self._stderr.text()
        return f"lbsim's stderr:\n{text}" if text else "lbsim wrote nothing on stderr"

    @property
    def url(self):
        """The load balancer's base URL, e.g. http://127.0.0.1:41783 (no trailing slash)."""
        host, port = self.addr
        host = f"[{host}]" if ":" in host else host
        return f"{self.scheme}://{host}:{port}"

    @property
    def port(self):
        """The load balancer's port."""
        return self.addr[1]

    def stderr(self):
        """Everything lbsim wrote on stderr so far (start-up lines, a log line per LB
        error, with --explain the why and the fix, the summary once stopped)."""
        return self._stderr.text()

    def stdout(self):
        """Everything lbsim wrote on stdout so far (the access log with `--access-log -`)."""
        return self._stdout.text()

    def wait_for_stderr(self, text, timeout=5.0):
        """Waits until a stderr line contains `text` and returns that line; raises
        AssertionError with lbsim's stderr if none does within `timeout` s."""

        def seen(lines, eof):
            return eof or any(text in line for line in lines)

        self._stderr.wait_for(seen, timeout)
        for line in self._stderr.lines[:]:
            if text in line:
                return line
        raise AssertionError(
            f"no lbsim stderr line with {text!r} within {timeout:g} s.\n{self._said()}"
        )

    def admin(self, method, path, body=None):
        """One control API request; returns (status, parsed JSON or None). See lbsim's
        README: /targets, /targets/{id}, /targets/{id}/health, /stats, /stats/reset, /config."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.admin_url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=ADMIN_TIMEOUT_S) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        return status, (json.loads(raw) if raw else None)

    def _admin_ok(self, method, path, body=None):
        status, answer = self.admin(method, path, body)
        if status >= 400:
            raise RuntimeError(f"lbsim control API {method} {path}: {status} {answer}")
        return answer

    def stats(self):
        """`GET /stats`: {"by_status": {"502": 1, ...}, "by_reason": {the cloud's word: n},
        "by_cause": {lbsim's cause, e.g. "keep_alive_race": n}, "lb_by_status": {the LB's
        own answers}, "retries": n, "spliced_bytes": response body bytes moved socket to
        socket}. Status keys are strings (JSON)."""
        return self._admin_ok("GET", "/stats")

    def reset_stats(self):
        """`POST /stats/reset`: zeroes the counters."""
        self._admin_ok("POST", "/stats/reset")

    def targets(self):
        """`GET /targets`: the target group, [{"id", "address", "state", ...}]."""
        return self._admin_ok("GET", "/targets")

    def config(self):
        """`GET /config`: the effective (scaled) settings."""
        return self._admin_ok("GET", "/config")

    def stop(self, timeout=DEFAULT_STOP_TIMEOUT_S):
        """SIGTERM, then waits for lbsim to exit (SIGKILL after `timeout` s); returns the
        exit code. Idempotent. Raises RuntimeError if lbsim had already exited on its own
        (it crashed or was stopped by someone else), with its stderr."""
        if self._stopped_code is not None:
            return self._stopped_code
        died = self.popen.poll()
        if died is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self._stopped_code = self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._kill()
                self._stopped_code = self.popen.returncode
        else:
            self._stopped_code = died
        self._stderr.join(timeout=2)
        self._stdout.join(timeout=2)
        if died is not None:
            raise RuntimeError(f"lbsim exited on its own with code {died}.\n{self._said()}")
        return self._stopped_code

    def _kill(self):
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        where = self.url if self.addr else "not ready"
        return f"<Lbsim {where} admin={self.admin_url} pid={self.popen.pid}>"

