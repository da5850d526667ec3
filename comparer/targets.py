"""Parse target strings (`host`, `host:port`, `https://host[:port][/path]`, IPs)."""

from __future__ import annotations

import ipaddress
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from comparer.errors import UsageError
from comparer.model import Target

DEFAULT_PORT = 443
MAX_TARGETS_FILE_BYTES = 16 * 1024 * 1024

# A DNS label: letters, digits, hyphen and underscore (seen in real service names),
# 1-63 characters, not starting or ending with a hyphen.
_TRAILING_COMMENT = re.compile(r"\s+#.*$")
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


class TargetError(UsageError):
    """A target string that cannot be probed; the message names it."""


def _check_hostname(host: str, raw: str) -> str:
    """Return the host name in lower-case ASCII (IDNA) form, or raise TargetError."""
    # A trailing dot makes a fully qualified name. Stacks treat it differently, which
    # is worth seeing, so it is kept.
    trailing_dot = "." if host.endswith(".") else ""
    labels = host[:-1].split(".") if trailing_dot else host.split(".")
    ascii_labels = []
    for label in labels:
        if not label:
            raise TargetError(f"invalid target {raw!r}: bad host name label '' (empty)")
        try:
            ascii_label = label.encode("idna").decode("ascii").lower()
        except UnicodeError:
            ascii_label = label
        if not _LABEL.match(ascii_label):
            raise TargetError(
                f"invalid target {raw!r}: bad host name label {label!r} "
                "(letters, digits and inner hyphens, 1-63 characters)"
            )
        ascii_labels.append(ascii_label)
    if all(label.isdigit() for label in ascii_labels):
        # "127.1" or "999.1.1.1": not a canonical IPv4 address, and no DNS name
        # is all digits; clients disagree on such strings, so they are rejected.
        raise TargetError(
            f"invalid target {raw!r}: not a valid IPv4 address (use four numbers "
            "from 0 to 255, such as 127.0.0.1)"
        )
    ascii_host = ".".join(ascii_labels)
    if len(ascii_host) > 253:
        raise TargetError(
            f"invalid target {raw!r}: host name longer than 253 characters"
        )
    return ascii_host + trailing_dot


def _parse_port(text: str, raw: str) -> int:
    # str.isdigit() accepts other scripts' digits and superscripts such as '²'.
    if not (text.isascii() and text.isdigit()):
        raise TargetError(f"invalid port in target {raw!r}: {text!r} is not a number")
    port = int(text)
    if not 1 <= port <= 65535:
        raise TargetError(f"invalid port in target {raw!r}: {port} is not in 1-65535")
    return port


def _split_host_port(netloc: str, raw: str) -> tuple[str, int]:
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise TargetError(f"invalid target {raw!r}: missing ']' after IPv6 address")
        host, rest = netloc[1:end], netloc[end + 1 :]
        if rest and not rest.startswith(":"):
            raise TargetError(f"invalid target {raw!r}: unexpected {rest!r} after ']'")
        return host, _parse_port(rest[1:], raw) if rest else DEFAULT_PORT
    if netloc.count(":") > 1:
        return netloc, DEFAULT_PORT  # a bare IPv6 address, checked by the caller
    if ":" in netloc:
        host, port_text = netloc.rsplit(":", 1)
        return host, _parse_port(port_text, raw)
    return netloc, DEFAULT_PORT


def parse_target(raw: str) -> Target:
    """Parse one target string, raising TargetError with a one-line message."""
    text = raw.strip()
    if not text:
        raise TargetError(
            f"invalid target {raw!r}: empty; give a host, host:port or URL"
        )
    if text.startswith("-"):
        raise TargetError(
            f"invalid target {raw!r}: starts with '-'; a host name cannot start with it"
        )
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise TargetError(
            f"invalid target {raw!r}: contains whitespace or control characters"
        )

    path = "/"
    if "://" in text:
        try:
            parts = urlsplit(text)
        except ValueError as exc:  # "Invalid IPv6 URL" for an unclosed '['
            raise TargetError(
                f"invalid target {raw!r}: {exc}; give https://host[:port][/path]"
            ) from None
        if parts.scheme.lower() != "https":
            raise TargetError(
                f"invalid target {raw!r}: scheme {parts.scheme!r} is not https"
            )
        if parts.username or parts.password:
            raise TargetError(
                f"invalid target {raw!r}: credentials in URLs are not supported"
            )
        netloc = parts.netloc
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
    else:
        netloc = text
        if "/" in netloc:
            netloc, _, rest = netloc.partition("/")
            path = "/" + rest

    host, port = _split_host_port(netloc, raw)
    if not host:
        raise TargetError(f"invalid target {raw!r}: empty host")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if ":" in host:
            raise TargetError(
                f"invalid target {raw!r}: {host!r} is not an IP address"
            ) from None
        host = _check_hostname(host, raw)
    else:
        host = address.compressed
    return Target(raw=text, host=host, port=port, path=path)


def parse_targets(raws: Iterable[str]) -> tuple[list[Target], list[tuple[str, str]]]:
    """Parse many targets, dropping duplicates, and return targets and errors.

    Each error is a (raw, message) pair, so one bad string never hides the others.
    """
    targets: list[Target] = []
    errors: list[tuple[str, str]] = []
    seen: set[str] = set()
    for raw in raws:
        try:
            target = parse_target(raw)
        except TargetError as exc:
            errors.append((raw, str(exc)))
            continue
        if target.key not in seen:
            seen.add(target.key)
            targets.append(target)
    return targets, errors


def read_targets_file(name: str) -> list[str]:
    """Read target lines from a file (`-` for stdin), skipping blanks and comments."""
    return [text for _, text in read_target_lines(name)]


def read_target_lines(name: str) -> list[tuple[int, str]]:
    """Read (line number, target) pairs from a file, skipping blanks and comments."""
    try:
        if name == "-":
            data = sys.stdin.buffer.read(MAX_TARGETS_FILE_BYTES + 1)
        else:
            with Path(name).open("rb") as handle:
                data = handle.read(MAX_TARGETS_FILE_BYTES + 1)
    except FileNotFoundError:
        raise UsageError(f"targets file not found: {name!r}") from None
    except IsADirectoryError:
        raise UsageError(f"targets file {name!r} is a directory; give a file") from None
    except OSError as exc:
        raise UsageError(f"cannot read targets file {name!r}: {exc.strerror}") from None
    if len(data) > MAX_TARGETS_FILE_BYTES:
        raise UsageError(f"targets file {name!r} is larger than 16 MiB")
    if b"\0" in data:
        raise UsageError(
            f"targets file {name!r} is binary (contains NUL bytes); give a text file"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"targets file {name!r} is not UTF-8 text") from None
    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        # A comment is a whole line starting with '#', or ' #' after a target.
        line = _TRAILING_COMMENT.sub("", line).strip()
        if line and not line.startswith("#"):
            lines.append((number, line))
    return lines
