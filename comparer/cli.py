"""Command-line entry point: parses arguments and dispatches to a subcommand."""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from comparer import __version__
from comparer.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, UsageError

# Errors from writing to a full or broken output file, as opposed to the probes.
_OUTPUT_ERRNOS = {errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG}

# Each name is a module in comparer.commands with register() and run().
COMMANDS = ("check", "lab", "demo", "bundle", "chain")

EPILOG = """\
exit status:
  0    every stack verified every target
  1    a verification failed, stacks disagree, or an image could not be probed
  2    bad usage, unreadable input or unwritable output
  130  interrupted by Ctrl-C; the results that finished are printed
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
    if sys.stdout is None:
        # Python sets sys.stdout to None when file descriptor 1 is closed.
        print(
            "comparer: error: standard output is closed; redirect it", file=sys.stderr
        )
        return EXIT_USAGE
    try:
        code: int = args.run(args)
        sys.stdout.flush()
    except UsageError as exc:
        print(f"comparer: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("comparer: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python from
        # reporting the same error again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    except OSError as exc:
        if exc.errno not in _OUTPUT_ERRNOS or exc.filename is not None:
            raise
        print(
            f"comparer: error: cannot write the output: {exc.strerror}", file=sys.stderr
        )
        return EXIT_USAGE
    return code
