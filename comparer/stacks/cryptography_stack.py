"""What-if: pyca/cryptography's RFC 5280 verifier on the chain the server sends.

cryptography does no TLS, so the chain comes from `openssl s_client -showcerts` and
the verifier judges it against the store the settings give: --ca-file, else the CA
file that OpenSSL's defaults name (SSL_CERT_FILE when set).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import time
from collections.abc import Sequence
from dataclasses import dataclass

import cryptography
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from comparer.bundle_model import CertificateEntry
from comparer.chain import fetch_served_chain, read_trust_anchors
from comparer.model import ProbeResult, Reason, StackInfo, Target, TrustSource
from comparer.stacks.base import ProbeSettings, elapsed_ms

# cryptography's VerificationError has no error codes, only text, so its verdicts
# are mapped from message fragments (checked against cryptography 50). A message
# that matches none of them is an invalid certificate.
_MESSAGE_REASONS: tuple[tuple[str, Reason], ...] = (
    ("no matching subjectAltName", Reason.HOSTNAME_MISMATCH),
    ("has no subjectAltName", Reason.HOSTNAME_MISMATCH),
    ("Forbidden signature algorithm", Reason.WEAK_CRYPTO),
    ("no interior errors", Reason.UNKNOWN_ISSUER),
)
_VALIDITY_MESSAGE = "not valid at validation time"


@dataclass(frozen=True)
class Verdict:
    """The verifier's conclusion: the reason and its message ("" when verified)."""

    reason: Reason
    detail: str = ""


def verification_name(target: Target) -> x509.DNSName | x509.IPAddress:
    """Return the name the leaf must match: an IP address or a DNS name."""
    if target.is_ip:
        return x509.IPAddress(ipaddress.ip_address(target.host))
    return x509.DNSName(target.host)


def _validity_reason(
    chain: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    at: dt.datetime,
) -> Reason:
    # The message does not say which bound failed, so the dates decide; the leaf
    # is looked at first because it fails first.
    issuers = {c.issuer for c in chain}
    related = [*chain, *(a for a in anchors if a.subject in issuers)]
    for certificate in related:
        if certificate.not_valid_after_utc < at:
            return Reason.EXPIRED
        if certificate.not_valid_before_utc > at:
            return Reason.NOT_YET_VALID
    return Reason.EXPIRED


def verify_with_cryptography(
    chain: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    target: Target,
    *,
    at: dt.datetime | None = None,
) -> Verdict:
    """Verify a served chain (leaf first) for the target with cryptography's verifier.

    `at` is the validation time, now when None.
    """
    if not chain:
        return Verdict(Reason.ERROR, "the server sent no certificate")
    if not anchors:
        return Verdict(Reason.UNKNOWN_ISSUER, "the trust store has no certificates")
    moment = at or dt.datetime.now(dt.timezone.utc)
    try:
        verifier = (
            PolicyBuilder()
            .store(Store(list(anchors)))
            .time(moment)
            .build_server_verifier(verification_name(target))
        )
        verifier.verify(chain[0], list(chain[1:]))
    except VerificationError as exc:
        message = str(exc)
        if _VALIDITY_MESSAGE in message:
            return Verdict(_validity_reason(chain, anchors, moment), message)
        for fragment, reason in _MESSAGE_REASONS:
            if fragment in message:
                return Verdict(reason, message)
        return Verdict(Reason.INVALID_CERTIFICATE, message)
    except ValueError as exc:
        # An IDN host that is not an A-label, or a store that cannot be built.
        return Verdict(Reason.ERROR, f"cannot verify with cryptography: {exc}")
    return Verdict(Reason.OK)


def certificates_of(entries: Sequence[CertificateEntry]) -> list[x509.Certificate]:
    """Return the certificates of parsed entries, in order."""
    return [entry.certificate for entry in entries]


class CryptographyStack:
    """cryptography's X.509 verifier, fed the served chain and the settings' store."""

    name = "cryptography"

    def trust_source(self, settings: ProbeSettings) -> TrustSource | None:
        """Return the trust this stack uses under the given settings."""
        anchors = read_trust_anchors(self.name, settings)
        return anchors.source if anchors is not None else None

    def info(self, settings: ProbeSettings) -> StackInfo:
        """Describe cryptography and where its chain comes from."""
        source = self.trust_source(settings)
        return StackInfo(
            name=self.name,
            version=f"{cryptography.__version__} (RFC 5280 verifier; chain read with "
            "openssl s_client)",
            trust=source.describe() if source is not None else None,
            facts={"what_if": "pyca/cryptography X.509 verification"},
        )

    async def probe(self, target: Target, settings: ProbeSettings) -> ProbeResult:
        """Read the served chain, then verify it offline against the store."""
        start = time.perf_counter()
        anchors = read_trust_anchors(self.name, settings)
        source = anchors.source.describe() if anchors is not None else None
        served = await fetch_served_chain(target, timeout=settings.timeout)
        if served.error is not None:
            return ProbeResult(
                stack=self.name,
                ok=False,
                reason=served.reason or Reason.ERROR,
                detail=f"could not read the served chain: {served.error}",
                elapsed_ms=elapsed_ms(start),
                trust=source,
                address=target.address,
            )
        if anchors is None or anchors.store is None:
            error = anchors.error if anchors is not None else "no trust store"
            return ProbeResult(
                stack=self.name,
                ok=False,
                reason=Reason.ERROR,
                detail=f"cannot read the trust store: {error}",
                elapsed_ms=elapsed_ms(start),
                trust=source,
                address=target.address,
            )
        verdict = await asyncio.to_thread(
            verify_with_cryptography,
            certificates_of(served.certificates),
            anchors.certificates(),
            target,
        )
        return ProbeResult(
            stack=self.name,
            ok=verdict.reason is Reason.OK,
            reason=verdict.reason,
            detail=verdict.detail,
            elapsed_ms=elapsed_ms(start),
            trust=source,
            address=target.address,
        )
