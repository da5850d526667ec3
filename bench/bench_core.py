"""Compare the harness with each client's bare sequential probes of the same targets.

Starts the lab's `good` endpoint in its own process and writes N distinct targets
(`https://localhost:PORT/bench/n`). Then, in one run, it measures:

- the harness, all five stacks: `comparer check --json --ca-file BUNDLE -f FILE`
  with `--no-each-address` and with the default, and comparer's runner alone
  (HARNESS_RUNS);
- each client alone, in its own child process, probing the same targets one after
  another in a plain loop: requests.get, httpx.get, aiohttp with one session per
  probe, an ssl-wrapped socket, and an `openssl s_client` subprocess.

The target is harness wall time <= 1.2 x (sum of the bare loop times / CPU cores).
Prints a Markdown section for docs/benchmarks.md:

    .venv/bin/python bench/bench_core.py [--targets 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from common import PYTHON, Measurement, good_lab, machine, run_measured, write_targets

CLIENTS = ("openssl", "stdlib", "requests", "httpx", "aiohttp")
TIMEOUT = 10.0


def _split(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or 443, parts.path or "/"


def bare_requests(urls: list[str], ca_bundle: str) -> int:
    """Probe each URL with requests.get and return how many verified."""
    import requests

    ok = 0
    for url in urls:
        response = requests.get(url, verify=ca_bundle, timeout=TIMEOUT)
        ok += response.status_code == 200
    return ok


def bare_httpx(urls: list[str], ca_bundle: str) -> int:
    """Probe each URL with httpx.get and one shared SSL context."""
    import httpx

    context = ssl.create_default_context(cafile=ca_bundle)
    ok = 0
    for url in urls:
        response = httpx.get(url, verify=context, timeout=TIMEOUT)
        ok += response.status_code == 200
    return ok


def bare_aiohttp(urls: list[str], ca_bundle: str) -> int:
    """Probe each URL with a new aiohttp session per probe, one after another."""
    import aiohttp

    context = ssl.create_default_context(cafile=ca_bundle)

    async def probe_all() -> int:
        ok = 0
        timeout = aiohttp.ClientTimeout(total=TIMEOUT)
        for url in urls:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(url, ssl=context) as response,
            ):
                await response.read()
                ok += response.status == 200
        return ok

    return asyncio.run(probe_all())


def bare_stdlib(urls: list[str], ca_bundle: str) -> int:
    """Wrap a socket per URL, send one GET and read the status line."""
    context = ssl.create_default_context(cafile=ca_bundle)
    ok = 0
    for url in urls:
        host, port, path = _split(url)
        with (
            socket.create_connection((host, port), timeout=TIMEOUT) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            tls.sendall((request + "Connection: close\r\n\r\n").encode())
            ok += tls.recv(4096).startswith(b"HTTP/1.1 200")
    return ok


def bare_openssl(urls: list[str], ca_bundle: str) -> int:
    """Run `openssl s_client` once per URL, sending a HEAD request on stdin."""
    binary = shutil.which("openssl") or "openssl"
    ok = 0
    for url in urls:
        host, port, path = _split(url)
        request = f"HEAD {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        request += "Connection: close\r\n\r\n"
        argv = [binary, "s_client", "-connect", f"{host}:{port}"]
        argv += ["-servername", host, "-verify_return_error", "-ign_eof"]
        argv += ["-nocommands", "-verify_hostname", host, "-CAfile", ca_bundle]
        argv += ["-no-CApath", "-no-CAstore"]
        done = subprocess.run(
            argv, input=request.encode(), capture_output=True, timeout=TIMEOUT
        )
        ok += b"Verify return code: 0 (ok)" in done.stdout
    return ok


BARE = {
    "openssl": bare_openssl,
    "stdlib": bare_stdlib,
    "requests": bare_requests,
    "httpx": bare_httpx,
    "aiohttp": bare_aiohttp,
}


def run_bare(client: str, targets_file: str, ca_bundle: str) -> int:
    """Child mode: run one client's loop and print its loop time and count as JSON."""
    urls = Path(targets_file).read_text().split()
    started = time.perf_counter()
    ok = BARE[client](urls, ca_bundle)
    seconds = time.perf_counter() - started
    print(json.dumps({"client": client, "seconds": seconds, "ok": ok}))
    return 0


def run_runner(targets_file: str, ca_bundle: str) -> int:
    """Child mode: probe the targets with comparer's runner and stacks only.

    No chain analysis and no rendering: this is the probing that the bare loops
    do, with comparer's concurrency. Prints the verified cells as JSON.
    """
    from comparer.runner import RunState, run_probes
    from comparer.stacks import get_stack
    from comparer.stacks.base import ProbeSettings
    from comparer.targets import parse_target

    targets = [parse_target(url) for url in Path(targets_file).read_text().split()]
    stacks = [get_stack(name) for name in CLIENTS]
    settings = ProbeSettings(ca_file=Path(ca_bundle), timeout=TIMEOUT)
    state = asyncio.run(
        run_probes(targets, stacks, settings=settings, concurrency=50, state=RunState())
    )
    ok = sum(r.ok for report in state.reports.values() for r in report.results)
    print(json.dumps({"ok": ok}))
    return 0


# The harness runs measured against the bare loops: name, extra arguments.
HARNESS_RUNS = {
    "comparer check --no-each-address": ["--no-each-address"],
    "comparer check (default: each address of localhost)": [],
    "runner and stacks only": None,
}


def measure_harness(
    name: str, targets: Path, ca_bundle: str, out: Path
) -> tuple[Measurement, int]:
    """Run one harness variant on the targets; return the numbers and verified cells."""
    extra = HARNESS_RUNS[name]
    if extra is None:
        argv = [PYTHON, __file__, "--runner", str(targets), ca_bundle]
        measured = run_measured(argv, stdout_path=out)
        return measured, int(json.loads(measured.stdout)["ok"])
    argv = [PYTHON, "-m", "comparer", "check", "--json", *extra]
    argv += ["--ca-file", ca_bundle, "-f", str(targets)]
    measured = run_measured(argv, stdout_path=out)
    document = json.loads(measured.stdout)
    ok = sum(r["ok"] for t in document["targets"] for r in t["results"])
    return measured, ok


def measure_bare(
    client: str, targets: Path, ca_bundle: str, out: Path
) -> tuple[Measurement, float, int]:
    """Run one bare loop in a child and return the numbers, loop seconds and count."""
    argv = [PYTHON, __file__, "--bare", client, str(targets), ca_bundle]
    measured = run_measured(argv, stdout_path=out)
    record = json.loads(measured.stdout)
    return measured, float(record["seconds"]), int(record["ok"])


def main() -> int:
    """Run the comparison `--repeat` times and print medians as Markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bare", nargs=3, metavar=("CLIENT", "FILE", "CA"))
    parser.add_argument("--runner", nargs=2, metavar=("FILE", "CA"))
    args = parser.parse_args()
    if args.bare:
        return run_bare(*args.bare)
    if args.runner:
        return run_runner(*args.runner)

    harness_runs: dict[str, list[tuple[Measurement, int]]]
    harness_runs = {name: [] for name in HARNESS_RUNS}
    bare_runs: dict[str, list[tuple[Measurement, float, int]]]
    bare_runs = {client: [] for client in CLIENTS}
    with tempfile.TemporaryDirectory() as scratch, good_lab() as lab:
        directory = Path(scratch)
        targets = directory / "targets.txt"
        write_targets(targets, lab.port, args.targets)
        out = directory / "out.json"
        for _ in range(args.repeat):
            for name in HARNESS_RUNS:
                harness_runs[name].append(
                    measure_harness(name, targets, lab.ca_bundle, out)
                )
            for client in CLIENTS:
                bare_runs[client].append(
                    measure_bare(client, targets, lab.ca_bundle, out)
                )

    print_report(args, harness_runs, bare_runs)
    return 0


def print_report(
    args: argparse.Namespace,
    harness_runs: dict[str, list[tuple[Measurement, int]]],
    bare_runs: dict[str, list[tuple[Measurement, float, int]]],
) -> None:
    """Print the machine, the command and the medians as a Markdown section."""
    cores = os.cpu_count() or 1
    probes = args.targets * len(CLIENTS)

    print(f"Machine: {machine()}.\n")
    print(f"Command: `.venv/bin/python bench/bench_core.py --targets {args.targets} ")
    print(f"--repeat {args.repeat}` (medians of {args.repeat} runs).\n")
    print(
        "| run | wall (s) | probes/s | CPU (s) | verified | peak RSS (MiB) "
        "| tree PSS (MiB) | peak fds |"
    )
    print("|---|---|---|---|---|---|---|---|")

    walls = {}
    for name, runs in harness_runs.items():
        wall = walls[name] = statistics.median(m.wall_seconds for m, _ in runs)
        cpu = statistics.median(m.cpu_seconds for m, _ in runs)
        print(
            f"| {name} | {wall:.2f} | {probes / wall:.0f} | {cpu:.2f} | "
            f"{min(ok for _, ok in runs)}/{probes} | "
            f"{max(m.peak_rss_mib for m, _ in runs):.0f} | "
            f"{max(m.peak_tree_pss_mib for m, _ in runs):.0f} | "
            f"{max(m.peak_fds for m, _ in runs)} |"
        )

    total = 0.0
    for client, bare in bare_runs.items():
        loop = statistics.median(seconds for _, seconds, _ in bare)
        cpu = statistics.median(m.cpu_seconds for m, _, _ in bare)
        total += loop
        print(
            f"| bare {client} loop | {loop:.2f} | {args.targets / loop:.0f} | "
            f"{cpu:.2f} | {min(ok for _, _, ok in bare)}/{args.targets} | "
            f"{max(m.peak_rss_mib for m, _, _ in bare):.0f} | "
            f"{max(m.peak_tree_pss_mib for m, _, _ in bare):.0f} | "
            f"{max(m.peak_fds for m, _, _ in bare)} |"
        )

    share = total / cores
    print(
        f"\nSum of the bare loops {total:.2f} s; / {cores} cores = {share:.2f} s; "
        f"target 1.2 x that = {1.2 * share:.2f} s."
    )
    for name, wall in walls.items():
        verdict = "met" if wall <= 1.2 * share else "missed"
        print(f"- {name}: {wall:.2f} s = {wall / share:.2f} x; {verdict}.")


if __name__ == "__main__":
    sys.exit(main())
