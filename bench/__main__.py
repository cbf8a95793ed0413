"""``python -m bench [--smoke] [--scenario NAME ...]``: run scenarios, print a table, write JSON to bench/results/."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from bench import (
    apiprocs,
    batch,
    burst,
    concurrency,
    fanout,
    joinstorm,
    latency,
    manystreams,
    pipeline,
    providers,
    recovery,
    scale,
    submit,
    webhooks,
)

SCENARIOS = (
    "pipeline",
    "latency",
    "fanout",
    "joinstorm",
    "concurrency",
    "burst",
    "submit",
    "batch",
    "redis",
    "recovery",
    "scale",
    "providers",
    "webhooks",
    "manystreams",
    "apiprocs",
)


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
    print("  (duration / model time: through reasonq, and the same streams read directly from the simulator)")
    print(
        f"  {'n':>6}{'offered t/s':>13}{'achieved t/s':>14}{'p50':>7}{'max':>7}{'direct p50':>12}{'max':>7}"
        f"{'worker CPU':>12}{'pickup p50 ms':>15}{'lost':>6}"
    )
    for n in (20,) if smoke else (100, 300, 500):
        r = concurrency.run(n)
        results.append(r)
        print(
            f"  {n:>6}{r['offered_tokens_per_s']:>13.0f}{r['achieved_tokens_per_s']:>14.0f}"
            f"{r['duration_over_ideal_p50']:>7.2f}{r['duration_over_ideal_max']:>7.2f}"
            f"{r['direct_duration_over_ideal_p50']:>12.2f}{r['direct_duration_over_ideal_max']:>7.2f}"
            f"{r['worker_cpu_share']:>12.2f}{r['pickup_p50_ms']:>15.0f}{r['incomplete_or_wrong']:>6}"
        )
    return results


def _burst(smoke: bool) -> list[dict[str, Any]]:
    n = 50 if smoke else 500
    print(f"burst: {n} generations submitted at once to one worker process (pickup: created -> claimed)")
    results = []
    for pickup in (False, True):  # the broker alone (the baseline), then with the worker's pickup from the index
        r = burst.run(n, pickup=pickup)
        results.append(r)
        idle, b, ttft = r["idle_pickup_ms"], r["burst_pickup_ms"], r["burst_time_to_first_token"]
        print(
            f"  {'index + broker' if pickup else 'broker only':<15} burst p50 {b['p50']:>6.0f} ms  p99 {b['p99']:>6.0f}"
            f" ms  max {b['max']:>6.0f} ms (submitted in {r['submit_s']} s); idle p50 {idle['p50']:.1f} ms,"
            f" p99 {idle['p99']:.1f} ms; first token mean {ttft.get('mean_ms', '?')} ms"
            f" (p50 <= {ttft.get('p50_le_s')} s, p99 <= {ttft.get('p99_le_s')} s)"
        )
    return results


def _latency(smoke: bool) -> dict[str, Any]:
    result = latency.run(runs=1 if smoke else 3, tokens=60 if smoke else 200)
    o = result["overhead_ms"]
    print(f"per-token overhead at {result['token_rate']:.0f} tokens/s (ms, emission -> viewer):")
    for name in ("reasonq", "direct_proxy", "extra"):
        print(f"  {name:<14} p50 {o[name]['p50']:>7.2f}   p99 {o[name]['p99']:>7.2f}")
    p = result["queue_pickup_idle_ms"]
    print(f"queue pickup, idle (POST -> running event at a viewer): p50 {p['p50']:.1f} ms, p99 {p['p99']:.1f} ms")
    return result


def _fanout(smoke: bool) -> list[dict[str, Any]]:
    rows = fanout.run((50,), slow_at=50, tokens=60) if smoke else fanout.run()
    print("fan-out: one generation at 50 tokens/s (lag = Redis -> viewer)")
    print(
        f"  {'viewers':>8}{'all events':>12}{'lag p50':>9}{'p99':>8}{'API CPU':>9}{'RSS MiB':>9}"
        f"{'KiB/viewer':>12}{'loadgen CPU':>13}  slow viewer"
    )
    for r in rows:
        print(
            f"  {r['viewers']:>8}{r['viewers_with_every_event']:>12}{r['lag_p50_ms']:>9.1f}{r['lag_p99_ms']:>8.1f}"
            f"{r['api_cpu_share']:>9.2f}{r['api_rss_mib']:>9.0f}{r['rss_per_viewer_kib']:>12.1f}"
            f"{r['load_generator_cpu_share']:>13.2f}  {r.get('slow_viewer_got_every_event', '')}"
        )
    return rows


def _submit(smoke: bool) -> dict[str, Any]:
    result = submit.run(n=200 if smoke else 2_000)
    print(
        f"submission: {result['keep_alive_per_s']} POST/s with keep-alive, "
        f"{result['new_connection_per_s']} POST/s with a new connection each ({result['client_threads']} threads); "
        f"{result['keyed_keep_alive_per_s']} POST/s with keep-alive as a key with rate and concurrency limits"
    )
    return result


def _batch(smoke: bool) -> dict[str, Any]:
    result = batch.run(lines=100 if smoke else 2_000, samples=10 if smoke else 30)
    idle, busy = result["pickup_idle_ms"], result["pickup_with_batch_ms"]
    print(
        f"batch isolation: {result['batch_lines']}-line batch submitted in {result['batch_submit_s']} s; "
        f"interactive pickup p50 {idle['p50']:.1f} ms idle, {busy['p50']:.1f} ms with the batch in flight "
        f"({result['ratio_p50']}x)"
    )
    return result


def _redis(smoke: bool) -> dict[str, Any]:
    result = pipeline.redis_cost()
    print("Redis cost, one generation and one viewer:")
    for key in ("10_tokens_per_s", "1000_tokens_per_s"):
        r = result[key]
        print(
            f"  {key:<18} events {r['events']:>5}  commands/token {r['commands_per_token']:>7.3f}  "
            f"round trips/token {r['round_trips_per_token']:>7.3f}"
        )
    print(f"  raw ceiling: {result['redis_benchmark_xadd']}")
    return result


def _recovery(smoke: bool) -> dict[str, Any]:
    result = recovery.run()
    print("recovery (default settings):")
    for case, figures in result.items():
        print(f"  {case:<28}{json.dumps(figures)}")
    return result


def _scale(smoke: bool) -> dict[str, Any]:
    result = scale.run(smoke)
    print("scale: one Redis vs a Redis Cluster (2 worker processes; lag = Redis -> viewer; overhead = model -> viewer)")
    print(
        f"  {'topology':<22}{'gens/s':>8}{'viewers':>9}{'lag p50':>9}{'p99':>7}{'complete':>10}"
        f"{'token p50':>11}{'p99':>7}"
    )
    for r in result["topologies"]:
        print(
            f"  {r['topology']:<22}{r['generations_per_s']:>8}{r['fanout_viewers']:>9}{r['fanout_lag_p50_ms']:>9}"
            f"{r['fanout_lag_p99_ms']:>7}{r['fanout_complete']:>10}{r['token_overhead_p50_ms']:>11}"
            f"{r['token_overhead_p99_ms']:>7}"
        )
    print(f"  failover (SIGKILL of the master holding the generation): {json.dumps(result['failover'])}")
    return result


def _providers(smoke: bool) -> dict[str, Any]:
    result = providers.run(n=12 if smoke else 60)
    limited, unlimited = result["limited"], result["unlimited"]
    print(
        f"provider limit: {result['generations']} generations of {result['tokens_each']} tokens on a provider limited "
        f"to {result['limit']} streams, 2 workers"
    )
    print(
        f"  most upstream streams at once {limited['max_upstream_streams']} (limit {result['limit']}); "
        f"all completed: {limited['completed'] == result['generations']}; "
        f"slot hand-off gap p50 {limited['handoff_gap_ms']['p50']} ms, p99 {limited['handoff_gap_ms']['p99']} ms; "
        f"burst {limited['wall_s']} s (ideal {limited['ideal_s']} s)"
    )
    print(
        f"  pickup with a free slot p50 {limited['first_pickup_p50_ms']} ms; "
        f"same provider without a limit {unlimited['first_pickup_p50_ms']} ms"
    )
    return result


def _joinstorm(smoke: bool) -> dict[str, Any]:
    result = joinstorm.run(300 if smoke else 3_000)
    print(f"join storm: {result['viewers']} viewers connecting at once to one live generation, one API process")
    print(f"  {'':<14}{'connected':>10}{'failed':>8}{'all in s':>10}{'p50 ms':>8}{'p99 ms':>8}{'every event':>13}")
    for side in ("reasonq", "bare_server"):
        r = result[side]
        print(
            f"  {side:<14}{r['connected']:>10}{sum(r['failed'].values()):>8}{r['connect_s']:>10}"
            f"{r['connect_p50_ms']:>8}{r['connect_p99_ms']:>8}{r['every_event_once']:>13}"
        )
    print("  where a viewer's connect time went, p50 / p99 ms (tcp: accepted; headers: status line; first event; the")
    print("  bare server sends its first event only when the model's stall ends):")
    for side in ("reasonq", "bare_server"):
        split = result[side]["split_ms"]
        print(f"  {side:<14}" + "".join(f"{phase} {v[0]} / {v[1]}   " for phase, v in split.items() if v))
    return result


def _manystreams(smoke: bool) -> list[dict[str, Any]]:
    n, rate, seconds = (1_000, 0.5, 6.0) if smoke else (10_000, 0.2, 30.0)
    rows = manystreams.run(n, rate, seconds)
    print(f"many streams: live generations on one API process, one viewer each, {rate} events/s per generation")
    print(f"  {'':<42}{'complete':>10}{'lag p50':>9}{'p99 ms':>8}{'write p99':>11}{'API CPU':>9}{'RSS MiB':>9}")
    for r in rows:
        print(
            f"  {r['run']:<42}{r['viewers_with_every_event']:>10}{r['lag_p50_ms']:>9}{r['lag_p99_ms']:>8}"
            f"{r['write_p99_ms']:>11}{r['api_cpu_share']:>9}{r['api_rss_mib']:>9}"
        )
    return rows


def _webhooks(smoke: bool) -> dict[str, Any]:
    result = webhooks.run(one_by_one=5 if smoke else 20, burst=10 if smoke else 50)
    one, burst = result["one_by_one"], result["burst"]
    print(
        f"webhooks (end -> delivered): one at a time p50 {one['p50_ms']:.0f} ms, p99 {one['p99_ms']:.0f} ms; "
        f"{burst['n']} ending together p50 {burst['p50_ms']:.0f} ms, p99 {burst['p99_ms']:.0f} ms"
    )
    return result


def _apiprocs(smoke: bool) -> dict[str, Any]:
    result = apiprocs.run(base=50, tokens=60) if smoke else apiprocs.run()
    print(
        f"API processes: one generation at 50 tokens/s; target: 2 processes x{result['factor']} the viewers of one"
        f" within its p99 ({result['p99_bar_ms']} ms) on {result['cpus']} cores: "
        f"{'met' if result['target_met'] else 'not met'}"
    )
    print(
        f"  {'processes':>10}{'viewers':>9}{'all events':>12}{'lag p50':>9}{'p99':>8}{'API CPU':>9}{'loadgen CPU':>13}"
        "  connections per process"
    )
    for r in result["rows"]:
        print(
            f"  {r['api_processes']:>10}{r['viewers']:>9}{r['viewers_with_every_event']:>12}{r['lag_p50_ms']:>9.1f}"
            f"{r['lag_p99_ms']:>8.1f}{r['api_cpu_share']:>9.2f}{r['load_generator_cpu_share']:>13.2f}"
            f"  {r['connections_per_process']}"
        )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--smoke", action="store_true", help="one short run of each quick scenario (CI)")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS, help="default: all (smoke: pipeline)")
    parser.add_argument("--out", default="bench/results", help="where the JSON report goes")
    args = parser.parse_args()
    smoke = ["pipeline", "latency", "fanout", "joinstorm", "concurrency", "burst"]
    chosen = args.scenario or (smoke if args.smoke else list(SCENARIOS))
    report: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    runners = {
        "pipeline": _pipeline,
        "latency": _latency,
        "fanout": _fanout,
        "joinstorm": _joinstorm,
        "concurrency": _concurrency,
        "burst": _burst,
        "submit": _submit,
        "batch": _batch,
        "redis": _redis,
        "recovery": _recovery,
        "scale": _scale,
        "providers": _providers,
        "webhooks": _webhooks,
        "manystreams": _manystreams,
        "apiprocs": _apiprocs,
    }
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
