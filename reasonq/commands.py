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
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from reasonq.client import DEFAULT_URL, Client, ReasonqClientError, StreamEvent
from reasonq.shared.events import ContentEvent, DoneEvent, ReasoningEvent, RestartEvent, StatusEvent, ToolCallEvent

EXIT_FAILED, EXIT_REFUSED, EXIT_CANCELLED, EXIT_NOT_FOUND, EXIT_UNREACHABLE, EXIT_UNAUTHORIZED = 1, 2, 3, 4, 5, 6
_EXIT_BY_STATUS = {"completed": 0, "failed": EXIT_FAILED, "cancelled": EXIT_CANCELLED}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each option's default, except where there is none to show; it wraps lines to a terminal,
    and never when written to a pipe or a file (where a hard wrap would cut sentences in two)."""

    def __init__(self, prog: str, **kwargs: Any) -> None:
        if not sys.stdout.isatty():
            kwargs["width"] = 10_000
        super().__init__(prog, **kwargs)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, "", False, argparse.SUPPRESS) or not action.option_strings:
            return action.help
        return super()._get_help_string(action)


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _err() -> Console:
    # soft_wrap: a message is one line however wide the terminal, and never hard-wrapped into a pipe or file.
    return Console(stderr=True, highlight=False, soft_wrap=True)


def _status_line(client: Client, generation_id: str) -> str:
    generation = client.get(generation_id)
    tokens = (generation.usage or {}).get("completion_tokens")
    parts: list[str] = [generation.status]
    if tokens is not None:
        parts.append(f"{tokens} tokens")
    if generation.started_at and generation.finished_at:
        parts.append(f"{generation.finished_at - generation.started_at:.1f} s")
    return " · ".join(parts)


def _follow(client: Client, generation_id: str, after: int | None) -> int:
    """Print the generation as it streams; on Ctrl-C say how to resume from the last event shown."""
    last, status = after, ""
    try:
        for item in _follow_events(client, generation_id, after):
            last = item.id
            if isinstance(item.event, DoneEvent):
                status = item.event.status
    except KeyboardInterrupt:
        _console().print()
        resume = f"reasonq tail {generation_id}" + (f" --after {last}" if last is not None else "")
        _err().print(f"[yellow]stopped watching; the generation goes on. Resume with:[/] {resume}")
        return 130
    _err().print(_status_line(client, generation_id), style="dim", markup=False)
    return _EXIT_BY_STATUS.get(status, EXIT_FAILED)


def _follow_events(client: Client, generation_id: str, after: int | None) -> Iterator[StreamEvent]:
    """Prints each event, and yields it once printed."""
    out = _console()
    err = _err()
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
        elif isinstance(event, ToolCallEvent):
            if event.name is not None:  # a call's first event: its name, then its arguments as they stream
                out.print(f"\n-> tool call {event.name}", style="cyan", end=" ", markup=False)
                in_answer = True
            out.print(event.arguments, end="", markup=False)
        elif isinstance(event, StatusEvent) and event.status == "queued" and event.reason:
            err.print(event.reason, style="yellow", markup=False)
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
        yield item
        if isinstance(event, DoneEvent):
            return


def _exit_for_status(status_code: int | None) -> int:
    if status_code == 404:
        return EXIT_NOT_FOUND
    if status_code in (401, 403):
        return EXIT_UNAUTHORIZED  # no or a wrong REASONQ_API_KEY, or a model the key may not use
    if status_code is not None and 400 <= status_code < 500:
        return EXIT_REFUSED  # the request itself (limits, validation): retrying the same will not help at once
    return EXIT_UNREACHABLE


def _run(args: argparse.Namespace) -> int:
    err = _err()
    try:
        with Client(args.url or None) as client:
            code: int = args.client_func(client, args)
            return code
    except ReasonqClientError as e:
        err.print(f"reasonq: {e}", style="red", markup=False)
        if e.status_code == 401:
            err.print("reasonq: this server asks for a key: set REASONQ_API_KEY=<your key> and try again")
        return _exit_for_status(e.status_code)
    except (httpx.HTTPError, httpx.InvalidURL) as e:
        url = args.url or os.environ.get("REASONQ_URL") or DEFAULT_URL
        err.print(f"reasonq: cannot reach the server at {url}: {e}", style="red", markup=False)
        err.print("reasonq: is it running (`reasonq up`)? Pass --url or set REASONQ_URL to reach another one.")
        return EXIT_UNREACHABLE
    except OSError as e:  # a file named on the command line
        err.print(f"reasonq: {e.filename or ''}: {e.strerror or e}", style="red", markup=False)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        err.print("[yellow]stopped; nothing on the server was changed[/]")
        return 130


def _submit(client: Client, args: argparse.Namespace) -> int:
    generation = client.submit(args.prompt, model=args.model, max_tokens=args.max_tokens)
    if args.json:
        print(json.dumps(generation.model_dump()))
    elif args.follow:
        _err().print(f"[dim]{generation.id}[/]")  # the id once, beside the stream (stdout is the text)
    else:
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
    err = _err()
    resumed = state.exists()
    if resumed:
        batch_id = state.read_text().strip()
    else:
        raw = Path(args.input).read_bytes()
        # The file's hash as the key: submitting the same file again returns the same batch, never a second one.
        batch_id = client.submit_batch(raw, hashlib.sha256(raw).hexdigest())["id"]
        state.write_text(batch_id)
    try:  # from here on, Ctrl-C leaves a batch running on the server: say so, and how to resume
        if resumed:
            err.print(f"resuming batch {batch_id} ({len(written)} results already in {output})", markup=False)
        else:
            err.print(f"submitted batch {batch_id}", markup=False)
        return _collect_batch(client, args, batch_id, output, written, err)
    except KeyboardInterrupt:
        err.print(
            f"[yellow]stopped collecting; batch {batch_id} goes on on the server. Resume with:[/] "
            f"reasonq batch {args.input} -o {args.output}"
        )
        return 130


def _collect_batch(
    client: Client, args: argparse.Namespace, batch_id: str, output: Path, written: set[str], err: Console
) -> int:
    state = Path(args.output + ".batch-id")
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
            if batch["status"] in ("completed", "cancelled", "expired") and len(written) >= counts["total"]:
                break
            time.sleep(args.poll_s)
    state.unlink(missing_ok=True)
    return 0 if batch["request_counts"]["failed"] == 0 else EXIT_FAILED


def _cancel(client: Client, args: argparse.Namespace) -> int:
    answer = client.cancel(args.id)
    if args.json:
        print(json.dumps(answer.model_dump()))
    elif answer.cancel_requested:
        print(f"{answer.id}: cancel requested (it was {answer.status}); it stops within a moment")
    else:
        print(f"{answer.id}: already {answer.status}; nothing to cancel")
    return 0


def add_client_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the client commands on the ``reasonq`` parser."""

    def command(name: str, help_text: str, func: object) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=HelpFormatter)
        p.add_argument("--url", default="", help=f"server URL (empty = REASONQ_URL, else {DEFAULT_URL})")
        p.set_defaults(func=_run, client_func=func)
        return p

    p = command("submit", "submit a prompt; prints its id, or follows it with --follow", _submit)
    p.add_argument("prompt", help="the user message")
    p.add_argument("--model", default=None, help="model name (unset = the server's default model)")
    p.add_argument("--max-tokens", type=int, default=None, help="most tokens to generate (unset = no cap)")
    p.add_argument("--follow", action="store_true", help="stream the reasoning (dimmed) and the answer")
    p.add_argument("--json", action="store_true", help="print the generation as JSON")
    p = command("tail", "stream a generation's reasoning and answer, resuming by itself", _tail)
    p.add_argument("id", help="generation id (gen_...)")
    p.add_argument("--after", type=int, default=None, help="start after this event id (unset = from the start)")
    p = command("get", "show a generation", _get)
    p.add_argument("id", help="generation id (gen_...)")
    p.add_argument("--json", action="store_true", help="print the generation as JSON")
    p = command("cancel", "cancel a generation", _cancel)
    p.add_argument("id", help="generation id (gen_...)")
    p.add_argument("--json", action="store_true", help="print the answer as JSON")
    p = command("batch", "run an OpenAI Batch JSONL file; writes results as they finish; resumable", _batch)
    p.add_argument("input", help="JSONL: {custom_id, method, url, body} per line")
    p.add_argument("-o", "--output", required=True, help="results JSONL (appended; rerun to resume)")
    p.add_argument("--poll-s", type=float, default=1.0, help="how often to collect results")


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use the reasonq command")
