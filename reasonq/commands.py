"""Client commands of the ``reasonq`` CLI: ``submit``, ``tail``, ``get``, ``cancel`` (terminal output by rich).

``batch`` runs an OpenAI Batch JSONL file, writing result lines as they finish; re-running it after an
interruption resumes the same batch and never writes a line twice.

Exit codes scripts can rely on: 0 the generation completed (or the command did what it says), 1 it failed
(for ``batch``: some line failed),
3 it was cancelled, 4 no such generation, 5 the server could not be reached or refused the request.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from reasonq.client import Client, ReasonqClientError
from shared.events import ContentEvent, DoneEvent, ReasoningEvent, RestartEvent, StatusEvent

EXIT_FAILED, EXIT_REFUSED, EXIT_CANCELLED, EXIT_NOT_FOUND, EXIT_UNREACHABLE, EXIT_UNAUTHORIZED = 1, 2, 3, 4, 5, 6
_EXIT_BY_STATUS = {"completed": 0, "failed": EXIT_FAILED, "cancelled": EXIT_CANCELLED}


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _follow(client: Client, generation_id: str, after: int | None) -> int:
    out = _console()
    err = Console(stderr=True, highlight=False)
    in_answer = False
    for item in client.stream(generation_id, after=after):
        event = item.event
        if isinstance(event, ReasoningEvent):
            out.print(event.delta, style="dim", end="", markup=False)  # model text is never markup
        elif isinstance(event, ContentEvent):
            if not in_answer:
                out.print("\n")
                in_answer = True
            out.print(event.delta, end="", markup=False)
        elif isinstance(event, RestartEvent):
            in_answer = False
            out.print()
            err.rule(f"restarted: attempt {event.attempt} ({event.reason}); the text starts again", style="yellow")
        elif isinstance(event, StatusEvent) and event.retry_in_s is not None:
            err.print(f"retrying the model in {event.retry_in_s:.1f} s: {event.reason}", style="yellow", markup=False)
        elif isinstance(event, DoneEvent):
            out.print()
            if event.error:
                message = f"{event.status}: {event.error.get('type')}: {event.error.get('message')}"
                err.print(message, style="red", markup=False)
            elif event.status != "completed":
                err.print(f"[yellow]{event.status}[/]")
            return _EXIT_BY_STATUS.get(event.status, EXIT_FAILED)
    return EXIT_FAILED


def _exit_for_status(status_code: int | None) -> int:
    if status_code == 404:
        return EXIT_NOT_FOUND
    if status_code in (401, 403):
        return EXIT_UNAUTHORIZED  # no or a wrong REASONQ_API_KEY, or a model the key may not use
    if status_code is not None and 400 <= status_code < 500:
        return EXIT_REFUSED  # the request itself (limits, validation): retrying the same will not help at once
    return EXIT_UNREACHABLE


def _run(args: argparse.Namespace) -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise on a terminal
    err = Console(stderr=True, highlight=False)
    try:
        with Client(args.url or None) as client:
            code: int = args.client_func(client, args)
            return code
    except ReasonqClientError as e:
        err.print(f"reasonq: {e}", style="red", markup=False)
        return _exit_for_status(e.status_code)
    except httpx.HTTPError as e:
        err.print(f"reasonq: cannot reach the server: {e}", style="red", markup=False)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        err.print("[yellow]stopped watching; the generation goes on[/]")
        return 130


def _submit(client: Client, args: argparse.Namespace) -> int:
    generation = client.submit(args.prompt, model=args.model, max_tokens=args.max_tokens)
    if args.json:
        print(json.dumps(generation.model_dump()))
    else:
        Console(stderr=True, highlight=False).print(f"[dim]{generation.id}[/]")
        if not args.follow:
            print(generation.id)
    return _follow(client, generation.id, None) if args.follow else 0


def _tail(client: Client, args: argparse.Namespace) -> int:
    return _follow(client, args.id, args.after)


def _get(client: Client, args: argparse.Namespace) -> int:
    generation = client.get(args.id)
    if args.json:
        print(json.dumps(generation.model_dump()))
    else:
        out = _console()
        out.print(f"[bold]{generation.id}[/]  {generation.status}  attempt {generation.attempt}  {generation.model}")
        if generation.reasoning:
            out.print(generation.reasoning, style="dim", markup=False)
        out.print(generation.content, markup=False)
        if generation.error:
            out.print(str(generation.error), style="red", markup=False)
    return _EXIT_BY_STATUS.get(generation.status, 0) if generation.status != "running" else 0


def _batch(client: Client, args: argparse.Namespace) -> int:
    """Submit a JSONL batch and write results as they finish; re-running after an interruption resumes."""
    state = Path(args.output + ".batch-id")
    output = Path(args.output)
    written: set[str] = set()
    if output.exists():
        for line in output.read_text().splitlines():
            if line.strip():
                written.add(json.loads(line)["custom_id"])
    err = Console(stderr=True, highlight=False)
    if state.exists():
        batch_id = state.read_text().strip()
        err.print(f"resuming batch {batch_id} ({len(written)} results already in {output})", markup=False)
    else:
        raw = Path(args.input).read_bytes()
        # The file's hash as the key: submitting the same file again returns the same batch, never a second one.
        batch_id = client.submit_batch(raw, hashlib.sha256(raw).hexdigest())["id"]
        state.write_text(batch_id)
        err.print(f"submitted batch {batch_id}", markup=False)
    with (
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            console=err,
        ) as progress,
        output.open("a") as out,
    ):
        batch = client.get_batch(batch_id)
        task = progress.add_task("batch", total=batch["request_counts"]["total"], rate="")
        started, start_count = time.monotonic(), len(written)
        while True:
            batch = client.get_batch(batch_id)
            for result in client.batch_results(batch_id):
                if result["custom_id"] not in written:
                    out.write(json.dumps(result) + "\n")
                    written.add(result["custom_id"])
            out.flush()
            counts = batch["request_counts"]
            rate = (len(written) - start_count) / max(time.monotonic() - started, 1e-6)
            progress.update(
                task,
                completed=len(written),
                rate=f"{rate:.1f}/s",
                description=f"{counts['completed']} ok, {counts['failed']} failed",
            )
            if batch["status"] in ("completed", "cancelled") and len(written) >= counts["total"]:
                break
            time.sleep(args.poll_s)
    state.unlink(missing_ok=True)
    return 0 if batch["request_counts"]["failed"] == 0 else EXIT_FAILED


def _cancel(client: Client, args: argparse.Namespace) -> int:
    answer = client.cancel(args.id)
    print(json.dumps(answer.model_dump()))
    return 0


def add_client_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the client commands on the ``reasonq`` parser."""

    def command(name: str, help_text: str, func: object) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--url", default="", help="server URL (default REASONQ_URL, else http://127.0.0.1:8000)")
        p.set_defaults(func=_run, client_func=func)
        return p

    p = command("submit", "submit a prompt; prints its id, or follows it with --follow", _submit)
    p.add_argument("prompt")
    p.add_argument("--model", default=None)
    p.add_argument("--max-tokens", type=int, default=None)
    p.add_argument("--follow", action="store_true", help="stream the reasoning (dimmed) and the answer")
    p.add_argument("--json", action="store_true", help="print the generation as JSON")
    p = command("tail", "stream a generation's reasoning and answer, resuming by itself", _tail)
    p.add_argument("id")
    p.add_argument("--after", type=int, default=None, help="start after this event id")
    p = command("get", "show a generation", _get)
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    p = command("cancel", "cancel a generation", _cancel)
    p.add_argument("id")
    p = command("batch", "run an OpenAI Batch JSONL file; writes results as they finish; resumable", _batch)
    p.add_argument("input", help="JSONL: {custom_id, method, url, body} per line")
    p.add_argument("-o", "--output", required=True, help="results JSONL (appended; rerun to resume)")
    p.add_argument("--poll-s", type=float, default=1.0, help="how often to collect results")


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use the reasonq command")
