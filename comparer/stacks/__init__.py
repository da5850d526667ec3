"""The TLS client stacks comparer can probe with, by name."""

from __future__ import annotations

import importlib

from comparer.errors import UsageError
from comparer.stacks.base import ProbeSettings, Stack

__all__ = ["DEFAULT_STACKS", "STACK_MODULES", "ProbeSettings", "Stack", "get_stack"]

# Stack name -> module and class. Modules are imported on first use, so a run with
# --stacks openssl never imports aiohttp (which reads SSL_CERT_FILE at import time).
STACK_MODULES: dict[str, tuple[str, str]] = {
    "openssl": ("comparer.stacks.openssl_cli", "OpensslCliStack"),
    "stdlib": ("comparer.stacks.stdlib_ssl", "StdlibStack"),
    "requests": ("comparer.stacks.requests_stack", "RequestsStack"),
    "httpx": ("comparer.stacks.httpx_stack", "HttpxStack"),
    "aiohttp": ("comparer.stacks.aiohttp_stack", "AiohttpStack"),
    # What-if stacks, only run when --stacks names them.
    "stdlib-strict": ("comparer.stacks.stdlib_strict", "StdlibStrictStack"),
    "cryptography": ("comparer.stacks.cryptography_stack", "CryptographyStack"),
}

DEFAULT_STACKS = ("openssl", "stdlib", "requests", "httpx", "aiohttp")


def get_stack(name: str) -> Stack:
    """Return a new instance of the named stack."""
    try:
        module_name, class_name = STACK_MODULES[name]
    except KeyError:
        known = ", ".join(STACK_MODULES)
        raise UsageError(f"unknown stack {name!r}; choose from: {known}") from None
    module = importlib.import_module(module_name)
    stack: Stack = getattr(module, class_name)()
    return stack


def parse_stack_list(text: str | None) -> list[str]:
    """Parse `--stacks a,b` into stack names, or return the defaults for None.

    Unknown and empty names raise UsageError.
    """
    if text is None:
        return list(DEFAULT_STACKS)
    names = [part.strip() for part in text.split(",")]
    if not any(names) or not all(names):
        raise UsageError(f"invalid --stacks {text!r}: give names separated by commas")
    for name in names:
        if name not in STACK_MODULES:
            known = ", ".join(STACK_MODULES)
            raise UsageError(
                f"unknown stack {name!r} in --stacks; choose from: {known}"
            )
    return list(dict.fromkeys(names))
