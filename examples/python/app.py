"""A minimal Ray Serve app that answers "hello" on `/`.

The only setting that matters here is the proxy's keep-alive, i.e. how long Ray Serve's
HTTP proxy (uvicorn underneath) keeps an idle connection open before closing it:
`http_options.keep_alive_timeout_s`, 90 s by default in ray 2.x. It is documented at
https://docs.ray.io/en/latest/serve/api/doc/ray.serve.config.HTTPOptions.html
("keep_alive_timeout_s: Duration to keep idle connections alive when no requests are
ongoing") and is passed through `serve.start(http_options=...)`
(https://docs.ray.io/en/latest/serve/api/doc/ray.serve.start.html). It is cluster-scoped:
changing it means restarting Serve, which is why the test starts this script once per value.

Run it by hand:

    python examples/python/app.py --port 8000 --keep-alive 1

or with the environment: APP_PORT=8000 APP_KEEP_ALIVE_S=1 python examples/python/app.py

It prints `READY http://HOST:PORT/` once the app answers, and shuts Serve and the local Ray
cluster down on SIGTERM or Ctrl-C.
"""

import argparse
import os
import signal
import sys

import ray
from ray import serve


@serve.deployment(ray_actor_options={"num_cpus": 0})
class Hello:
    async def __call__(self, request):
        return "hello"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("APP_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("APP_PORT", "8000")))
    parser.add_argument(
        "--keep-alive",
        type=int,
        default=int(os.environ.get("APP_KEEP_ALIVE_S", "90")),
        help="http_options.keep_alive_timeout_s, in whole seconds (Ray's own default: 90)",
    )
    return parser.parse_args(argv)


def _stop(signum, frame):
    # Turn SIGTERM into an exception so the `finally` below shuts the Ray cluster down
    # instead of leaving its processes behind.
    raise SystemExit(0)


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    # The deprecated environment variable would override http_options; keep the value we pass.
    os.environ.pop("RAY_SERVE_HTTP_KEEP_ALIVE_TIMEOUT_S", None)
    # A private, throwaway cluster on loopback: never join a cluster already running here.
    ray.init(
        address="local",
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
    )
    try:
        serve.start(
            http_options={
                "host": args.host,
                "port": args.port,
                "keep_alive_timeout_s": args.keep_alive,
            }
        )
        # Returns once the application is running. It logs "New http_options ... will not be
        # applied": that is about its own start call; the options above are already in force.
        serve.run(Hello.bind(), route_prefix="/", blocking=False)
        print(f"READY http://{args.host}:{args.port}/", flush=True)
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
