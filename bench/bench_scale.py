"""Measure the harness on 200, 1,000 and 2,000 lab targets with all five stacks.

Starts the lab's `good` endpoint in its own process, writes N distinct targets
(`https://localhost:PORT/bench/n`) and runs `comparer check --json --ca-file BUNDLE
-f FILE` once per size. Records wall time, probes per second, CPU time, peak RSS of
the comparer process, the peak summed RSS of its process tree, and the most file
descriptors it held. Prints a Markdown section for docs/benchmarks.md:

    .venv/bin/python bench/bench_scale.py [--sizes 200,1000,2000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

from common import PYTHON, good_lab, machine, nofile_limit, run_measured, write_targets

STACKS = 5


def main() -> int:
    """Run one harness per size and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="200,1000,2000")
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]

    rows = []
    with tempfile.TemporaryDirectory() as scratch, good_lab() as lab:
        directory = Path(scratch)
        for size in sizes:
            targets = directory / f"targets-{size}.txt"
            write_targets(targets, lab.port, size)
            argv = [PYTHON, "-m", "comparer", "check", "--json", "--no-each-address"]
            argv += ["--concurrency", str(args.concurrency)]
            argv += ["--ca-file", lab.ca_bundle, "-f", str(targets)]
            measured = run_measured(argv, stdout_path=directory / "out.json")
            document = json.loads(measured.stdout)
            reasons = Counter(
                r["reason"] for t in document["targets"] for r in t["results"]
            )
            rows.append((size, measured, reasons))

    print(f"Machine: {machine()}; RLIMIT_NOFILE {nofile_limit()}.\n")
    print(f"Command: `.venv/bin/python bench/bench_scale.py --sizes {args.sizes}` ")
    print(f"(`--concurrency {args.concurrency}`, one run per size).\n")
    print(
        "| targets | probes | wall (s) | probes/s | CPU (s) | peak RSS (MiB) "
        "| tree PSS (MiB) | peak fds | reasons |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for size, measured, reasons in rows:
        probes = size * STACKS
        tally = ", ".join(f"{count} {reason}" for reason, count in reasons.items())
        print(
            f"| {size} | {probes} | {measured.wall_seconds:.1f} | "
            f"{probes / measured.wall_seconds:.0f} | {measured.cpu_seconds:.1f} | "
            f"{measured.peak_rss_mib:.0f} | {measured.peak_tree_pss_mib:.0f} | "
            f"{measured.peak_fds} | {tally} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
