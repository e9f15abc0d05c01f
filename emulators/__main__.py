"""Run the Graph and identity emulators until Ctrl+C, for trying the app with `func start`."""

from __future__ import annotations

import argparse
import logging
import shlex
import signal
import sys
import threading
from types import FrameType

from emulators.graph import DEFAULT_PAGE_SIZE
from emulators.harness import Emulators
from emulators.identity import DEFAULT_TOKEN_LIFETIME_S

logger = logging.getLogger(__name__)


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m emulators",
        description="Serve emulated Microsoft Graph and managed identity endpoints on 127.0.0.1.",
    )
    parser.add_argument(
        "--graph-port", type=int, default=0, help="Graph emulator port (default: 0, any free port)"
    )
    parser.add_argument(
        "--identity-port",
        type=int,
        default=0,
        help="identity emulator port (default: 0, any free port)",
    )
    parser.add_argument(
        "--page-size",
        type=int,
        default=DEFAULT_PAGE_SIZE,
        help=f"items per page of a Graph collection (default: {DEFAULT_PAGE_SIZE})",
    )
    parser.add_argument(
        "--identity-header",
        help="secret for IDENTITY_HEADER (default: a new random value on each run)",
    )
    parser.add_argument(
        "--token-lifetime",
        type=int,
        default=DEFAULT_TOKEN_LIFETIME_S,
        help=f"lifetime of issued tokens in seconds (default: {DEFAULT_TOKEN_LIFETIME_S})",
    )
    parser.add_argument(
        "--throttle-limit",
        type=int,
        help="return 429 to Graph requests beyond this many per --throttle-window "
        "(default: no throttling)",
    )
    parser.add_argument(
        "--throttle-window",
        type=float,
        default=10.0,
        help="throttle window in seconds (default: 10)",
    )
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        help="seconds the Graph emulator waits before it handles each request (default: 0)",
    )
    parser.add_argument(
        "--empty", action="store_true", help="start with no definitions instead of the sample"
    )
    parser.add_argument("--verbose", action="store_true", help="also log HTTP server details")
    return parser.parse_args(argv)


def _stop_on_signals(stop: threading.Event) -> None:
    def handle(signum: int, frame: FrameType | None) -> None:
        logger.info("Received %s", signal.Signals(signum).name)
        stop.set()

    # Installed explicitly because a shell starts background jobs with SIGINT ignored.
    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)


def main(argv: list[str] | None = None) -> int:
    """Start both emulators, print the environment to export, and serve until interrupted."""
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    emulators = Emulators.start(
        page_size=args.page_size,
        seed=not args.empty,
        identity_header=args.identity_header,
        token_lifetime_s=args.token_lifetime,
        graph_port=args.graph_port,
        identity_port=args.identity_port,
        throttle_limit=args.throttle_limit,
        throttle_window_s=args.throttle_window,
        latency_s=args.latency,
    )
    with emulators:
        print("# Put these in Values of local.settings.json for `func start`, or export them:")
        for name, value in emulators.environ().items():
            print(f"export {name}={shlex.quote(value)}")
        print("# Press Ctrl+C to stop.", flush=True)

        stop = threading.Event()
        _stop_on_signals(stop)
        while not stop.wait(timeout=1.0):
            pass
        logger.info("Stopping emulators")
    return 0


if __name__ == "__main__":
    sys.exit(main())
