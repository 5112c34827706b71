"""The lbsim pytest plugin's fixtures on lbsim's embedded mock app, no app of your own.

`lbsim` starts one lbsim for the test; this module's `lbsim_settings` fixture gives its
settings. The cloud is pytest's `--lbsim-cloud` (aws by default), so the first two tests
run behind any cloud:

    pytest examples/python/test_lbsim_fixture.py --lbsim-cloud gcp

`lbsim_factory` starts several, each with its own settings (the last test: the same
stream behind an AWS ALB and behind GCP).
"""

import http.client
import time

import pytest

# lbsim's keep-alive towards the app at this scale: AWS 300 s -> 30 s, GCP 600 s -> 60 s,
# ingress-nginx's upstream-keepalive-timeout 60 s -> 6 s; all longer than the idle gap.
TIME_SCALE = 0.1
# The mock app closes an idle connection after this (as an old Ray Serve proxy would).
MOCK_KEEP_ALIVE = "1s"
IDLE_S = 1.5


@pytest.fixture
def lbsim_settings():
    """Settings of every `lbsim` in this module (the plugin's fixture, overridden here)."""
    return {
        "time_scale": TIME_SCALE,
        # Use a pooled connection however long ago the app closed it: the race, always.
        "race_window": "always",
        "health_checks": False,
        "extra_args": ["--mock-keep-alive", MOCK_KEEP_ALIVE],
    }


def request(lb, method, path, body=None):
    conn = http.client.HTTPConnection(*lb.addr, timeout=10)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        return resp, resp.read()
    finally:
        conn.close()


def test_the_apps_own_error_passes_through(lbsim):
    resp, body = request(lbsim, "GET", "/status/503")

    assert resp.status == 503
    assert body == b"status 503"
    assert resp.getheader("x-lbsim-reason") is None
    stats = lbsim.stats()
    assert stats["by_status"] == {"503": 1}, stats
    assert stats["lb_by_status"] == {}, stats  # the app's 503, not the load balancer's


def test_a_post_on_a_connection_the_app_closed_gets_the_load_balancers_error(lbsim):
    first, _ = request(lbsim, "POST", "/echo", body=b"one")
    assert first.status == 200
    time.sleep(IDLE_S)  # the mock app closes its side after 1 s; lbsim keeps it pooled

    resp, _ = request(lbsim, "POST", "/echo", body=b"two")

    # Each cloud answers in its own words (AWS 502, GCP 503, ...); lbsim's cause is the
    # same everywhere. No cloud retries a POST here.
    word = resp.getheader("x-lbsim-reason")
    stats = lbsim.stats()
    assert stats["lb_by_status"] == {str(resp.status): 1}, stats
    assert resp.status in (502, 503), (resp.status, resp.getheaders())
    assert stats["by_reason"] == {word: 1}, stats
    assert stats["by_cause"] == {"keep_alive_race": 1}, stats


def stream(lb, chunks):
    """GET /stream/{chunks}?interval=0.25; returns (chunks received, whether it was cut,
    seconds)."""
    started = time.monotonic()
    conn = http.client.HTTPConnection(*lb.addr, timeout=10)
    try:
        conn.request("GET", f"/stream/{chunks}?interval=0.25")
        resp = conn.getresponse()
        assert resp.status == 200
        try:
            body, cut = resp.read(), False
        except http.client.IncompleteRead as e:
            body, cut = e.partial, True
    finally:
        conn.close()
    return body.count(b"chunk "), cut, time.monotonic() - started


def test_a_stream_survives_aws_but_not_gcp(lbsim_factory):
    # At this scale AWS's idle timeout (300 s) is 0.75 s, and a chunk every 0.25 s keeps
    # it alive; GCP's end-to-end backend timeout (600 s) is 1.5 s, and the 2 s stream is
    # cut, whatever it sends.
    aws = lbsim_factory(cloud="aws", time_scale=0.0025, health_checks=False)
    gcp = lbsim_factory(cloud="gcp", time_scale=0.0025, health_checks=False)

    assert stream(aws, 8)[:2] == (8, False)
    got, cut, elapsed = stream(gcp, 8)

    assert cut and got < 8, (got, cut)
    assert 1.5 <= elapsed < 2.0, f"cut after {elapsed:.2f} s, expected 1.5 s"
    assert gcp.stats()["by_cause"] == {"target_timeout": 1}
    assert aws.stats()["by_cause"] == {}
