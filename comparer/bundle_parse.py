"""Split PEM and DER input into certificates, keys and other blocks.

Damage found on the way becomes a finding with the file and line: text that is not
PEM inside a block, base64 that does not decode, DER that ends early, markers that
OpenSSL would not recognise. Windows line endings and a UTF-8 byte order mark are
accepted silently, because OpenSSL 3.0 reads certificates with either.
"""

from __future__ import annotations

import base64
import binascii
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

from cryptography import x509

from comparer.bundle_model import (
    CertificateEntry,
    Finding,
    KeyBlock,
    OtherBlock,
    ParsedInput,
    Severity,
)

_BEGIN = re.compile(rb"^-----BEGIN ([A-Z0-9]+(?: [A-Z0-9]+)*)-----$")
_END = re.compile(rb"^-----END ([A-Z0-9]+(?: [A-Z0-9]+)*)-----$")
# A line that was probably meant as a BEGIN or END marker but is not exactly one.
_MARKER_PATTERN = rb"^\s*-{3,}\s*(BEGIN|END)\b"
_MARKER_LIKE = re.compile(_MARKER_PATTERN)
_BASE64_LINE = re.compile(rb"^[A-Za-z0-9+/]+={0,2}$")
# RFC 1421 headers, which OpenSSL writes for legacy encrypted keys (Proc-Type).
_HEADER_LINE = re.compile(rb"^[A-Za-z][A-Za-z0-9-]*:\s")
# A line outside any block that looks like part of a certificate's body.
_STRAY_BASE64 = re.compile(rb"^[A-Za-z0-9+/]{16,}={0,2}$")
_BOM = b"\xef\xbb\xbf"

# OpenSSL reads "X509 CERTIFICATE" as an old name of CERTIFICATE, and "TRUSTED
# CERTIFICATE" is a certificate followed by OpenSSL's own trust settings.
CERTIFICATE_LABELS = frozenset(
    {"CERTIFICATE", "X509 CERTIFICATE", "TRUSTED CERTIFICATE"}
)
KEY_LABELS = frozenset(
    {
        "PRIVATE KEY",
        "RSA PRIVATE KEY",
        "EC PRIVATE KEY",
        "DSA PRIVATE KEY",
        "ENCRYPTED PRIVATE KEY",
        "OPENSSH PRIVATE KEY",
    }
)
OTHER_LABELS = frozenset(
    {
        "X509 CRL",
        "CERTIFICATE REQUEST",
        "NEW CERTIFICATE REQUEST",
        "PUBLIC KEY",
        "RSA PUBLIC KEY",
        "PKCS7",
        "CMS",
        "DH PARAMETERS",
        "X9.42 DH PARAMETERS",
        "EC PARAMETERS",
        "PARAMETERS",
        "SSL SESSION PARAMETERS",
    }
)


def read_tlv(data: bytes, offset: int = 0) -> tuple[int, int, int]:
    """Read a DER tag and length at `offset`; return (tag, header size, length).

    Raises ValueError when the header is cut off or uses an indefinite length.
    """
    if offset + 2 > len(data):
        raise ValueError("DER header is cut off")
    tag = data[offset]
    first = data[offset + 1]
    if first < 0x80:
        return tag, 2, first
    count = first & 0x7F
    if count == 0 or count > 4:
        raise ValueError("DER length is indefinite or too large")
    if offset + 2 + count > len(data):
        raise ValueError("DER length is cut off")
    length = int.from_bytes(data[offset + 2 : offset + 2 + count], "big")
    return tag, 2 + count, length


def der_object_size(data: bytes) -> int:
    """Return the size of the first DER object in `data`, header included."""
    _tag, header, length = read_tlv(data)
    return header + length


@dataclass
class _Block:
    """A PEM block while it is being read."""

    label: str
    line: int
    broken: bool = False
    headers: list[bytes] = field(default_factory=list)
    body: list[bytes] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)


def _clean_lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Yield each line's number and text without line ending or trailing blanks."""
    for number, raw in enumerate(data.split(b"\n"), start=1):
        # A byte order mark also turns up mid-file when files are concatenated.
        yield number, raw.removeprefix(_BOM).rstrip(b" \t\r")


def parse_pem(data: bytes, name: str) -> ParsedInput:
    """Read every PEM block of a text file and report damage with line numbers."""
    parser = _PemParser(name)
    for number, line in _clean_lines(data):
        parser.feed(number, line)
    parser.finish()
    return parser.result


class _PemParser:
    """A line-at-a-time reader of PEM text; see `parse_pem`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.result = ParsedInput(name=name)
        self.block: _Block | None = None
        self.stray_base64: list[int] = []
        self.stray_text: list[int] = []

    def error(self, line: int | None, message: str) -> None:
        self.result.findings.append(
            Finding(Severity.ERROR, "unparsable", message, file=self.name, line=line)
        )

    def feed(self, number: int, line: bytes) -> None:
        if self.block is None:
            self.feed_outside(number, line)
        else:
            self.feed_inside(self.block, number, line)

    def feed_outside(self, number: int, line: bytes) -> None:
        begin = _BEGIN.match(line)
        if begin:
            self.flush_stray()
            self.start(number, begin.group(1).decode())
            return
        if _MARKER_LIKE.match(line):
            self.flush_stray()
            self.marker_outside(number, line)
            return
        if _STRAY_BASE64.match(line):
            self.stray_base64.append(number)
        elif line.strip() and not line.lstrip().startswith(b"#"):
            self.stray_text.append(number)
        else:
            self.flush_stray()

    def marker_outside(self, number: int, line: bytes) -> None:
        text = line.decode("ascii", "replace").strip()
        if b"BEGIN" in line:
            self.error(
                number,
                f"malformed BEGIN line {text!r}: OpenSSL expects exactly "
                "'-----BEGIN <TYPE>-----' at the start of a line, so it skips "
                "the block",
            )
            self.block = _Block(label="?", line=number, broken=True)
        else:
            self.error(number, f"END line {text!r} has no BEGIN line before it")

    def start(self, number: int, label: str) -> None:
        known = label in CERTIFICATE_LABELS | KEY_LABELS | OTHER_LABELS
        if not known:
            self.error(
                number,
                f"unknown PEM type {label!r}: OpenSSL skips this block "
                "(a certificate needs 'BEGIN CERTIFICATE')",
            )
        self.block = _Block(label=label, line=number, broken=not known)
        self.block.raw.append(f"-----BEGIN {label}-----".encode())

    def feed_inside(self, block: _Block, number: int, line: bytes) -> None:
        end = _END.match(line)
        if end:
            self.end(block, number, end.group(1).decode())
            return
        if _BEGIN.match(line):
            self.error(
                block.line,
                f"{block.label} block has no END line before the next BEGIN at line "
                f"{number}; the block is truncated",
            )
            self.block = None
            self.feed_outside(number, line)
            return
        if _MARKER_LIKE.match(line):
            text = line.decode("ascii", "replace").strip()
            if not block.broken:
                self.error(
                    number,
                    f"malformed END line {text!r}: OpenSSL expects "
                    f"'-----END {block.label}-----', so it skips the block",
                )
            self.block = None
            return
        self.body_line(block, number, line)

    def body_line(self, block: _Block, number: int, line: bytes) -> None:
        block.raw.append(line)
        if block.broken:
            return
        if not block.body and _HEADER_LINE.match(line):
            block.headers.append(line)
            return
        if not line:
            return
        if not _BASE64_LINE.match(line.strip()):
            self.error(
                number,
                f"invalid base64 in the {block.label} block that starts at line "
                f"{block.line}",
            )
            block.broken = True
            return
        block.body.append(line.strip())

    def end(self, block: _Block, number: int, label: str) -> None:
        self.block = None
        if label != block.label and not block.broken:
            self.error(
                number,
                f"END line says {label!r} but the BEGIN line {block.line} says "
                f"{block.label!r}",
            )
            return
        if block.broken:
            return
        block.raw.append(f"-----END {label}-----".encode())
        der = self.decode(block)
        if der is not None:
            self.add_block(block, der)

    def decode(self, block: _Block) -> bytes | None:
        body = b"".join(block.body)
        try:
            der = base64.b64decode(body, validate=True)
        except binascii.Error:
            self.error(
                block.line,
                f"{block.label} block: base64 is truncated or damaged "
                f"({len(body)} characters, which is not a whole number of groups of 4)",
            )
            return None
        if not der:
            self.error(block.line, f"{block.label} block is empty")
            return None
        return der

    def add_block(self, block: _Block, der: bytes) -> None:
        if block.label in CERTIFICATE_LABELS:
            add_certificate(self.result, der, line=block.line, label=block.label)
        elif block.label in KEY_LABELS:
            self.result.keys.append(
                KeyBlock(
                    label=block.label,
                    file=self.name,
                    line=block.line,
                    pem=b"\n".join(block.raw) + b"\n",
                )
            )
        else:
            self.result.others.append(
                OtherBlock(label=block.label, file=self.name, line=block.line)
            )

    def flush_stray(self) -> None:
        if self.stray_base64:
            first, count = self.stray_base64[0], len(self.stray_base64)
            self.error(
                first,
                f"{count} line(s) of base64 outside any PEM block, from line {first}: "
                "a certificate that lost its BEGIN line?",
            )
        if self.stray_text:
            first = self.stray_text[0]
            self.result.findings.append(
                Finding(
                    Severity.INFO,
                    "text-outside-blocks",
                    f"text outside PEM blocks from line {first}; OpenSSL ignores it",
                    file=self.name,
                    line=first,
                )
            )
        self.stray_base64 = []
        self.stray_text = []

    def finish(self) -> None:
        self.flush_stray()
        if self.block is not None and not self.block.broken:
            self.error(
                self.block.line,
                f"{self.block.label} block has no END line; the file ends inside it",
            )
        self.block = None


def add_certificate(
    result: ParsedInput, der: bytes, *, line: int | None, label: str
) -> None:
    """Parse one certificate's DER and add it to `result`, or add an error finding."""
    where = f"{label} block" if line is not None else "DER file"
    try:
        size = der_object_size(der)
    except ValueError as exc:
        result.findings.append(_unparsable(result.name, line, f"{where}: {exc}"))
        return
    if size > len(der):
        message = (
            f"{where} is truncated: its DER says {size} bytes but there are {len(der)}"
        )
        result.findings.append(_unparsable(result.name, line, message))
        return

    # TRUSTED CERTIFICATE appends OpenSSL's trust settings after the certificate.
    extra = len(der) - size
    # cryptography warns about a serial number that is not positive when it parses
    # the certificate, each time the serial is read, and when it parses extensions
    # that carry one. The extensions are parsed here once, and cached, so that the
    # warnings are recorded as notes instead of escaping later.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            certificate = x509.load_der_x509_certificate(der[:size])
            serial = certificate.serial_number
            _ = certificate.extensions
        except ValueError as exc:
            message = f"{where} does not parse as a certificate: {exc}"
            result.findings.append(_unparsable(result.name, line, message))
            return
    notes = tuple(str(w.message) for w in caught)
    entry = CertificateEntry(
        certificate=certificate,
        file=result.name,
        line=line,
        index=len(result.certificates) + 1,
        serial=serial,
        parse_notes=notes,
    )
    result.certificates.append(entry)
    if extra and label != "TRUSTED CERTIFICATE":
        result.findings.append(
            entry.finding(
                Severity.WARNING,
                "trailing-data",
                f"{extra} byte(s) after the certificate's DER; OpenSSL ignores them",
            )
        )


def _unparsable(name: str, line: int | None, message: str) -> Finding:
    return Finding(Severity.ERROR, "unparsable", message, file=name, line=line)


def parse_der(data: bytes, name: str) -> ParsedInput:
    """Read a binary file: one DER certificate, or else one DER private key."""
    result = ParsedInput(name=name)
    add_certificate(result, data, line=None, label="DER")
    if result.certificates:
        return result

    from cryptography.hazmat.primitives.serialization import load_der_private_key

    try:
        load_der_private_key(data, password=None)
    except TypeError:
        pass  # an encrypted key: still a key, checked later
    except ValueError:
        result.findings[:] = [
            _unparsable(
                name,
                None,
                "DER file that is neither a certificate nor a private key (for "
                "PKCS#12, extract the certificates with `openssl pkcs12 -nokeys`)",
            )
        ]
        return result
    result.findings.clear()
    result.keys.append(
        KeyBlock(label="DER PRIVATE KEY", file=name, line=None, der=data)
    )
    return result


def _has_marker_line(data: bytes) -> bool:
    return re.search(_MARKER_PATTERN, data, re.MULTILINE) is not None


def parse_bytes(data: bytes, name: str) -> ParsedInput:
    """Read PEM text or a DER file; the caller handles wheels and directories."""
    start = data.removeprefix(_BOM).lstrip()
    if not start:
        result = ParsedInput(name=name)
        result.findings.append(
            Finding(Severity.ERROR, "no-certificates", "the file is empty", file=name)
        )
        return result
    if _has_marker_line(data):
        return parse_pem(data, name)
    # Every DER certificate or key starts with a SEQUENCE tag, 0x30.
    if start[:1] == b"\x30":
        return parse_der(data, name)
    result = ParsedInput(name=name)
    message = "neither PEM text (no -----BEGIN line) nor a DER certificate"
    result.findings.append(_unparsable(name, None, message))
    return result
