"""`comparer lab`: serve the catalogue of broken TLS endpoints until interrupted."""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from rich.console import Console
from rich.table import Table

from comparer.console import make_console
from comparer.errors import EXIT_FAILED, EXIT_OK, UsageError
from comparer.lab import Lab, LabError, Scenario, names


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `lab` subcommand and its options."""
    parser = subparsers.add_parser(
        "lab",
        help="serve deliberately broken TLS endpoints on localhost",
        description="Start one loopback TLS server per scenario (expired leaf, "
        "missing intermediate, hostname mismatch ...) and serve them until Ctrl-C. "
        "Certificates and keys are generated at start and removed at exit.",
    )
    parser.add_argument(
        "--hostile",
        action="store_true",
        help="also start endpoints that misbehave below the certificate: silent, "
        "resetting, trickling, oversized",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the catalogue as JSON on stdout, then keep serving",
    )
    parser.add_argument(
        "--only",
        metavar="NAME[,NAME]",
        help="start only these scenarios, hostile ones included "
        f"(choose from: {', '.join(names())})",
    )
    parser.set_defaults(run=run)


def parse_only(value: str | None) -> list[str] | None:
    """Split the --only value into names, raising UsageError for an unknown one."""
    if value is None:
        return None
    selected = [name.strip() for name in value.split(",") if name.strip()]
    if not selected:
        raise UsageError("--only needs at least one scenario name")
    known = names()
    for name in selected:
        if name not in known:
            choices = ", ".join(known)
            raise UsageError(
                f"unknown lab scenario {name!r} in --only; choose from {choices}"
            )
    return selected


def run(args: argparse.Namespace) -> int:
    """Start the lab, describe it, and serve until Ctrl-C or SIGTERM."""
    selected = parse_only(args.only)
    lab = Lab(hostile=args.hostile, names=selected)
    with _sigterm_as_interrupt():
        try:
            lab.start()
        except LabError as exc:
            print(f"comparer: error: {exc}", file=sys.stderr)
            return EXIT_FAILED
        try:
            _describe(lab, as_json=args.json)
            _wait_forever()
        except KeyboardInterrupt:
            pass
        finally:
            lab.stop()
    return EXIT_OK


def _describe(lab: Lab, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(catalogue_json(lab), indent=2), flush=True)
        print("comparer: lab running; press Ctrl-C to stop", file=sys.stderr)
    else:
        render_lab(lab, make_console())


def catalogue_json(lab: Lab) -> dict[str, Any]:
    """Return the JSON form of the running lab: bundles and scenarios."""
    return {
        "ca_bundle": str(lab.ca_bundle),
        "system_plus_internal": str(lab.system_plus_internal),
        "scenarios": [scenario.to_json() for scenario in lab.scenarios],
    }


def render_lab(lab: Lab, console: Console) -> None:
    """Print the scenario table and the commands that probe the lab."""
    table = Table(title="comparer lab", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("address", no_wrap=True)
    table.add_column("expected", no_wrap=True)
    table.add_column("description")
    for scenario in lab.scenarios:
        table.add_row(
            scenario.name,
            scenario.url.rstrip("/"),
            _expected_text(scenario),
            scenario.description,
        )
    console.print(table)

    ca_bundle = shlex.quote(str(lab.ca_bundle))
    console.print(f"Trust the lab roots with: --ca-file {ca_bundle}", highlight=False)
    example = next((s for s in lab.scenarios if s.trust == "ca-file"), None)
    if example is not None:
        console.print(
            f"Example: comparer check --ca-file {ca_bundle} {example.target}",
            highlight=False,
        )
    for scenario in lab.scenarios:
        if scenario.trust == "system-env":
            bundle = shlex.quote(str(lab.system_plus_internal))
            console.print(
                f"{scenario.name} trusts the system roots plus an internal root; "
                f"probe it without --ca-file: "
                f"SSL_CERT_FILE={bundle} comparer check {scenario.target}",
                highlight=False,
            )
    console.print("Press Ctrl-C to stop.", highlight=False)


def _expected_text(scenario: Scenario) -> str:
    if scenario.lenient is None:
        return scenario.expect.value
    return f"{scenario.expect.value} (lenient: {scenario.lenient.value})"


def _wait_forever() -> None:
    # Lock waits are interruptible on POSIX, so Ctrl-C ends this wait.
    threading.Event().wait()


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C, so the lab still removes its keys when killed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
