"""Data types of the bundle audit: findings, certificates and what an input holds."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes


class Severity(str, enum.Enum):
    """How much a finding matters: an error makes `comparer bundle` exit 1."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    def __str__(self) -> str:
        return self.value

    @property
    def rank(self) -> int:
        """Return 0 for errors, 1 for warnings and 2 for info, for sorting."""
        return {"error": 0, "warning": 1, "info": 2}[self.value]


@dataclass(frozen=True)
class Finding:
    """One problem or remark about a bundle.

    `code` is a stable short name such as "expired" or "unparsable". `file` and
    `line` locate the block; `line` is None for DER files and for findings about a
    whole file. `subject` and `fingerprint` (SHA-256) are None when no certificate
    could be read.
    """

    severity: Severity
    code: str
    message: str
    file: str | None = None
    line: int | None = None
    subject: str | None = None
    fingerprint: str | None = None

    @property
    def location(self) -> str:
        """Return `file:line`, the file alone, or an empty string."""
        if self.file is None:
            return ""
        if self.line is None:
            return self.file
        return f"{self.file}:{self.line}"

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form of the finding."""
        return {
            "severity": self.severity.value,
            "code": self.code,
            "message": self.message,
            "file": self.file,
            "line": self.line,
            "subject": self.subject,
            "sha256": self.fingerprint,
        }


def format_fingerprint(certificate: x509.Certificate) -> str:
    """Return the SHA-256 fingerprint as `openssl x509 -fingerprint` prints it."""
    return certificate.fingerprint(hashes.SHA256()).hex(":").upper()


@dataclass(frozen=True)
class CertificateEntry:
    """A certificate that parsed, with where it came from.

    `line` is the line of its BEGIN marker, None for DER input. `index` counts the
    certificates of its file from 1. `serial` is read once at parse time, because
    cryptography warns on every read of a serial number that is not positive.
    `parse_notes` are the deprecation warnings cryptography raised while parsing.
    """

    certificate: x509.Certificate
    file: str
    line: int | None
    index: int
    serial: int
    parse_notes: tuple[str, ...] = ()

    @property
    def fingerprint(self) -> str:
        """Return the SHA-256 fingerprint, colon-separated upper-case hex."""
        return format_fingerprint(self.certificate)

    @property
    def subject(self) -> str:
        """Return the subject as an RFC 4514 string."""
        return self.certificate.subject.rfc4514_string()

    @property
    def location(self) -> str:
        """Return `file:line`, or the file alone for DER input."""
        return self.file if self.line is None else f"{self.file}:{self.line}"

    def finding(self, severity: Severity, code: str, message: str) -> Finding:
        """Return a finding about this certificate, located at its BEGIN line."""
        return Finding(
            severity=severity,
            code=code,
            message=message,
            file=self.file,
            line=self.line,
            subject=self.subject,
            fingerprint=self.fingerprint,
        )


@dataclass(frozen=True)
class KeyBlock:
    """A private key block. `pem` is the block's text with its headers, for loading."""

    label: str
    file: str
    line: int | None
    pem: bytes | None = None
    der: bytes | None = None


@dataclass(frozen=True)
class OtherBlock:
    """A PEM block that is neither a certificate nor a private key, such as a CSR."""

    label: str
    file: str
    line: int


@dataclass
class ParsedInput:
    """Everything read from one input: a file, a wheel or a hashed directory.

    `findings` are the parse problems; the checks of the audit add theirs later.
    """

    name: str
    certificates: list[CertificateEntry] = field(default_factory=list)
    keys: list[KeyBlock] = field(default_factory=list)
    others: list[OtherBlock] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def extend(self, other: ParsedInput) -> None:
        """Append everything from another input, for the files of a directory."""
        self.certificates.extend(other.certificates)
        self.keys.extend(other.keys)
        self.others.extend(other.others)
        self.findings.extend(other.findings)
