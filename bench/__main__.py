"""``python -m bench [--smoke] [--scenario NAME ...]``: run scenarios, print a table, write JSON to bench/results/."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from bench import concurrency, pipeline, recovery

SCENARIOS = ("pipeline", "concurrency", "recovery")


def _pipeline(smoke: bool) -> dict[str, Any]:
    runs, tokens = (1, 200) if smoke else (5, 2_000)
    result = pipeline.run(runs=runs, tokens=tokens)
    m = result["median"]
    print(f"pipeline: one {tokens}-token generation at unlimited simulator rate, median of {runs}")
    print(f"  {'events written':<40}{m['events']:>10.0f}")
    print(f"  {'wall time POST -> done (ms)':<40}{m['wall_ms']:>10.1f}")
    print(f"  {'Redis commands / token (all)':<40}{m['commands_per_token']:>10.4f}")
    print(f"  {'Redis round trips / token':<40}{m['round_trips_per_token']:>10.4f}")
    return result


def _concurrency(smoke: bool) -> list[dict[str, Any]]:
    results = []
    print("concurrency: generations on one worker process, 150 tokens each at 30 tokens/s")
    print(f"  {'n':>6}{'offered t/s':>13}{'achieved t/s':>14}{'dur/ideal p50':>15}{'max':>7}{'CPU':>7}{'lost':>6}")
    for n in (20,) if smoke else (100, 300, 500):
        r = concurrency.run(n)
        results.append(r)
        print(
            f"  {n:>6}{r['offered_tokens_per_s']:>13.0f}{r['achieved_tokens_per_s']:>14.0f}"
            f"{r['duration_over_ideal_p50']:>15.2f}{r['duration_over_ideal_max']:>7.2f}"
            f"{r['worker_cpu_share']:>7.2f}{r['incomplete_or_wrong']:>6}"
        )
    return results


def _recovery(smoke: bool) -> dict[str, Any]:
    result = recovery.run()
    print("recovery (default settings):")
    for case, figures in result.items():
        print(f"  {case:<28}{json.dumps(figures)}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--smoke", action="store_true", help="one short run of each quick scenario (CI)")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS, help="default: all (smoke: pipeline)")
    parser.add_argument("--out", default="bench/results", help="where the JSON report goes")
    args = parser.parse_args()
    chosen = args.scenario or (["pipeline", "concurrency"] if args.smoke else list(SCENARIOS))
    report: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    runners = {"pipeline": _pipeline, "concurrency": _concurrency, "recovery": _recovery}
    for name in chosen:
        report[name] = runners[name](args.smoke)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / ("smoke.json" if args.smoke else f"bench-{int(time.time())}.json")
    path.write_text(json.dumps(report, indent=2))
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
