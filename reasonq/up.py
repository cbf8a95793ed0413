"""``reasonq up``: one command that runs a whole reasonq on this machine and stops it cleanly."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from reasonq.processes import ManagedProcess, RedisServer, free_port, http_ok, wait_until
from shared.settings import get_settings

WORKER_STOP_TIMEOUT_S = 20.0


def _python_m(*args: str) -> list[str]:
    return [sys.executable, "-m", "reasonq", *args]


def run_up(args: argparse.Namespace) -> int:
    """Start redis-server, the simulator (when no model is configured), a worker and the API; stop on a signal."""
    settings = get_settings()
    data_dir = Path(args.data_dir).resolve()
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    started: list[ManagedProcess] = []
    code = 0
    try:
        redis_server = RedisServer(args.redis_port or free_port(), data_dir / "redis").start()
        started.append(redis_server)
        print(f"reasonq: redis-server (pid {redis_server.pid}) on {redis_server.url}, data in {data_dir / 'redis'}")
        env = {"REASONQ_REDIS_URL": redis_server.url, "REASONQ_BROKER_URL": redis_server.url}
        if not settings.model_base_url:
            sim_port = free_port()
            sim = ManagedProcess("simulator", _python_m("sim", "--port", str(sim_port))).start()
            started.append(sim)
            wait_until(
                lambda: http_ok(f"http://127.0.0.1:{sim_port}/healthz"), timeout_s=20, what="simulator", process=sim
            )
            env |= {
                "REASONQ_MODEL_BASE_URL": f"http://127.0.0.1:{sim_port}/v1",
                "REASONQ_MODEL_API_KEY": "simulator",
                "REASONQ_DEFAULT_MODEL": "reasonq-sim",
            }
            print(
                f"reasonq: no REASONQ_MODEL_BASE_URL set: using the built-in SIMULATED model "
                f"(pid {sim.pid}, port {sim_port}); its output is not from a real model"
            )
        health_ports = [free_port(), free_port()]
        worker = ManagedProcess(
            "worker", _python_m("worker"), env | {"REASONQ_WORKER_HEALTH_PORT": str(health_ports[0])}
        ).start()
        started.append(worker)
        # Batch generations have their own queue and worker, so a long batch never delays interactive work.
        batch_worker = ManagedProcess(
            "batch-worker",
            _python_m("worker", "--queues", settings.batch_queue_name, "--hostname", "batch@%h"),
            env | {"REASONQ_WORKER_HEALTH_PORT": str(health_ports[1])},
        ).start()
        started.append(batch_worker)
        print(
            f"reasonq: worker (pid {worker.pid}, health http://127.0.0.1:{health_ports[0]}/healthz), "
            f"batch worker (pid {batch_worker.pid}, health http://127.0.0.1:{health_ports[1]}/healthz)"
        )
        api = ManagedProcess("api", _python_m("api", "--host", args.host, "--port", str(args.port)), env).start()
        started.append(api)
        base = f"http://{args.host}:{args.port}"
        wait_until(lambda: http_ok(f"{base}/healthz"), timeout_s=30, what="API", process=api)
        print(f"reasonq: API (pid {api.pid}) on {base}  docs: {base}/docs")
        print("reasonq: try it:")
        auth = "" if not settings.api_keys.get_secret_value() else " -H 'authorization: Bearer <key>'"
        if not auth:
            print("reasonq: OPEN MODE (no REASONQ_API_KEYS): anyone who can reach the API can use it")
        print(f"  curl -s {base}/v1/generations{auth} -H 'content-type: application/json' \\")
        print('       -d \'{"messages":[{"role":"user","content":"Why is the sky blue?"}]}\'')
        print(f"  curl -N {base}/v1/generations/<id>/events{auth}")
        print("reasonq: running; Ctrl-C stops everything", flush=True)
        while not stop.wait(0.2):
            dead = [p for p in started if not p.alive()]
            if dead:
                print(f"reasonq: {dead[0].name} exited unexpectedly; stopping", file=sys.stderr)
                code = 1
                break
    except Exception as e:
        print(f"reasonq: could not start: {e}", file=sys.stderr)
        code = 1
    finally:
        for proc in reversed(started):
            rc = proc.stop(WORKER_STOP_TIMEOUT_S if proc.name.endswith("worker") else 10.0)
            print(f"reasonq: stopped {proc.name} (pid {proc.pid}, exit {rc})", flush=True)
        print("reasonq: all processes stopped", flush=True)
    return code
