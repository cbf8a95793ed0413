"""``python -m bench [--smoke]``: run the scenarios, print a table, write JSON to bench/results/."""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from bench import pipeline


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--smoke", action="store_true", help="one short run of each scenario (CI)")
    parser.add_argument("--out", default="bench/results", help="where the JSON report goes")
    args = parser.parse_args()

    runs, tokens = (1, 200) if args.smoke else (5, 2_000)
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "pipeline": pipeline.run(runs=runs, tokens=tokens),
    }
    m = report["pipeline"]["median"]
    print(f"pipeline: one {tokens}-token generation at unlimited simulator rate, median of {runs}")
    print(f"  {'events written':<34}{m['events']:>10.0f}")
    print(f"  {'wall time POST -> done (ms)':<34}{m['wall_ms']:>10.1f}")
    print(f"  {'Redis commands / token (all)':<34}{m['commands_per_token']:>10.4f}")
    print(f"  {'Redis round trips / token':<34}{m['round_trips_per_token']:>10.4f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / ("smoke.json" if args.smoke else f"bench-{int(time.time())}.json")
    path.write_text(json.dumps(report, indent=2))
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
