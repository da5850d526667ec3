"""Data types shared by the stacks, the runner and the renderers."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Reason(str, enum.Enum):
    """Normalised verdict reason, one vocabulary for every stack."""

    OK = "ok"
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    SELF_SIGNED = "self-signed"
    UNKNOWN_ISSUER = "unknown-issuer"
    HOSTNAME_MISMATCH = "hostname-mismatch"
    WEAK_CRYPTO = "weak-crypto"
    INVALID_CERTIFICATE = "invalid-certificate"
    CLIENT_CERTIFICATE = "client-certificate"
    PROTOCOL = "protocol"
    CONNECT = "connect"
    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"
    ERROR = "error"

    def __str__(self) -> str:
        return self.value


# Reasons that carry no verdict on the certificate: the probe never got that far.
INCONCLUSIVE = frozenset(
    {Reason.TIMEOUT, Reason.CONNECT, Reason.UNAVAILABLE, Reason.ERROR}
)


@dataclass(frozen=True)
class Target:
    """One endpoint to probe.

    `host` is the name used for SNI and hostname verification. `address`, when set,
    is where the connection goes instead of resolving `host`, and `address_port` the
    port there when it differs (`--connect-to`). `sni` replaces the name sent in SNI
    and `send_sni=False` sends none; verification always checks `host`.
    """

    raw: str
    host: str
    port: int = 443
    path: str = "/"
    address: str | None = None
    address_port: int | None = None
    sni: str | None = None
    send_sni: bool = True

    @property
    def key(self) -> str:
        """Return the identity used to drop duplicate targets."""
        key = f"{self.host}:{self.port}{self.path}@{self.address or ''}"
        if self.address_port is not None:
            key += f":{self.address_port}"
        if not self.send_sni:
            key += "#no-sni"
        elif self.sni is not None:
            key += f"#sni={self.sni}"
        return key

    @property
    def is_ip(self) -> bool:
        """Return whether `host` is an IP address literal."""
        import ipaddress

        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    @property
    def netloc(self) -> str:
        """Return `host:port` with IPv6 literals in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """Return the https URL that the HTTP client stacks request."""
        return f"https://{self.netloc}{self.path}"

    @property
    def connect_host(self) -> str:
        """Return the host or address that the TCP connection goes to."""
        return self.address or self.host

    @property
    def connect_port(self) -> int:
        """Return the port that the TCP connection goes to."""
        return self.address_port or self.port

    @property
    def server_name(self) -> str | None:
        """Return the name to send in SNI, or None when no SNI is sent."""
        if not self.send_sni:
            return None
        if self.sni is not None:
            return self.sni
        # Clients send SNI for names only, never for IP literals (RFC 6066).
        return None if self.is_ip else self.host


@dataclass(frozen=True)
class TrustSource:
    """Trust anchors that one stack used for a probe.

    `path` is a PEM file or a hashed directory; `roots` is None when it could not be
    counted. `origin` names what chose it: "default", "certifi", "--ca-file" or an
    environment variable such as "SSL_CERT_FILE".
    """

    origin: str
    path: str | None
    kind: str = "file"
    roots: int | None = None
    certifi_version: str | None = None

    def describe(self) -> str:
        """Return one line such as `certifi 2026.10.19 (/x.pem, 145 roots)`."""
        parts = []
        if self.roots is not None:
            noun = "root" if self.roots == 1 else "roots"
            parts.append(f"{self.roots} {noun}")
        inner = ", ".join([self.path or "?", *parts])
        if self.origin == "certifi":
            return f"certifi {self.certifi_version or '?'} ({inner})"
        return f"{self.origin} ({inner})"


@dataclass(frozen=True)
class StackInfo:
    """One column of the comparison: a stack in a place, with its version and trust."""

    name: str
    where: str = "host"
    version: str | None = None
    trust: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def column(self) -> str:
        """Return the unique column key, `where/name`."""
        return f"{self.where}/{self.name}"

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form used in the `stacks` list."""
        data: dict[str, Any] = {
            "name": self.name,
            "where": self.where,
            "version": self.version,
            "trust": self.trust,
        }
        if self.facts:
            data["facts"] = self.facts
        return data


@dataclass(frozen=True)
class ProbeResult:
    """The verdict of one stack on one target.

    `detail` is the library's own message, kept for display only. `tls_version` is
    None when no handshake completed. `note` explains an `ok` that came with an HTTP
    or protocol error after the handshake.
    """

    stack: str
    ok: bool
    reason: Reason
    detail: str = ""
    where: str = "host"
    tls_version: str | None = None
    elapsed_ms: float = 0.0
    trust: str | None = None
    reproduce: str | None = None
    note: str | None = None
    verify_code: int | None = None
    address: str | None = None

    @property
    def column(self) -> str:
        """Return the column key, `where/stack`."""
        return f"{self.where}/{self.stack}"

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form of one result."""
        return {
            "stack": self.stack,
            "where": self.where,
            "ok": self.ok,
            "reason": self.reason.value,
            "detail": self.detail,
            "tls_version": self.tls_version,
            "elapsed_ms": round(self.elapsed_ms, 1),
            "trust": self.trust,
            "reproduce": self.reproduce,
            "note": self.note,
            "verify_code": self.verify_code,
            "address": self.address,
        }


@dataclass
class TargetReport:
    """All results for one target, plus what later analysis adds to it."""

    target: Target
    results: list[ProbeResult] = field(default_factory=list)
    error: str | None = None
    label: str | None = None
    warnings: list[dict[str, Any]] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)
    explanations: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def agree(self) -> bool:
        """Return whether every stack reached the same verdict.

        A stack that cannot run the probe at all (`unavailable`, such as --no-sni in a
        stack that always sends SNI) takes no side.
        """
        verdicts = {r.ok for r in self.results if r.reason is not Reason.UNAVAILABLE}
        return len(verdicts) <= 1

    @property
    def all_ok(self) -> bool:
        """Return whether every stack verified the target (False with no results)."""
        return (
            self.error is None
            and bool(self.results)
            and all(r.ok for r in self.results)
        )

    @property
    def all_failed(self) -> bool:
        """Return whether every stack rejected the target."""
        return bool(self.results) and not any(r.ok for r in self.results)

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form of one target."""
        data: dict[str, Any] = {
            "target": self.target.raw,
            "label": self.label,
            "host": self.target.host,
            "port": self.target.port,
            "address": self.target.address,
            "agree": self.agree,
            "error": self.error,
            "results": [r.to_json() for r in self.results],
            "warnings": self.warnings,
            "findings": self.findings,
            "explanations": self.explanations,
        }
        data.update(self.extra)
        return data
