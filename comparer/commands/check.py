"""`comparer check`: probe targets with every stack and show where they disagree."""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from comparer.addresses import finish_run, plan_run
from comparer.analysis import (
    add_analysis_options,
    analyse,
    options_from_args,
    warning_exit_status,
)
from comparer.console import make_console
from comparer.engine import check_image_ref
from comparer.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
)
from comparer.images import ImageRun, probe_images
from comparer.model import StackInfo, Target, TargetReport
from comparer.pinning import add_address_options, options_from_namespace
from comparer.render import build_json, dump_json, render_table
from comparer.runner import RunState, run_probes
from comparer.stacks import DEFAULT_STACKS, get_stack, parse_stack_list
from comparer.stacks.base import ProbeSettings
from comparer.targets import TargetError, parse_target, read_target_lines

# Show a progress bar only for runs long enough to need one.
PROGRESS_MIN_PROBES = 20


@dataclass
class Outcome:
    """Result of a run: reports in input order, stack columns, interruption.

    `errors` has one line for each part of the run that could not happen at all,
    such as an image that did not start. The other columns are still shown.
    """

    reports: list[TargetReport]
    stacks: list[StackInfo]
    settings: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ImageOptions:
    """The container images to probe from, and how to run them."""

    images: tuple[str, ...]
    engine: str | None = None
    pull: str = "missing"
    mount_host_certs: bool = False


def positive_float(text: str) -> float:
    """Parse a positive number of seconds for argparse."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not between 0 and 3600 seconds")
    return value


def positive_int(text: str) -> int:
    """Parse a whole number from 1 to 10000 for argparse."""
    if not text.isdigit() or not 1 <= int(text) <= 10000:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number from 1 to 10000"
        )
    return int(text)


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """Add the options shared by `check` and `demo`: stacks, limits and output."""
    parser.add_argument(
        "--stacks",
        metavar="A,B",
        help=f"stacks to run, comma-separated (default: {','.join(DEFAULT_STACKS)})",
    )
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=10.0,
        metavar="SECONDS",
        help="time limit for one probe, in seconds (default: 10)",
    )
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=50,
        metavar="N",
        help="probes running at once (default: 50)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the results as JSON on stdout, nothing else",
    )
    images = parser.add_argument_group("container images")
    images.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="IMAGE",
        help="also probe from inside this image with its own OpenSSL, Python and CA "
        "bundle (repeatable; one container per image per run)",
    )
    images.add_argument(
        "--engine",
        choices=("docker", "podman"),
        help="container engine (default: whichever CLI is on PATH, docker first)",
    )
    images.add_argument(
        "--pull",
        choices=("never", "missing", "always"),
        default="missing",
        help="when to pull an image (default: missing)",
    )
    images.add_argument(
        "--mount-host-certs",
        action="store_true",
        help="mount the host's /etc/ssl/certs and /usr/share/ca-certificates "
        "read-only into each image, to test that common workaround",
    )


def register(subparsers: Any) -> None:
    """Add the `check` subcommand."""
    parser = subparsers.add_parser(
        "check",
        help="probe targets with every stack and compare the verdicts",
        description="Connect to each target through several TLS client stacks and "
        "show where certificate verification disagrees. A target is host, "
        "host:port, https://host[:port][/path], [ipv6]:port or an IP address; the "
        "default port is 443.",
        epilog="exit status: 0 every stack verified every target; 1 a verification "
        "failed, stacks disagree or an image could not be probed; 2 bad usage or "
        "unreadable input (invalid lines in a targets file become error rows, the "
        "other targets are still probed); 130 interrupted by Ctrl-C (the results "
        "that finished are printed). "
        "Expiry warnings change the exit status only with --fail-on-warnings.",
    )
    parser.add_argument(
        "targets", nargs="*", metavar="TARGET", help="endpoints to probe"
    )
    parser.add_argument(
        "-f",
        "--file",
        metavar="FILE",
        help="read targets from FILE, one per line ('-' for stdin, '#' comments)",
    )
    parser.add_argument(
        "--ca-file",
        metavar="PEM",
        help="make every stack trust exactly the certificates in this PEM bundle",
    )
    add_run_options(parser)
    add_address_options(parser)
    add_analysis_options(parser)
    parser.set_defaults(run=run)


def load_ca_file(name: str | None) -> Path | None:
    """Validate --ca-file: it must exist and contain at least one certificate."""
    if name is None:
        return None
    if name.startswith("-"):
        raise UsageError(f"invalid --ca-file {name!r}: give a path (use ./{name})")
    path = Path(name).resolve()
    if path.is_dir():
        raise UsageError(
            f"CA file {name!r} is a directory; give a PEM bundle (for a hashed "
            "directory, set SSL_CERT_DIR instead)"
        )
    if not path.exists():
        raise UsageError(f"CA file not found: {name!r}; give a PEM bundle")
    if not path.is_file():
        # Every stack opens the file again, so a pipe such as <(cat ca.pem) would
        # reach only the first one.
        raise UsageError(
            f"CA file {name!r} is not a regular file (a pipe or device); save the "
            "bundle to a file and pass that"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read CA file {name!r}: {exc.strerror}") from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise UsageError(f"CA file {name!r} contains no PEM certificate")
    try:
        ssl.create_default_context(cafile=str(path))
    except ssl.SSLError as exc:
        raise UsageError(
            f"CA file {name!r} contains a damaged certificate ({exc.reason or exc}); "
            f"run 'comparer bundle {name}' to find it"
        ) from None
    return path


def collect_targets(
    args: argparse.Namespace,
) -> tuple[list[Target], list[TargetReport]]:
    """Parse command-line and file targets; file lines that fail become error rows."""
    targets: list[Target] = []
    errors: list[TargetReport] = []
    seen: set[str] = set()

    def add(target: Target) -> None:
        if target.key not in seen:
            seen.add(target.key)
            targets.append(target)

    for raw in args.targets:
        add(parse_target(raw))  # a bad argument stops the run with exit 2
    if args.file is not None:
        for number, raw in read_target_lines(args.file):
            try:
                add(parse_target(raw))
            except TargetError as exc:
                errors.append(
                    TargetReport(
                        target=Target(raw=raw, host="", port=0),
                        error=f"line {number}: {exc}",
                    )
                )
    if not targets and not errors:
        if args.file is not None:
            raise UsageError(
                f"no targets in {args.file!r}: it has only blank lines and comments"
            )
        raise UsageError("no targets given; name at least one TARGET or use -f FILE")
    return targets, errors


def probe_all(
    targets: Sequence[Target],
    *,
    stack_names: Sequence[str],
    settings: ProbeSettings,
    concurrency: int,
    show_progress: bool,
    images: ImageOptions | None = None,
) -> Outcome:
    """Run every probe and return the outcome, partial if interrupted by Ctrl-C.

    Host probes and image containers run at the same time; image columns follow the
    host columns.
    """
    stacks = [get_stack(name) for name in stack_names]
    infos = [stack.info(settings) for stack in stacks]
    state = RunState()
    total = len(targets) * len(stacks)
    progress = None
    if show_progress and total >= PROGRESS_MIN_PROBES:
        progress = Progress(
            "probing",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
    interrupted = False
    task = progress.add_task("probes", total=total) if progress else None

    def advance(current: RunState) -> None:
        if progress is not None and task is not None:
            progress.update(task, completed=current.done)

    image_run: ImageRun | None = None

    async def run_all() -> None:
        nonlocal image_run
        host = run_probes(
            targets,
            stacks,
            settings=settings,
            concurrency=concurrency,
            state=state,
            on_result=advance,
        )
        if images is None or not images.images:
            await host
            return
        _, image_run = await asyncio.gather(host, probe_images_or_report(images))

    async def probe_images_or_report(images: ImageOptions) -> ImageRun:
        # A failure of the image side becomes an error line; the host columns stay.
        try:
            return await probe_images(
                list(images.images),
                list(targets),
                settings=settings,
                engine=images.engine,
                pull=images.pull,
                mount_host_certs=images.mount_host_certs,
            )
        except UsageError as exc:
            return ImageRun(errors=[str(exc)])

    try:
        if progress is not None:
            progress.start()
        asyncio.run(run_all())
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if progress is not None:
            progress.stop()
    errors: list[str] = []
    if image_run is not None:
        infos += image_run.stacks
        errors += image_run.errors
        for key, results in image_run.results.items():
            if key in state.reports:
                state.reports[key].results.extend(results)
    column_order = {info.column: index for index, info in enumerate(infos)}
    reports = [state.reports[t.key] for t in targets if t.key in state.reports]
    for report in reports:
        report.results.sort(key=lambda r: column_order.get(r.column, len(column_order)))
    return Outcome(
        reports=reports, stacks=infos, interrupted=interrupted, errors=errors
    )


def settings_json(
    settings: ProbeSettings, stack_names: Sequence[str]
) -> dict[str, Any]:
    """Return the run settings as they appear in JSON."""
    return {
        "ca_file": str(settings.ca_file) if settings.ca_file else None,
        "timeout": settings.timeout,
        "stacks": list(stack_names),
    }


def emit(outcome: Outcome, *, as_json: bool) -> int:
    """Print the outcome as a table or JSON and return the exit status."""
    for error in outcome.errors:
        print(f"comparer: warning: {error}", file=sys.stderr)
    if as_json:
        document = build_json(
            outcome.reports,
            outcome.stacks,
            settings=outcome.settings,
            interrupted=outcome.interrupted,
        )
        document["errors"] = outcome.errors
        print(dump_json(document))
    else:
        render_table(
            make_console(),
            outcome.reports,
            outcome.stacks,
            interrupted=outcome.interrupted,
        )
    return exit_status(outcome)


def exit_status(outcome: Outcome) -> int:
    """Return 130 if interrupted, 2 for invalid targets, 1 for failures, else 0."""
    if outcome.interrupted:
        return EXIT_INTERRUPTED
    if any(report.error is not None for report in outcome.reports):
        return EXIT_USAGE
    # An image or address that could not be probed leaves the run incomplete.
    if outcome.errors:
        return EXIT_FAILED
    if all(report.all_ok for report in outcome.reports):
        return EXIT_OK
    return EXIT_FAILED


def stderr_is_terminal() -> bool:
    """Return whether a progress bar on stderr would be seen by a person."""
    return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"


def image_options(args: argparse.Namespace) -> ImageOptions | None:
    """Return the image options from the command line, or None without --image."""
    if not args.image:
        given = [
            option
            for option, value in (
                ("--engine", args.engine is not None),
                ("--pull", args.pull != "missing"),
                ("--mount-host-certs", args.mount_host_certs),
            )
            if value
        ]
        if given:
            verb = "needs" if len(given) == 1 else "need"
            raise UsageError(f"{', '.join(given)} {verb} --image IMAGE; add an image")
        return None
    # Checked before any probe starts, so a bad reference stops the run at once.
    images = tuple(dict.fromkeys(check_image_ref(image) for image in args.image))
    return ImageOptions(
        images=images,
        engine=args.engine,
        pull=args.pull,
        mount_host_certs=args.mount_host_certs,
    )


def run(args: argparse.Namespace) -> int:
    """Run `comparer check`."""
    ca_file = load_ca_file(args.ca_file)
    stack_names = parse_stack_list(args.stacks)
    targets, invalid = collect_targets(args)
    settings = ProbeSettings(ca_file=ca_file, timeout=args.timeout)
    # Each name becomes one target per address (comparer/addresses.py).
    plan = plan_run(targets, options_from_namespace(args), timeout=args.timeout)
    outcome = probe_all(
        plan.targets,
        stack_names=stack_names,
        settings=settings,
        concurrency=args.concurrency,
        show_progress=stderr_is_terminal() and not args.json,
        images=image_options(args),
    )
    outcome.settings = settings_json(settings, stack_names)
    outcome.settings["addresses"] = plan.options.to_json()
    # Served chains, expiry warnings, findings, explanations and --at.
    analysis = options_from_args(args)
    analyse(outcome, settings=settings, concurrency=args.concurrency, options=analysis)
    # After the analysis, which sets each report's findings: the address comparison
    # adds its own and lets addresses that agree share a row.
    if not outcome.interrupted:
        outcome.reports, outcome.interrupted = finish_run(
            plan, outcome.reports, timeout=args.timeout
        )
    outcome.reports = invalid + outcome.reports
    status = emit(outcome, as_json=args.json)
    return warning_exit_status(status, outcome.reports, analysis)
