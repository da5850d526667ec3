"""`comparer demo`: start the lab and check every scenario, with no network needed."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

from comparer.analysis import AnalysisOptions, analyse
from comparer.commands.check import (
    Outcome,
    add_run_options,
    emit,
    image_options,
    probe_all,
    settings_json,
    stderr_is_terminal,
)
from comparer.errors import UsageError
from comparer.model import ProbeResult, Reason, StackInfo, TargetReport
from comparer.stacks import parse_stack_list
from comparer.stacks.base import ProbeSettings
from comparer.targets import parse_target


def register(subparsers: Any) -> None:
    """Add the `demo` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="start the local lab and check every scenario (no network needed)",
        description="Start the lab of deliberately broken endpoints on loopback and "
        "check every scenario with every stack, trusting the lab's CA bundle. The "
        "internal-root scenario is checked as on a machine that installed its root "
        "into the system store (SSL_CERT_FILE set): requests, which uses certifi, "
        "rejects it while the others accept it.",
        epilog="exit status: 1, because the lab's scenarios are broken on purpose; "
        "2 for bad usage.",
    )
    add_run_options(parser)
    parser.set_defaults(run=run)


def _probe_in_environment(
    targets: list[str],
    *,
    env_overrides: dict[str, str],
    stack_names: list[str],
    timeout: float,
) -> tuple[list[TargetReport], list[StackInfo]]:
    """Check targets in a child process whose environment has the given overrides.

    A child process is the faithful way: aiohttp reads SSL_CERT_FILE when it is
    imported, so changing os.environ in this process would not reach it.
    """
    env = {k: v for k, v in os.environ.items() if k not in env_overrides}
    env.update({k: v for k, v in env_overrides.items() if v})
    # The lab serves each scenario on 127.0.0.1 and ::1 alike: one row per name.
    argv = [sys.executable, "-m", "comparer", "check", "--json", "--no-each-address"]
    argv += ["--stacks", ",".join(stack_names), "--timeout", str(timeout), "--"]
    argv += targets
    completed = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=timeout * 4 + 30
    )
    if completed.returncode not in (0, 1):
        raise RuntimeError(f"child check failed: {completed.stderr.strip()[-500:]}")
    document = json.loads(completed.stdout)
    infos = [
        StackInfo(
            name=s["name"], where=s["where"], version=s["version"], trust=s["trust"]
        )
        for s in document["stacks"]
    ]
    reports = []
    for item in document["targets"]:
        report = TargetReport(target=parse_target(item["target"]))
        for data in item["results"]:
            report.results.append(
                ProbeResult(
                    stack=data["stack"],
                    where=data["where"],
                    ok=data["ok"],
                    reason=Reason(data["reason"]),
                    detail=data["detail"],
                    tls_version=data["tls_version"],
                    elapsed_ms=data["elapsed_ms"],
                    trust=data["trust"],
                    reproduce=data["reproduce"],
                    note=data["note"],
                    verify_code=data["verify_code"],
                    address=data["address"],
                )
            )
        # The child computed these where its trust is: with the overrides in place.
        report.warnings = item.get("warnings", [])
        report.findings = item.get("findings", [])
        report.explanations = item.get("explanations", [])
        if "chain" in item:
            report.extra["chain"] = item["chain"]
        reports.append(report)
    return reports, infos


def run(args: argparse.Namespace) -> int:
    """Run `comparer demo`."""
    from comparer.lab import Lab

    stack_names = parse_stack_list(args.stacks)
    with Lab() as lab:
        settings = ProbeSettings(ca_file=lab.ca_bundle, timeout=args.timeout)
        by_ca_file = [s for s in lab.scenarios if s.trust == "ca-file"]
        by_env = [s for s in lab.scenarios if s.trust != "ca-file"]
        targets = [parse_target(s.target) for s in by_ca_file]
        outcome: Outcome = probe_all(
            targets,
            stack_names=stack_names,
            settings=settings,
            concurrency=args.concurrency,
            show_progress=stderr_is_terminal() and not args.json,
            images=image_options(args),
        )
        if outcome.interrupted:
            raise KeyboardInterrupt
        labels = {parse_target(s.target).key: s.name for s in by_ca_file}
        for report in outcome.reports:
            report.label = labels.get(report.target.key)

        if by_env:
            # The machine the scenario imitates installed the root into its system
            # store and set nothing for requests, which therefore uses certifi.
            env = {
                "SSL_CERT_FILE": str(lab.system_plus_internal),
                "REQUESTS_CA_BUNDLE": "",
                "CURL_CA_BUNDLE": "",
            }
            try:
                env_reports, _ = _probe_in_environment(
                    [s.target for s in by_env],
                    env_overrides=env,
                    stack_names=stack_names,
                    timeout=args.timeout,
                )
            except (RuntimeError, subprocess.SubprocessError, ValueError) as exc:
                raise UsageError(
                    f"demo failed to probe with SSL_CERT_FILE set: {exc}"
                ) from exc
            for scenario, report in zip(by_env, env_reports, strict=True):
                report.label = f"{scenario.name} (SSL_CERT_FILE)"
                report.extra["environment"] = env
            outcome.reports.extend(env_reports)

        outcome.settings = settings_json(settings, stack_names)
        outcome.settings["demo"] = True
        analyse(
            outcome,
            settings=settings,
            concurrency=args.concurrency,
            options=AnalysisOptions(),
        )
        return emit(outcome, as_json=args.json)
