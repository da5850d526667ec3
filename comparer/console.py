"""The rich console every command prints its tables to."""

from __future__ import annotations

import os
import sys
from typing import Any

from rich.console import Console

# Width for output that goes to a file or pipe, where no terminal sets one.
PIPE_WIDTH = 160


def make_console(stream: Any = None) -> Console:
    """Return a console that honours NO_COLOR, COLUMNS and terminal detection.

    Output to a file or pipe gets PIPE_WIDTH columns instead of rich's 80, so that
    addresses and paths are not cut; COLUMNS still overrides it.
    """
    console = Console(file=stream or sys.stdout, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPE_WIDTH
    return console
