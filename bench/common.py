"""Helpers shared by the core and scale benchmarks: the machine, the lab, measuring.

The lab runs in its own process (`comparer lab --json --only good`), so its event
loop does not compete for the GIL with the process being measured.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PYTHON = sys.executable
SAMPLE_SECONDS = 0.02


def machine() -> str:
    """Return nproc, the CPU model, RAM, the kernel, Python and OpenSSL on one line."""
    model = "unknown CPU"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as handle:
        kib = int(handle.readline().split()[1])
    openssl = subprocess.run(
        ["openssl", "version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout.strip()
    return (
        f"{os.cpu_count()} CPUs ({model}), {kib / 1024 / 1024:.1f} GiB RAM, "
        f"{platform.system()} {platform.release()}, Python "
        f"{platform.python_version()} ({ssl.OPENSSL_VERSION}), {openssl} on PATH"
    )


@dataclass(frozen=True)
class RunningLab:
    """The lab's `good` endpoint in a child process."""

    port: int
    ca_bundle: str


@contextmanager
def good_lab() -> Iterator[RunningLab]:
    """Start `comparer lab --only good` in a child process and stop it afterwards."""
    process = subprocess.Popen(
        [PYTHON, "-m", "comparer", "lab", "--json", "--only", "good"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        lines = []
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if line.rstrip("\n") == "}":
                break
        catalogue = json.loads("".join(lines))
        port = catalogue["scenarios"][0]["port"]
        yield RunningLab(port=port, ca_bundle=catalogue["ca_bundle"])
    finally:
        # SIGINT, so the lab removes its directory as it does on Ctrl-C.
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)


def write_targets(path: Path, port: int, count: int) -> list[str]:
    """Write `count` distinct lab URLs, one per line, and return them."""
    urls = [f"https://localhost:{port}/bench/{index}" for index in range(count)]
    path.write_text("".join(url + "\n" for url in urls))
    return urls


@dataclass
class Measurement:
    """One child process: wall time, CPU time, peak memory and peak open files.

    `peak_rss_mib` is the largest RSS of the child or any one of its descendants
    (wait4). `peak_tree_pss_mib` is the largest sum of PSS over the child and its
    live descendants, sampled every SAMPLE_SECONDS. `peak_fds` is the most file
    descriptors the child held at a sample.
    `cpu_seconds` is user plus system time of the child and its descendants.
    """

    wall_seconds: float
    cpu_seconds: float
    peak_rss_mib: float
    peak_tree_pss_mib: float
    peak_fds: int
    returncode: int
    stdout: str


def _children(pid: int) -> list[int]:
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found += [int(child) for child in handle.read().split()]
    except OSError:
        pass
    return found


def _pss_kib(pid: int) -> int:
    # PSS divides each shared page among the processes that map it, so a sum over
    # 50 openssl children counts their shared libraries once.
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree_pss_kib(pid: int) -> int:
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        total += _pss_kib(current)
        pending += _children(current)
    return total


def _open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def run_measured(
    argv: Sequence[str],
    *,
    stdout_path: Path,
    env: dict[str, str] | None = None,
) -> Measurement:
    """Run `argv` to completion, sampling its process tree, and return the numbers."""
    peaks = {"tree": 0, "fds": 0}
    done = threading.Event()
    with stdout_path.open("w") as out:
        started = time.perf_counter()
        process = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.DEVNULL,
            env=env,
        )

        def sample() -> None:
            while not done.wait(SAMPLE_SECONDS):
                peaks["tree"] = max(peaks["tree"], _tree_pss_kib(process.pid))
                peaks["fds"] = max(peaks["fds"], _open_fds(process.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        done.set()
        sampler.join()
    # wait4 reaped the child, so Popen learns the status from here.
    process.returncode = os.waitstatus_to_exitcode(status)
    return Measurement(
        wall_seconds=wall,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        peak_rss_mib=usage.ru_maxrss / 1024,
        peak_tree_pss_mib=peaks["tree"] / 1024,
        peak_fds=peaks["fds"],
        returncode=process.returncode,
        stdout=stdout_path.read_text(),
    )


def nofile_limit() -> str:
    """Return the soft and hard RLIMIT_NOFILE of this process as `soft/hard`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return f"{soft}/{hard}"
