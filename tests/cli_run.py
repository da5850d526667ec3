"""Run the comparer command line in a child process with a controlled environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

# Variables that change a stack's trust store, the proxies and rich's colours.
DROPPED_VARIABLES = frozenset(
    {
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_COLOR",
        "FORCE_COLOR",
        "COLUMNS",
    }
)


def clean_env(**extra: str) -> dict[str, str]:
    """Return this environment without TLS, proxy and colour overrides, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_VARIABLES}
    env.update(extra)
    return env


def run_comparer(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m comparer ARGS` and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "comparer", *args],
        capture_output=True,
        text=True,
        env=env or clean_env(),
        timeout=120,
    )


def check_json(
    *args: str, env: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    """Run `comparer check --json ARGS`; return the exit status and the document."""
    done = run_comparer("check", "--json", *args, env=env)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def results_by_stack(target: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Return a target's JSON results keyed by stack name."""
    return {result["stack"]: result for result in target["results"]}


def explanation_of(target: dict[str, Any], stack: str) -> dict[str, Any]:
    """Return the explanation for one stack, failing the test when there is none."""
    found = [e for e in target["explanations"] if e["stack"] == stack]
    assert len(found) == 1, target["explanations"]
    return found[0]
