"""Measure probing 50 lab targets inside 3 container images.

Prints a Markdown section for docs/benchmarks.md: the machine, the command, the cost
of starting an empty container per image, each image probed alone, and all images
probed concurrently (one container per image, as `probe_images` runs them).

Needs a running engine and the images of docker/build-test-images.sh:

    .venv/bin/python bench/bench_images.py [--targets 50] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time

from common import machine as host_machine

from comparer import engine as engines
from comparer.images import probe_images
from comparer.lab import Lab
from comparer.model import Target
from comparer.stacks.base import ProbeSettings
from comparer.targets import parse_target

IMAGES = [
    "comparer-test/bullseye:1",
    "comparer-test/bookworm:1",
    "comparer-test/trixie:1",
]


def machine() -> str:
    """Return the host description of bench/common.py and the engine version."""
    server = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout.strip()
    return f"{host_machine()}, Docker engine {server}"


def lab_targets(lab: Lab, count: int) -> list[Target]:
    """Return `count` distinct targets that cycle over the lab's scenarios."""
    scenarios = lab.scenarios
    return [
        parse_target(f"https://{scenarios[i % len(scenarios)].target}/bench/{i}")
        for i in range(count)
    ]


def start_overhead(engine: str, image: str, repeat: int) -> float:
    """Return the median seconds to run `true` in a confined container of `image`."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        engines.run_container(engine, image, ["true"], network="none", timeout=120)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def timed_run(
    images: list[str], targets: list[Target], settings: ProbeSettings, repeat: int
) -> tuple[float, int, list[str]]:
    """Return the median wall seconds, the result count and the errors of a run."""
    samples = []
    count = 0
    errors: list[str] = []
    for _ in range(repeat):
        started = time.perf_counter()
        run = asyncio.run(
            probe_images(images, targets, settings=settings, pull="never")
        )
        samples.append(time.perf_counter() - started)
        count = sum(len(results) for results in run.results.values())
        errors = run.errors
    return statistics.median(samples), count, errors


def main() -> int:
    """Run the benchmark and print the Markdown section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=50, help="number of targets")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement")
    args = parser.parse_args()
    engine = engines.find_engine()

    with Lab() as lab:
        targets = lab_targets(lab, args.targets)
        settings = ProbeSettings(ca_file=lab.ca_bundle, timeout=10.0)
        rows = []
        total_alone = 0.0
        for image in IMAGES:
            overhead = start_overhead(engine, image, args.repeat + 2)
            wall, count, errors = timed_run([image], targets, settings, args.repeat)
            if errors:
                print("\n".join(errors), file=sys.stderr)
                return 1
            total_alone += wall
            rows.append((image, overhead, wall, count))
        together, count_all, errors = timed_run(IMAGES, targets, settings, args.repeat)
        if errors:
            print("\n".join(errors), file=sys.stderr)
            return 1

    print(f"Machine: {machine()}\n")
    command = f"bench/bench_images.py --targets {args.targets} --repeat {args.repeat}"
    print(f"Command: `.venv/bin/python {command}` (medians of {args.repeat} runs)\n")
    print("| image | empty container (s) | run alone (s) | probing (s) | results |")
    print("|---|---|---|---|---|")
    for image, overhead, wall, count in rows:
        probing = wall - overhead
        print(f"| {image} | {overhead:.2f} | {wall:.2f} | {probing:.2f} | {count} |")
    print(
        f"\nAll {len(IMAGES)} images concurrently: {together:.2f} s wall for "
        f"{count_all} results; the same images one after another: {total_alone:.2f} s."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
