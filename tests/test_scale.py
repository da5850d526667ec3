"""Many targets and scarce resources: bounded sockets, no hidden retries.

The full 2,000-target run is a benchmark (bench/bench_scale.py); these tests keep to a
few hundred probes so that the suite stays fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from comparer.lab import Lab
from comparer.model import Reason
from comparer.runner import TIMEOUT_MARGIN
from comparer.stacks import DEFAULT_STACKS

# 300 targets x 5 stacks under an open-file limit of 160: the runner allows
# (160 - 64) // 4 = 24 probes at once.
LOW_TARGETS = 300
LOW_NOFILE = 160


def clean_env() -> dict[str, str]:
    """Return the environment without TLS, proxy and colour overrides."""
    drop = {"SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"}
    drop |= {"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"}
    drop |= {"ALL_PROXY", "all_proxy", "NO_COLOR", "FORCE_COLOR", "COLUMNS"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def with_open_file_limit(limit: int, argv: list[str]) -> list[str]:
    """Return a command that sets both RLIMIT_NOFILE limits, then execs `argv`.

    A small Python trampoline instead of preexec_fn, which is unsafe in a process
    with threads such as the lab's.
    """
    code = (
        "import os, resource, sys; "
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, {limit})); "
        "os.execv(sys.argv[1], sys.argv[1:])"
    )
    return [sys.executable, "-c", code, *argv]


def run_many(
    lab: Lab, tmp_path: Path, count: int, *args: str, nofile: int
) -> subprocess.CompletedProcess[str]:
    """Check `count` distinct paths of the good endpoint under an open-file limit."""
    port = lab.scenario("good").port
    targets = tmp_path / "targets.txt"
    targets.write_text(
        "".join(f"https://localhost:{port}/scale/{n}\n" for n in range(count))
    )
    argv = [sys.executable, "-m", "comparer", "check", "--json", *args]
    argv += ["--ca-file", str(lab.ca_bundle), "-f", str(targets)]
    return subprocess.run(
        with_open_file_limit(nofile, argv),
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=240,
    )


def test_low_open_file_limit_classifies_every_cell(lab: Lab, tmp_path: Path) -> None:
    done = run_many(
        lab, tmp_path, LOW_TARGETS, "--concurrency", "200", nofile=LOW_NOFILE
    )
    assert "Traceback" not in done.stderr
    # The runner lowered the concurrency to fit the limit and logged a warning.
    assert "lowering --concurrency from 200 to 24" in done.stderr
    document = json.loads(done.stdout)
    cells = [r for t in document["targets"] for r in t["results"]]
    assert len(document["targets"]) == LOW_TARGETS
    assert len(cells) == LOW_TARGETS * len(DEFAULT_STACKS)
    failed = [(c["stack"], c["reason"], c["detail"]) for c in cells if not c["ok"]]
    assert failed == []
    assert done.returncode == 0


def test_duplicate_paths_probed_once(lab: Lab, tmp_path: Path) -> None:
    port = lab.scenario("good").port
    targets = tmp_path / "targets.txt"
    lines = [f"https://localhost:{port}/same", f"localhost:{port}/same"] * 50
    targets.write_text("\n".join(lines) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "comparer", "check", "--json", "--stacks", "stdlib"]
        + ["--ca-file", str(lab.ca_bundle), "-f", str(targets)],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["targets"]) == 1


# --- no hidden retries: one connection and at most one timeout per probe --------------


class CountingServer:
    """A TCP listener on 127.0.0.1 that counts connections and then either resets
    each one (`reset`) or keeps it open in silence (`silent`)."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.connections = 0
        self.held: list[socket.socket] = []
        self.stopping = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port: int = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> CountingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopping.set()
        self.thread.join(10)
        for connection in self.held:
            connection.close()
        self.listener.close()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            if self.behaviour == "reset":
                # SO_LINGER with a zero timeout makes close() send RST.
                linger = struct.pack("ii", 1, 0)
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                connection.close()
            else:
                self.held.append(connection)


@pytest.fixture
def counting_servers(
    request: pytest.FixtureRequest,
) -> Iterator[dict[str, CountingServer]]:
    """One counting server per default stack, all with the same behaviour."""
    with contextlib.ExitStack() as stack:
        yield {
            name: stack.enter_context(CountingServer(request.param))
            for name in DEFAULT_STACKS
        }


def probe_each_stack(
    servers: dict[str, CountingServer], timeout: float
) -> dict[str, dict[str, Any]]:
    """Run `comparer check --stacks STACK` on each stack's own server, all at once.

    Child processes, because requests can leave an unclosed SSLSocket behind when a
    peer resets before the handshake (seen on Python 3.11 with urllib3 2.8), and
    in this process that ResourceWarning would fail the session.
    """
    children = {
        stack: subprocess.Popen(
            [sys.executable, "-m", "comparer", "check", "--json", "--stacks", stack]
            + ["--timeout", str(timeout), f"127.0.0.1:{server.port}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        for stack, server in servers.items()
    }
    results = {}
    for stack, child in children.items():
        stdout, stderr = child.communicate(timeout=120)
        assert "Traceback" not in stderr, stack
        results[stack] = json.loads(stdout)["targets"][0]["results"][0]
    return results


@pytest.mark.parametrize("counting_servers", ["reset"], indirect=True)
def test_reset_connects_once(counting_servers: dict[str, CountingServer]) -> None:
    results = probe_each_stack(counting_servers, timeout=2)
    for stack, server in counting_servers.items():
        assert results[stack]["reason"] == Reason.CONNECT.value, stack
        assert server.connections == 1, stack


@pytest.mark.parametrize("counting_servers", ["silent"], indirect=True)
def test_silent_costs_one_timeout(counting_servers: dict[str, CountingServer]) -> None:
    timeout = 1.0
    results = probe_each_stack(counting_servers, timeout=timeout)
    for stack, server in counting_servers.items():
        assert results[stack]["reason"] == Reason.TIMEOUT.value, stack
        assert server.connections == 1, stack
        # One timeout, not one per retry: at most the runner's margin beyond it.
        elapsed = results[stack]["elapsed_ms"] / 1000
        assert timeout * 0.9 <= elapsed <= timeout + TIMEOUT_MARGIN + 0.5, stack


def test_requests_default_has_no_retries() -> None:
    import requests.adapters

    assert requests.adapters.DEFAULT_RETRIES == 0
    retries = requests.adapters.HTTPAdapter().max_retries
    assert retries.total == 0
    assert retries.connect is None
    assert retries.read is False
