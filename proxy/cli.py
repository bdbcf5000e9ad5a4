"""The `shardproxy` command: `serve --config FILE [--workers N]` and `check-config FILE`."""

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
from router.config_loader import MAX_WORKERS, WORKER_IDS, describe, load_config
from router.errors import ConfigError, ProxyError

if TYPE_CHECKING:
    from proxy.server import Server
    from proxy.workers_control import WorkerRole

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
    serve.add_argument(
        "--workers",
        type=int,
        help=f"worker processes sharing the port (1..{MAX_WORKERS}); overrides listen.workers",
    )
    # How the supervisor (proxy/workers.py) starts a worker; not for people.
    serve.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--run-dir", help=argparse.SUPPRESS)
    serve.add_argument("--instance", help=argparse.SUPPRESS)
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
    workers = config.listen.workers if args.workers is None else args.workers
    if not 1 <= workers <= MAX_WORKERS:
        print(f"--workers: {workers} is out of range (must be 1..{MAX_WORKERS})", file=sys.stderr)
        return 1
    pinned = config.transactions.worker_id
    if pinned is not None and pinned + workers > WORKER_IDS:
        print(
            f"--workers: with transactions.worker_id {pinned}, {workers} workers would need "
            f"worker ids past {WORKER_IDS - 1}",
            file=sys.stderr,
        )
        return 1
    configure_logging(config.logging, args.log_level)
    role = None
    if args.worker_index is not None:
        from proxy.workers_control import WorkerRole

        role = WorkerRole(args.worker_index, workers, args.run_dir, args.instance)
        _name_worker_logs(args.worker_index)
        # A reload the supervisor passes on while this worker starts must not kill it (the
        # file is read at start anyway); _serve installs the real handler.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        import uvloop
    except ImportError:
        run = asyncio.run
    else:
        run = uvloop.run
    if workers > 1 and role is None:
        from proxy.workers import Supervisor

        return run(Supervisor(config, args.config, workers, args.log_level).run())
    return run(_serve(config, args.config, role))


async def _serve(config: Config, path: str, role: WorkerRole | None = None) -> int:
    from proxy.server import Server

    server = Server(config, path, role)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if role is not None:
        from proxy.workers import watch_supervisor

        watch_supervisor(stop)
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


def _name_worker_logs(index: int) -> None:
    """Every log line of a worker process says which worker wrote it."""

    def tag(record: logging.LogRecord) -> bool:
        fields = getattr(record, "fields", None)
        record.fields = {**(fields if isinstance(fields, dict) else {}), "worker": index}
        return True

    for handler in logging.getLogger().handlers:
        handler.addFilter(tag)


async def _reload(server: Server) -> None:
    """SIGHUP: a bad file is logged (by reload) and the running config kept."""
    with contextlib.suppress(ProxyError):
        await server.reload()


if __name__ == "__main__":
    sys.exit(main())
