"""Command-line entry point: parses arguments and dispatches to a subcommand."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from comparer import __version__
from comparer.errors import EXIT_INTERRUPTED, EXIT_USAGE, UsageError

# Each name is a module in comparer.commands with register() and run().
COMMANDS = ("check", "lab", "demo", "bundle")

EPILOG = """\
exit status:
  0  every stack verified every target
  1  a verification failed, or stacks disagree
  2  bad usage or unreadable input
"""


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="comparer",
        description="See where TLS certificate verification disagrees between "
        "client stacks, and why.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log debug messages and tracebacks"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"comparer.commands.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run comparer and return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="comparer: %(levelname)s: %(message)s",
    )
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        code: int = args.run(args)
    except UsageError as exc:
        print(f"comparer: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("comparer: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code
