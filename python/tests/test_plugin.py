"""The lbsim pytest plugin's own tests: the fixtures, the options, and what a failure
says. Run with the wheel installed: `pytest python/tests` (CI: .ci/run)."""

import http.client
import http.server
import signal
import threading

import pytest

from lbsim import Lbsim, LbsimStartError, find_binary


def test_fixture_fronts_the_mock_app_and_stops_lbsim(lbsim):
    assert lbsim.scheme == "http"
    assert lbsim.addr[0] == "127.0.0.1" and lbsim.port > 0
    assert lbsim.url == f"http://127.0.0.1:{lbsim.port}"
    assert lbsim.mock_url.startswith("http://127.0.0.1:")
    assert lbsim.admin_url.startswith("http://127.0.0.1:")
    conn = http.client.HTTPConnection(*lbsim.addr, timeout=10)
    conn.request("GET", "/")
    resp = conn.getresponse()
    assert (resp.status, resp.read()) == (200, b"ok")
    conn.close()
    assert lbsim.stats()["by_status"] == {"200": 1}

    assert lbsim.stop() == 0  # SIGTERM: lbsim drains and exits cleanly
    assert "lbsim: shutting down" in lbsim.stderr()
    assert "lbsim summary" in lbsim.stderr()
    assert lbsim.stop() == 0  # again: nothing left to do (the fixture's teardown)


@pytest.mark.lbsim(cloud="aws", idle_timeout=0.2, extra_args=["--explain"])
def test_settings_reach_lbsim_and_its_log_can_be_awaited(lbsim):
    conn = http.client.HTTPConnection(*lbsim.addr, timeout=10)
    conn.request("GET", "/sleep/5")
    resp = conn.getresponse()
    assert resp.status == 504
    resp.read()
    conn.close()

    line = lbsim.wait_for_stderr("lbsim explain: 504 target_idle_timeout")
    assert "sent no response within the AWS ALB idle timeout of 200 ms" in line
    assert lbsim.stats()["by_cause"] == {"target_timeout": 1}
    with pytest.raises(AssertionError, match="no lbsim stderr line with 'never said'"):
        lbsim.wait_for_stderr("never said", timeout=0.1)


class TestInFrontOfAnApp:
    """`lbsim_upstream` overridden (here for this class) to the test's own app."""

    @pytest.fixture
    def app(self):
        """A Python app on an ephemeral port that answers `from python`."""

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = b"from python"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield server.server_address
        server.shutdown()
        server.server_close()

    @pytest.fixture
    def lbsim_upstream(self, app):
        return app

    @pytest.mark.lbsim(cloud="gcp-classic", time_scale=0.5, health_checks=False)
    def test_fixture_fronts_the_upstream_with_the_markers_settings(self, lbsim, app):
        assert lbsim.mock_url is None
        assert [t["address"] for t in lbsim.targets()] == [f"{app[0]}:{app[1]}"]
        config = lbsim.config()
        assert config["cloud"] == "gcp-classic"
        assert config["time_scale"] == 0.5
        assert config["health_checks"]["enabled"] is False
        conn = http.client.HTTPConnection(*lbsim.addr, timeout=10)
        conn.request("GET", "/")
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, b"from python")
        conn.close()


def test_a_flag_lbsim_refuses_raises_with_its_stderr():
    with pytest.raises(LbsimStartError) as e:
        Lbsim.start(find_binary(), cloud="gcp", idle_timeout=1)
    message = str(e.value)
    assert "lbsim exited with code 2 before it was ready" in message
    assert "--cloud gcp --listen 127.0.0.1:0 --admin 127.0.0.1:0 --idle-timeout 1000ms" in message
    assert "its main timeout is the backend service timeout, set with --backend-timeout" in message


def test_durations_are_seconds_or_lbsim_strings():
    from lbsim import lbsim_argv

    argv = lbsim_argv("lbsim", time_scale=0.01, idle_timeout=1.5, race_window="always")
    assert argv[-6:] == [
        "--time-scale", "0.01", "--idle-timeout", "1500ms", "--race-window", "always",
    ]  # fmt: skip
    with pytest.raises(ValueError):
        lbsim_argv("lbsim", idle_timeout=-1)
    with pytest.raises(TypeError):
        lbsim_argv("lbsim", extra_args="--explain")


def test_a_start_failure_fails_the_test_with_lbsims_words(pytester):
    pytester.makepyfile(
        """
        def test_it(lbsim_factory):
            lbsim_factory(extra_args=["--no-such-flag"])
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*lbsim exited with code 2 before it was ready.",
            "command: * --no-such-flag",
            "lbsim's stderr:",
            "error: unexpected argument '--no-such-flag' found",
        ]
    )


def test_lbsim_cloud_option_sets_the_default_cloud(pytester):
    pytester.makepyfile(
        """
        import pytest

        def test_default(lbsim):
            assert lbsim.config()["cloud"] == "ingress-nginx"

        @pytest.mark.lbsim(cloud="aws")
        def test_a_test_that_names_its_cloud_keeps_it(lbsim):
            assert lbsim.config()["cloud"] == "aws"
        """
    )
    result = pytester.runpytest("--lbsim-cloud", "ingress-nginx")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["lbsim: * (default cloud: ingress-nginx)"])


def test_lbsim_bin_that_is_not_a_binary_says_so(pytester):
    pytester.makepyfile("def test_it(lbsim):\n    pass\n")
    result = pytester.runpytest("--lbsim-bin", "/nonexistent/lbsim")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*--lbsim-bin /nonexistent/lbsim: not an executable file*"])


def test_lbsim_that_died_during_the_test_is_reported(pytester):
    pytester.makepyfile(
        f"""
        import os

        def test_it(lbsim):
            os.kill(lbsim.popen.pid, {int(signal.SIGKILL)})
            lbsim.popen.wait()
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["lbsim exited on its own with code -9.", "lbsim's stderr:"])
