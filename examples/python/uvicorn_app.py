"""The same "hello" app as app.py without Ray: a bare ASGI app served by uvicorn (plus a
WebSocket echo on `/ws/echo` for test_websocket.py).

Ray Serve's HTTP proxy is a uvicorn server whose `timeout_keep_alive` is
`http_options.keep_alive_timeout_s`, so for the keep-alive behaviour this is the same
thing at a fraction of the install size. uvicorn's own default keep-alive is 5 s.

Run it by hand (from the repository root):

    python -m uvicorn uvicorn_app:app --app-dir examples/python \\
        --host 127.0.0.1 --port 8000 --timeout-keep-alive 1

or `python examples/python/uvicorn_app.py --port 8000 --keep-alive 1`.
"""

import argparse
import os


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await websocket_echo(scope, receive, send)
        return
    if scope["type"] != "http":
        return
    if scope["path"] == "/":
        status, body = 200, b"hello"
    else:
        status, body = 404, b"not found"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def websocket_echo(scope, receive, send):
    """`/ws/echo`: accepts the upgrade and sends every message back, until either side
    closes (uvicorn needs the `websockets` package for WebSockets)."""
    if scope["path"] != "/ws/echo":
        await send({"type": "websocket.close", "code": 1008})
        return
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.receive":
            await send(
                {
                    "type": "websocket.send",
                    "text": message.get("text"),
                    "bytes": message.get("bytes"),
                }
            )
        elif message["type"] == "websocket.disconnect":
            return


if __name__ == "__main__":
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("APP_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("APP_PORT", "8000")))
    parser.add_argument(
        "--keep-alive",
        type=int,
        default=int(os.environ.get("APP_KEEP_ALIVE_S", "5")),
        help="uvicorn --timeout-keep-alive, in seconds (uvicorn's own default: 5)",
    )
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, timeout_keep_alive=args.keep_alive)
