"""Run the fake PagerDuty in the foreground until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from .server import FakePagerDuty


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT, then stop cleanly."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.fake_pagerduty",
        description="Run a fake PagerDuty Events API v2 server on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free one)")
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds to wait before each answer"
    )
    args = parser.parse_args(argv)

    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    with FakePagerDuty(latency=args.latency, port=args.port) as fake:
        print(f"listening on {fake.url}", flush=True)
        stopping.wait()
        received, accepted = len(fake.received), len(fake.accepted)
    print(f"stopped after {received} requests, {accepted} accepted", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
