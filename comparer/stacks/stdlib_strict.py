"""What-if: this host's stdlib with the verify flags that Python 3.13 turns on.

Python 3.13's `ssl.create_default_context()` adds VERIFY_X509_STRICT and
VERIFY_X509_PARTIAL_CHAIN to the context (CPython gh-107361). Setting them on an
older Python shows which endpoints an upgrade would break, without a container.
"""

from __future__ import annotations

import ssl

from comparer.model import StackInfo, Target
from comparer.stacks.base import ProbeSettings, python_command
from comparer.stacks.stdlib_ssl import StdlibStack

STRICT_FLAGS = ssl.VERIFY_X509_STRICT | ssl.VERIFY_X509_PARTIAL_CHAIN
STRICT_FLAG_NAMES = ("VERIFY_X509_STRICT", "VERIFY_X509_PARTIAL_CHAIN")


class StdlibStrictStack(StdlibStack):
    """The stdlib stack with Python 3.13's VERIFY_X509_STRICT | PARTIAL_CHAIN."""

    name = "stdlib-strict"
    extra_flags = STRICT_FLAGS

    def info(self, settings: ProbeSettings) -> StackInfo:
        """Describe Python, its OpenSSL and the flags this stack adds."""
        base = super().info(settings)
        return StackInfo(
            name=self.name,
            version=f"{base.version} + {' | '.join(STRICT_FLAG_NAMES)}",
            trust=base.trust,
            facts={
                "verify_flags": list(STRICT_FLAG_NAMES),
                "what_if": "the default context of Python 3.13",
            },
        )

    def reproduce(self, target: Target, settings: ProbeSettings) -> str:
        """Return a python3 one-liner that repeats this probe with the flags set."""
        cafile = repr(str(settings.ca_file)) if settings.ca_file else "None"
        flags = " | ".join(f"ssl.{name}" for name in STRICT_FLAG_NAMES)
        return python_command(
            "import socket, ssl; "
            f"c = ssl.create_default_context(cafile={cafile}); "
            f"c.verify_flags |= {flags}; "
            "s = socket.create_connection("
            f"({target.connect_host!r}, {target.connect_port})); "
            f"print(c.wrap_socket(s, server_hostname={target.host!r}).version())"
        )
