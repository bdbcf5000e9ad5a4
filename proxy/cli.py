"""The `shardproxy` command: `serve --config FILE` and `check-config FILE`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from typing import TYPE_CHECKING

from proxy.logs import configure as configure_logging
from router.config import Config
from router.config_loader import describe, load_config
from router.errors import ConfigError, ProxyError

if TYPE_CHECKING:
    from proxy.server import Server

log = logging.getLogger("shardproxy")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shardproxy", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the proxy")
    serve.add_argument("--config", required=True, help="YAML config file")
    serve.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        type=str.lower,
        help="overrides the config's logging.level",
    )
    check = sub.add_parser("check-config", help="validate a config file and print what it means")
    check.add_argument("file")
    args = parser.parse_args(argv)

    if args.command == "check-config":
        try:
            config = load_config(args.file)
        except ConfigError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            return 1
        except OSError as exc:
            print(f"{args.file}: {exc.strerror}", file=sys.stderr)
            return 1
        print(describe(config))
        return 0

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    configure_logging(config.logging, args.log_level)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_serve(config, args.config))
    return uvloop.run(_serve(config, args.config))


async def _serve(config: Config, path: str) -> int:
    from proxy.server import Server

    server = Server(config, path)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(_reload(server)))
    serving = asyncio.ensure_future(server.serve_forever())
    await stop.wait()
    grace = server.runtime.config.listen.shutdown_grace
    log.info("shutting down: %d session(s) get %d s to finish", len(server.sessions), grace)
    await server.shutdown(grace)
    serving.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await serving
    return 0


async def _reload(server: Server) -> None:
    """SIGHUP: a bad file is logged (by reload) and the running config kept."""
    with contextlib.suppress(ProxyError):
        await server.reload()


if __name__ == "__main__":
    sys.exit(main())
