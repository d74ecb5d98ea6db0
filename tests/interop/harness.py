"""What the slixmpp interop suites share: timing, checks, and the summary CI reads."""

from __future__ import annotations

import argparse
import asyncio
import collections
import logging
import sys
import time
import traceback
from typing import Any, Callable

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout

STEP_TIMEOUT = 10.0
START = time.monotonic()


class Failure(Exception):
    """A check failed: the message says what was expected and what happened."""


async def iq_call(label: str, what: str, awaitable) -> Any:
    """Awaits an iq, turning an error or a timeout into a Failure that names it."""
    try:
        return await awaitable
    except IqError as e:
        err = e.iq["error"]
        raise Failure(f"{label}: {what} failed: {err['type']}/{err['condition']} {err['text']!r}") from None
    except IqTimeout:
        raise Failure(f"{label}: {what} timed out") from None


def say(text: str) -> None:
    print(f"[{time.monotonic() - START:5.1f}s] {text}", flush=True)


def check(condition: Any, message: str) -> None:
    if not condition:
        raise Failure(message)


async def wait_for(condition: Callable[[], Any], what: str, timeout: float = STEP_TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise Failure(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


async def run_step(results: list[tuple[str, str, str]], clients: list, name: str, step,
                   timeout: float | None = None) -> bool:
    """Runs one step, records it in `results`, and on failure prints why and the last
    stanzas of every client."""
    say(f"STEP {name}")
    try:
        await asyncio.wait_for(step(), timeout)
    except Exception as e:  # noqa: BLE001 - reported, never swallowed
        if isinstance(e, Failure):
            detail = str(e)
        elif isinstance(e, asyncio.TimeoutError):
            detail = f"the step took longer than {timeout:.0f} s"
        else:
            detail = "".join(traceback.format_exception(e)).rstrip()
        say(f"FAIL {name}\n     {detail}")
        results.append((name, "failed", detail))
        dump_traces(clients)
        return False
    say(f"ok   {name}")
    results.append((name, "passed", ""))
    return True


async def run_chain(results: list[tuple[str, str, str]], clients: list, steps, timeout: float) -> bool:
    """Runs `steps` (name, step) in order, each needing the ones before it: after a failure
    the rest are recorded as skipped. Returns whether every step passed."""
    for name, step in steps:
        if results and results[-1][1] != "passed":
            results.append((name, "skipped", "an earlier step failed"))
            continue
        await run_step(results, clients, name, step, timeout)
    return all(status == "passed" for _, status, _ in results)


def dump_traces(clients: list) -> None:
    print("     last stanzas of each client:", flush=True)
    for c in clients:
        print(c.describe(), flush=True)


def abort_all(clients: list) -> None:
    """Drops every client's connection (or connection attempt) without ceremony."""
    for c in clients:
        c.cancel_connection_attempt()
        if c.transport:
            c.abort()


def report(results: list[tuple[str, str, str]], title: str, label: str) -> None:
    """Prints each step, then the `LABEL: N passed, N failed` line CI looks for."""
    print(f"\n== {title} (slixmpp {slixmpp.__version__}) ==")
    for name, status, detail in results:
        print(f"  {status.upper():7} {name}")
        if status == "failed":
            for line in detail.splitlines():
                print(f"          {line}")
    counts = collections.Counter(status for _, status, _ in results)
    line = f"{label}: {counts['passed']} passed, {counts['failed']} failed"
    if counts["skipped"]:
        line += f", {counts['skipped']} skipped"
    print(line, flush=True)


def parse_args(description: str, accounts: list[str]) -> argparse.Namespace:
    """The command line of a suite against one server: where it is, and a password for
    each of `accounts`; sets up logging (slixmpp's debug log with --debug)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True, help="c2s (STARTTLS) port")
    p.add_argument("--domain", default="localhost")
    for account in accounts:
        p.add_argument(f"--{account}-password", required=True)
    p.add_argument("--debug", action="store_true", help="slixmpp debug logging (every stanza)")
    args = p.parse_args()
    setup_logging(args.debug)
    return args


def setup_logging(debug: bool) -> None:
    """slixmpp's debug log (every stanza) with `debug`, else errors only, on stderr."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.ERROR,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stderr)


async def run_suite(suite, overall_timeout: float, title: str, label: str) -> int:
    """Runs `suite.run()` within `overall_timeout`, drops every client, prints the summary;
    returns the exit status."""
    try:
        ok = await asyncio.wait_for(suite.run(), overall_timeout)
    except asyncio.TimeoutError:
        suite.results.append((f"whole suite within {overall_timeout:.0f} s", "failed", "overall timeout"))
        ok = False
    finally:
        abort_all(suite.clients)
    report(suite.results, title, label)
    return 0 if ok else 1
