"""A WebSocket through the load balancer, behind each cloud: a real uvicorn app (the server
Ray Serve's proxy runs on) with an echo endpoint, the `websockets` client, lbsim in between.

What each cloud's main timeout does to an upgraded connection (`lbsim facts`,
`websocket_timeout`):

* AWS ALB: the idle timeout. Frames in either direction are activity, so a socket that
  keeps talking lives on; one that falls silent is closed after the idle timeout.
* GCP classic: the backend service timeout ends the WebSocket "in either idle or active
  state", so even a chatty one is closed when it runs out.
* GCP global external: closed only when idle for the backend service timeout.

The timers are 1 s here (`--idle-timeout 1s` / `--backend-timeout 1s`); the client sends a
message every 0.3 s for 2 s, twice the timeout.
"""

import time

import pytest

from test_keepalive import UvicornApp, answers_hello, free_port, importable, missing, wait_until

TIMEOUT_S = 1.0
TALK_FOR_S = 2.0
TALK_EVERY_S = 0.3
# How late lbsim's close may come after its timer (a busy CI machine included).
SLACK_S = 0.6


@pytest.fixture
def echo_app(tmp_path):
    """A uvicorn app with `/ws/echo` on a free port; its address."""
    if not importable("websockets"):
        missing("the websockets package is not installed: pip install -r examples/python/requirements.txt")
    port = free_port()
    app = UvicornApp().start(port, 5, tmp_path)
    wait_until(lambda: answers_hello(port), UvicornApp.ready_timeout, app, "uvicorn app")
    yield ("127.0.0.1", port)
    app.stop()


def behind(lbsim_factory, cloud, app):
    timer = "idle_timeout" if cloud == "aws" else "backend_timeout"
    return lbsim_factory(cloud=cloud, upstream=app, health_checks=False, **{timer: f"{TIMEOUT_S}s"})


def talk(ws):
    """Sends a message every TALK_EVERY_S for TALK_FOR_S; the echoes received, how long
    after the start the connection closed (None: still open), and when the last echo came."""
    from websockets.exceptions import ConnectionClosed

    started = time.monotonic()
    echoes = []
    last = started
    try:
        while time.monotonic() - started < TALK_FOR_S:
            ws.send(f"ping {len(echoes)}")
            echoes.append(ws.recv(timeout=TIMEOUT_S + SLACK_S + 1))
            last = time.monotonic()
            time.sleep(TALK_EVERY_S)
    except ConnectionClosed:
        return echoes, time.monotonic() - started, last
    return echoes, None, last


def silent_until_closed(ws, since):
    """Sends nothing until the connection closes; how long after `since` (the last frame)."""
    from websockets.exceptions import ConnectionClosed

    with pytest.raises(ConnectionClosed):
        ws.recv(timeout=TIMEOUT_S + SLACK_S + 2)
    return time.monotonic() - since


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_a_websocket_that_keeps_talking_survives_an_idle_timeout(lbsim_factory, echo_app, cloud):
    from websockets.sync.client import connect

    lb = behind(lbsim_factory, cloud, echo_app)
    with connect(f"ws://{lb.addr[0]}:{lb.addr[1]}/ws/echo", open_timeout=10) as ws:
        echoes, closed_after, last = talk(ws)
        assert closed_after is None, f"{cloud}: closed after {closed_after:.2f} s while talking"
        assert echoes == [f"ping {i}" for i in range(len(echoes))]
        assert len(echoes) >= int(TALK_FOR_S / (TALK_EVERY_S + 0.1))
        # Then silence: the idle timer closes it.
        waited = silent_until_closed(ws, last)
        assert TIMEOUT_S - 0.1 <= waited <= TIMEOUT_S + SLACK_S, f"{cloud}: closed after {waited:.2f} s"
    assert lb.stats()["by_status"].get("101") == 1, lb.stats()


def test_gcp_classic_ends_even_a_talking_websocket_at_the_backend_timeout(lbsim_factory, echo_app):
    from websockets.sync.client import connect

    lb = behind(lbsim_factory, "gcp-classic", echo_app)
    with connect(f"ws://{lb.addr[0]}:{lb.addr[1]}/ws/echo", open_timeout=10) as ws:
        echoes, closed_after, _ = talk(ws)
    assert closed_after is not None, "the classic load balancer let it talk past its timeout"
    assert TIMEOUT_S - 0.1 <= closed_after <= TIMEOUT_S + SLACK_S, f"closed after {closed_after:.2f} s"
    assert echoes, "it worked until the timeout"
