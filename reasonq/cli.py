"""The ``reasonq`` command: ``up`` (everything, embedded), ``api``, ``worker`` and ``sim`` (one part each), and
the client commands ``submit``, ``tail``, ``get``, ``cancel`` (``reasonq/commands.py``)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from reasonq import __version__
from reasonq.commands import HelpFormatter, add_client_commands
from reasonq.logs import configure_logging
from reasonq.shared.errors import ReasonqError
from reasonq.shared.settings import Settings, get_settings


def check_configuration(settings: Settings, *, redis: bool = True) -> None:
    """Everything a server process would refuse at start, checked before anything starts; ``redis``: the Redis of
    ``REASONQ_REDIS_URL`` too (not for ``up``, whose Redis is its own and not started yet).

    Raises:
        ConfigurationError: naming the setting and the problem.
    """
    from reasonq.api.auth import KeyRing
    from reasonq.shared.redis import check_eviction_policy

    KeyRing.from_settings(settings)
    if redis:
        check_eviction_policy(settings.redis_url, allow=settings.allow_evicting_redis)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _warn_if_exposed(host: str) -> None:
    if not get_settings().api_keys.get_secret_value() and host not in ("127.0.0.1", "localhost", "::1"):
        logging.getLogger("reasonq").warning(
            "OPEN MODE on %s: no REASONQ_API_KEYS, and the API listens beyond this machine. Anyone who can reach "
            "it can spend the model budget and read every generation. Set REASONQ_API_KEYS.",
            host,
        )


def _cmd_api(args: argparse.Namespace) -> int:
    from reasonq.api.server import run_api

    check_configuration(get_settings())
    _warn_if_exposed(args.host)
    run_api(
        args.host,
        args.port,
        log_level=args.log_level.lower(),
        access_log=args.access_log,
        backlog=args.backlog,
        workers=args.workers,
    )
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    from reasonq.shared.redis import check_eviction_policy
    from reasonq.worker.app import app, check_queues
    from reasonq.worker.runtime import WorkerRuntime

    settings = get_settings()
    if not settings.provider_routes.providers:
        WorkerRuntime(settings)  # raises ConfigurationError with the explanation
    check_eviction_policy(settings.redis_url, allow=settings.allow_evicting_redis)
    queues = args.queues or settings.queue_name
    check_queues(queues.split(","))
    argv = [
        "worker",
        f"--loglevel={args.log_level.upper()}",
        "--pool=threads",
        f"--concurrency={args.concurrency or settings.worker_concurrency}",
        f"--queues={queues}",
        "--without-gossip",
        "--without-mingle",
    ]
    if args.hostname:
        argv.append(f"--hostname={args.hostname}")
    app.worker_main(argv=argv)
    return 0


def _cmd_sim(args: argparse.Namespace) -> int:
    import uvicorn

    from reasonq.simulator.app import create_app

    rate = args.tokens_per_s if args.tokens_per_s is not None else get_settings().sim_tokens_per_s
    logging.getLogger(__name__).info("SIMULATED reasoning model on port %d at %s tokens/s", args.port, rate or "max")
    uvicorn.run(
        create_app(rate),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level=args.log_level.lower(),
        log_config=None,
        access_log=False,
    )
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    from reasonq.up import run_up

    check_configuration(get_settings(), redis=False)
    return run_up(args)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``reasonq`` command."""
    parser = argparse.ArgumentParser(prog="reasonq", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"reasonq {__version__}")
    parser.add_argument(
        "--log-level", default="INFO", type=str.upper, choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log level"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, formatter_class=HelpFormatter)

    up = command("up", "run everything: embedded Redis, workers, API (and the simulator if no model is set)")
    up.add_argument("--host", default="127.0.0.1", help="API bind address")
    up.add_argument("--port", type=int, default=8000, help="API port")
    up.add_argument("--data-dir", default="reasonq-data", help="where Redis keeps its data and the logs go")
    up.add_argument("--redis-port", type=int, default=0, help="embedded Redis port (0 = a free one)")
    up.add_argument("--api-workers", type=_positive, default=1, help="API processes on the port (one per core)")
    up.set_defaults(func=_cmd_up)

    api = command("api", "run the HTTP API against REASONQ_REDIS_URL")
    api.add_argument("--host", default="127.0.0.1", help="bind address")
    api.add_argument("--port", type=int, default=8000, help="port")
    api.add_argument("--access-log", action="store_true", help="log every request")
    api.add_argument("--backlog", type=int, default=4096, help="listen backlog (bursts of viewers reconnecting)")
    api.add_argument(
        "--workers", type=_positive, default=1, help="API processes on this port, each with its own hub (one per core)"
    )
    api.set_defaults(func=_cmd_api)

    worker = command("worker", "run a Celery worker against REASONQ_BROKER_URL / REASONQ_REDIS_URL")
    worker.add_argument(
        "--concurrency", type=int, default=0, help="generations at once (0 = REASONQ_WORKER_CONCURRENCY)"
    )
    worker.add_argument("--queues", default="", help="comma-separated queues (empty = REASONQ_QUEUE_NAME)")
    worker.add_argument("--hostname", default="", help="Celery node name (empty = Celery's default)")
    worker.set_defaults(func=_cmd_worker)

    sim = command("sim", "run the simulated reasoning model (OpenAI-compatible)")
    sim.add_argument("--host", default="127.0.0.1", help="bind address")
    sim.add_argument("--port", type=int, default=8001, help="port")
    sim.add_argument(
        "--tokens-per-s", type=float, default=None, help="0 = as fast as possible (unset = REASONQ_SIM_TOKENS_PER_S)"
    )
    sim.set_defaults(func=_cmd_sim)
    add_client_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``reasonq`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        configure_logging(args.log_level, get_settings().log_json)
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except ReasonqError as e:  # configuration problems: say what is wrong in one line, without a traceback
        print(f"reasonq: {e}", file=sys.stderr)
        return 2
    return code
