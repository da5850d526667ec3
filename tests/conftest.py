"""Shared fixtures: the lab's endpoints and a TLS environment without overrides."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from cli_run import DROPPED_VARIABLES
from hypothesis import settings

from comparer.lab import Lab, names

# CI runs the property tests with a fixed seed and no per-example deadline, so that
# a loaded machine or a new random example cannot fail a run by chance. Local runs
# keep exploring new examples.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def clean_tls_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove the TLS, proxy and colour variables for one test."""
    for name in DROPPED_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """Every certificate scenario of the lab, started once per test session."""
    with Lab() as running:
        yield running


@pytest.fixture(scope="session")
def hostile_lab() -> Iterator[Lab]:
    """Only the hostile endpoints, whose RSA-8192 key takes seconds to generate."""
    hostile = sorted(set(names()) - set(names(hostile=False)))
    with Lab(names=hostile) as running:
        yield running
