"""The lab's scenarios: what each endpoint serves and what a client should conclude.

`expect` is the verdict of a client that follows the current rules. Such a client
matches hostnames per RFC 6125 with no common-name fallback, as urllib3 2.x and
browsers do. It applies the RFC 5280 checks of OpenSSL's strict mode, which Python 3.13
turns on by default. It uses security level 2 and TLS 1.2 or later. `lenient` is the
verdict of OpenSSL's default verification (`openssl s_client`, the stdlib before
Python 3.13) where it differs.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtendedKeyUsageOID,
    ObjectIdentifier,
)

from comparer.lab import pki
from comparer.lab.pki import Authority, PrivateKey
from comparer.model import Reason

Trust = Literal["ca-file", "system-env"]
Behaviour = Literal[
    "https",
    "silent",
    "random-bytes",
    "plain-http",
    "reset",
    "close-after-hello",
    "trickle",
]

DAY = datetime.timedelta(days=1)
HOUR = datetime.timedelta(hours=1)

# A UUID-based OID (arc 2.25), which anyone may mint without registration, so no
# verifier recognizes it.
UNKNOWN_EXTENSION_OID = ObjectIdentifier("2.25.306760360735117576132561433114252723457")

# OpenSSL clients reject a Certificate message over 100 KiB by default
# (SSL_MAX_CERT_LIST_DEFAULT in OpenSSL 3.0), so the oversized leaf is larger.
OVERSIZED_TARGET_BYTES = 120 * 1024
# The long chain sends 100 certificates: the leaf and 99 intermediates. OpenSSL's
# default verify depth of 100 admits up to 100 intermediates (measured on 3.0.19), so
# OpenSSL clients accept it and only a client with a lower limit rejects it.
LONG_CHAIN_INTERMEDIATES = 99


@dataclass(frozen=True)
class Scenario:
    """One running lab endpoint and the verdict a client should reach on it.

    `served_chain` is the DER of each certificate the server sends, leaf first, and
    is empty for endpoints that send no certificate. `lenient` is None when OpenSSL's
    default verification agrees with `expect`.
    """

    name: str
    description: str
    host: str
    port: int
    expect: Reason
    trust: Trust = "ca-file"
    hostile: bool = False
    served_chain: tuple[bytes, ...] = ()
    lenient: Reason | None = None

    @property
    def target(self) -> str:
        """The `host:port` to give `comparer check`."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The https URL of the endpoint."""
        return f"https://{self.target}/"

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form printed by `comparer lab --json`."""
        return {
            "name": self.name,
            "description": self.description,
            "host": self.host,
            "port": self.port,
            "target": self.target,
            "url": self.url,
            "expect": self.expect.value,
            "lenient": self.lenient.value if self.lenient else None,
            "trust": self.trust,
            "hostile": self.hostile,
            "served_chain_sha256": [
                hashlib.sha256(der).hexdigest() for der in self.served_chain
            ],
        }


@dataclass(frozen=True)
class Endpoint:
    """The behaviour of one server and, for TLS, the chain and key it serves.

    `weak` lowers the server's security level to 0, which OpenSSL needs to load an
    RSA-1024 key or a SHA-1 signed chain and to offer TLS 1.0. `legacy_tls` limits
    the server to TLS 1.0 and 1.1. `client_ca`, when set, makes the server require a
    client certificate issued by it, and `client_identity` is one such certificate
    with its key.
    """

    chain: tuple[x509.Certificate, ...] = ()
    key: PrivateKey | None = None
    behaviour: Behaviour = "https"
    weak: bool = False
    legacy_tls: bool = False
    client_ca: x509.Certificate | None = None
    client_identity: tuple[x509.Certificate, PrivateKey] | None = None


@dataclass
class Pki:
    """The CA hierarchies that one Lab generates at start, shared by its scenarios."""

    now: datetime.datetime
    workdir: Path
    tag: str
    root: Authority
    intermediate: Authority
    expiring_root: Authority
    expired_root: Authority
    untrusted_root: Authority
    internal_root: Authority

    @property
    def trusted_roots(self) -> tuple[Authority, ...]:
        """The roots that go into `Lab.ca_bundle`."""
        return (self.root, self.expiring_root, self.expired_root)

    def label(self, text: str) -> str:
        """Return a CA name with this Lab's random tag, so labs rarely share names."""
        return f"comparer lab {text} {self.tag}"

    def valid_leaf(
        self,
        issuer: Authority | None = None,
        key: PrivateKey | None = None,
        **options: Any,
    ) -> x509.Certificate:
        """Issue a leaf for localhost valid from an hour ago for 90 days."""
        options.setdefault("not_before", self.now - HOUR)
        options.setdefault("not_after", self.now + 90 * DAY)
        return pki.make_leaf(
            issuer or self.intermediate, key or pki.new_ec_key(), **options
        )


def make_pki(workdir: Path, now: datetime.datetime | None = None) -> Pki:
    """Generate the shared roots and intermediate with fresh keys."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    tag = secrets.token_hex(3)

    def root(text: str, not_before: datetime.datetime, days: float) -> Authority:
        return pki.make_root(
            f"comparer lab {text} {tag}",
            not_before=not_before,
            not_after=now + days * DAY,
        )

    main_root = root("root", now - DAY, 3650)
    return Pki(
        now=now,
        workdir=workdir,
        tag=tag,
        root=main_root,
        intermediate=pki.make_intermediate(
            f"comparer lab intermediate {tag}",
            main_root,
            not_before=now - DAY,
            not_after=now + 1825 * DAY,
        ),
        expiring_root=root("expiring root", now - 3650 * DAY, 20),
        expired_root=root("expired root", now - 3650 * DAY, -1),
        untrusted_root=root("untrusted root", now - DAY, 3650),
        internal_root=root("internal root", now - DAY, 3650),
    )


def _with_key(
    leaf: Callable[[PrivateKey], x509.Certificate],
    *intermediates: Authority,
    key: PrivateKey | None = None,
    **endpoint: Any,
) -> Endpoint:
    key = key or pki.new_ec_key()
    chain = (leaf(key), *(i.certificate for i in intermediates))
    return Endpoint(chain=chain, key=key, **endpoint)


def _good(p: Pki) -> Endpoint:
    return _with_key(lambda k: p.valid_leaf(key=k, unit="good"), p.intermediate)


def _expired_leaf(p: Pki) -> Endpoint:
    return _with_key(
        lambda k: p.valid_leaf(
            key=k,
            unit="expired-leaf",
            not_before=p.now - 90 * DAY,
            not_after=p.now - DAY,
        ),
        p.intermediate,
    )


def _not_yet_valid_leaf(p: Pki) -> Endpoint:
    return _with_key(
        lambda k: p.valid_leaf(
            key=k,
            unit="not-yet-valid-leaf",
            not_before=p.now + 30 * DAY,
            not_after=p.now + 120 * DAY,
        ),
        p.intermediate,
    )


def _expired_intermediate(p: Pki) -> Endpoint:
    expired = pki.make_intermediate(
        p.label("expired intermediate"),
        p.root,
        not_before=p.now - 730 * DAY,
        not_after=p.now - DAY,
    )
    return _with_key(
        lambda k: p.valid_leaf(expired, k, unit="expired-intermediate"), expired
    )


def _self_signed_leaf(p: Pki) -> Endpoint:
    key = pki.new_ec_key()
    leaf = pki.make_self_signed_leaf(
        key, not_before=p.now - HOUR, not_after=p.now + 90 * DAY, unit="self-signed"
    )
    return Endpoint(chain=(leaf,), key=key)


def _untrusted_root(p: Pki) -> Endpoint:
    intermediate = pki.make_intermediate(
        p.label("untrusted intermediate"),
        p.untrusted_root,
        not_before=p.now - DAY,
        not_after=p.now + 1825 * DAY,
    )
    return _with_key(
        lambda k: p.valid_leaf(intermediate, k, unit="untrusted-root"), intermediate
    )


def _hostname_mismatch(p: Pki) -> Endpoint:
    return _with_key(
        lambda k: p.valid_leaf(
            key=k,
            common_name="wrong.invalid",
            unit="hostname-mismatch",
            sans=[x509.DNSName("wrong.invalid")],
        ),
        p.intermediate,
    )


def _missing_intermediate(p: Pki) -> Endpoint:
    return _with_key(lambda k: p.valid_leaf(key=k, unit="missing-intermediate"))


def _wrong_order(p: Pki) -> Endpoint:
    upper = pki.make_intermediate(
        p.label("upper intermediate"),
        p.root,
        not_before=p.now - DAY,
        not_after=p.now + 1825 * DAY,
    )
    lower = pki.make_intermediate(
        p.label("lower intermediate"),
        upper,
        not_before=p.now - DAY,
        not_after=p.now + 1825 * DAY,
    )
    # The correct order is leaf, lower, upper, but the server sends upper first.
    return _with_key(lambda k: p.valid_leaf(lower, k, unit="wrong-order"), upper, lower)


def _cn_only(p: Pki) -> Endpoint:
    return _with_key(
        lambda k: p.valid_leaf(key=k, unit="cn-only", sans=None), p.intermediate
    )


def _no_aki(p: Pki) -> Endpoint:
    return _with_key(
        lambda k: p.valid_leaf(key=k, unit="no-aki", with_aki=False), p.intermediate
    )


def _rsa_1024_leaf(p: Pki) -> Endpoint:
    return _with_key(
        lambda k: p.valid_leaf(key=k, unit="rsa-1024-leaf"),
        p.intermediate,
        key=pki.new_rsa_key(1024),
        weak=True,
    )


def _sha1_intermediate(p: Pki) -> Endpoint:
    intermediate = pki.make_sha1_intermediate(
        p.label("sha1 intermediate"), p.root, days=1825, workdir=p.workdir
    )
    # `openssl x509 -req` in OpenSSL 3.0 starts validity now, so the leaf does too.
    return _with_key(
        lambda k: p.valid_leaf(
            intermediate, k, unit="sha1-intermediate", not_before=p.now
        ),
        intermediate,
        weak=True,
    )


def _tls1_only(p: Pki) -> Endpoint:
    return _with_key(
        lambda k: p.valid_leaf(key=k, unit="tls1-only"),
        p.intermediate,
        weak=True,
        legacy_tls=True,
    )


def _internal_root(p: Pki) -> Endpoint:
    intermediate = pki.make_intermediate(
        p.label("internal intermediate"),
        p.internal_root,
        not_before=p.now - DAY,
        not_after=p.now + 1825 * DAY,
    )
    return _with_key(
        lambda k: p.valid_leaf(intermediate, k, unit="internal-root"), intermediate
    )


def _root_expires_soon(p: Pki) -> Endpoint:
    end = p.expiring_root.certificate.not_valid_after_utc
    intermediate = pki.make_intermediate(
        p.label("expiring intermediate"),
        p.expiring_root,
        not_before=p.now - DAY,
        not_after=end,
    )
    return _with_key(
        lambda k: p.valid_leaf(
            intermediate, k, unit="root-expires-soon", not_after=end
        ),
        intermediate,
    )


def _expired_root(p: Pki) -> Endpoint:
    intermediate = pki.make_intermediate(
        p.label("intermediate under expired root"),
        p.expired_root,
        not_before=p.now - DAY,
        not_after=p.now + 1825 * DAY,
    )
    return _with_key(
        lambda k: p.valid_leaf(intermediate, k, unit="expired-root"), intermediate
    )


def _ip_san_only(p: Pki) -> Endpoint:
    sans = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    return _with_key(
        lambda k: p.valid_leaf(
            key=k, common_name="127.0.0.1", unit="ip-san-only", sans=sans
        ),
        p.intermediate,
    )


def _ip_in_dns_san(p: Pki) -> Endpoint:
    return _with_key(
        lambda k: p.valid_leaf(
            key=k,
            common_name="127.0.0.1",
            unit="ip-in-dns-san",
            sans=[x509.DNSName("127.0.0.1")],
        ),
        p.intermediate,
    )


def _wildcard_apex(p: Pki) -> Endpoint:
    return _with_key(
        lambda k: p.valid_leaf(
            key=k,
            common_name="*.localhost",
            unit="wildcard-apex",
            sans=[x509.DNSName("*.localhost")],
        ),
        p.intermediate,
    )


def _ca_bc_not_critical(p: Pki) -> Endpoint:
    intermediate = pki.make_intermediate(
        p.label("non-critical intermediate"),
        p.root,
        not_before=p.now - DAY,
        not_after=p.now + 1825 * DAY,
        bc_critical=False,
    )
    return _with_key(
        lambda k: p.valid_leaf(intermediate, k, unit="ca-bc-not-critical"),
        intermediate,
    )


def _client_auth_eku(p: Pki) -> Endpoint:
    return _with_key(
        lambda k: p.valid_leaf(
            key=k,
            unit="client-auth-eku",
            extended_key_usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
        ),
        p.intermediate,
    )


def _unknown_critical_extension(p: Pki) -> Endpoint:
    extension = x509.UnrecognizedExtension(UNKNOWN_EXTENSION_OID, b"\x05\x00")
    return _with_key(
        lambda k: p.valid_leaf(
            key=k, unit="unknown-critical-extension", extra=[(extension, True)]
        ),
        p.intermediate,
    )


def _name_constraints(p: Pki) -> Endpoint:
    constraints = x509.NameConstraints(
        permitted_subtrees=[x509.DNSName("example.com")], excluded_subtrees=None
    )
    intermediate = pki.make_intermediate(
        p.label("constrained intermediate"),
        p.root,
        not_before=p.now - DAY,
        not_after=p.now + 1825 * DAY,
        name_constraints=constraints,
    )
    return _with_key(
        lambda k: p.valid_leaf(intermediate, k, unit="name-constraints"), intermediate
    )


def _root_included(p: Pki) -> Endpoint:
    return _with_key(
        lambda k: p.valid_leaf(key=k, unit="root-included"), p.intermediate, p.root
    )


def _extra_certificates(p: Pki) -> Endpoint:
    endpoint = _with_key(
        lambda k: p.valid_leaf(key=k, unit="extra-certificates"), p.intermediate
    )
    # The intermediate again, then a CA certificate of an unrelated hierarchy.
    extra = (p.intermediate.certificate, p.untrusted_root.certificate)
    return Endpoint(chain=(*endpoint.chain, *extra), key=endpoint.key)


def _cross_certificate(
    subject: Authority, issuer: Authority, p: Pki
) -> x509.Certificate:
    """Certify `subject`'s name and key under `issuer`, valid until yesterday, as
    DST Root CA X3 certified ISRG Root X1 until that cross-certificate expired."""
    ski = subject.certificate.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier
    ).value
    issuer_ski = issuer.certificate.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier
    ).value
    extensions = subject.certificate.extensions
    usage = extensions.get_extension_for_class(x509.KeyUsage).value
    return (
        x509.CertificateBuilder()
        .subject_name(subject.name)
        .issuer_name(issuer.name)
        .public_key(subject.certificate.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(p.now - 3650 * DAY)
        .not_valid_after(p.now - DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski),
            critical=False,
        )
        .sign(issuer.key, hashes.SHA256())
    )


def _expired_cross_root(p: Pki) -> Endpoint:
    cross = _cross_certificate(p.root, p.expired_root, p)
    endpoint = _with_key(
        lambda k: p.valid_leaf(key=k, unit="expired-cross-root"), p.intermediate
    )
    return Endpoint(chain=(*endpoint.chain, cross), key=endpoint.key)


# Never fetched by anything in comparer; a loopback URL so that a client which does
# fetch AIA URLs reaches no other host.
AIA_CA_ISSUERS_URL = "http://127.0.0.1:9/comparer-lab-intermediate.der"


def _missing_intermediate_aia(p: Pki) -> Endpoint:
    access = x509.AuthorityInformationAccess(
        [
            x509.AccessDescription(
                AuthorityInformationAccessOID.CA_ISSUERS,
                x509.UniformResourceIdentifier(AIA_CA_ISSUERS_URL),
            )
        ]
    )
    return _with_key(
        lambda k: p.valid_leaf(
            key=k, unit="missing-intermediate-aia", extra=[(access, False)]
        )
    )


def _hostile(behaviour: Behaviour) -> Callable[[Pki], Endpoint]:
    def build(p: Pki) -> Endpoint:
        return Endpoint(behaviour=behaviour)

    return build


def _trickle(p: Pki) -> Endpoint:
    # A real handshake flight, so the bytes that arrive are valid TLS, only slow.
    return _with_key(
        lambda k: p.valid_leaf(key=k, unit="trickle"),
        p.intermediate,
        behaviour="trickle",
    )


def _long_chain(p: Pki) -> Endpoint:
    issuer = p.root
    intermediates: list[Authority] = []
    for index in range(LONG_CHAIN_INTERMEDIATES):
        issuer = pki.make_intermediate(
            p.label(f"chain link {index + 1}"),
            issuer,
            not_before=p.now - DAY,
            not_after=p.now + 1825 * DAY,
        )
        intermediates.append(issuer)
    return _with_key(
        lambda k: p.valid_leaf(issuer, k, unit="long-chain"),
        *reversed(intermediates),
    )


def _oversized_sans(target_bytes: int) -> list[x509.GeneralName]:
    sans: list[x509.GeneralName] = list(pki.LOCALHOST_SANS)
    size = 0
    index = 0
    while size < target_bytes:
        name = f"name-{index:05d}.oversized.invalid"
        sans.append(x509.DNSName(name))
        size += len(name) + 2  # DER tag and length of each dNSName
        index += 1
    return sans


def _oversized_certificate(p: Pki) -> Endpoint:
    return _with_key(
        lambda k: p.valid_leaf(
            key=k,
            unit="oversized-certificate",
            sans=_oversized_sans(OVERSIZED_TARGET_BYTES),
        ),
        p.intermediate,
        key=pki.new_rsa_key(8192),
    )


def _client_certificate(p: Pki) -> Endpoint:
    client_root = pki.make_root(
        p.label("client root"), not_before=p.now - DAY, not_after=p.now + 3650 * DAY
    )
    client_key = pki.new_ec_key()
    client_leaf = pki.make_leaf(
        client_root,
        client_key,
        not_before=p.now - HOUR,
        not_after=p.now + 90 * DAY,
        common_name="comparer lab client",
        sans=None,
        extended_key_usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    return _with_key(
        lambda k: p.valid_leaf(key=k, unit="client-certificate"),
        p.intermediate,
        client_ca=client_root.certificate,
        client_identity=(client_leaf, client_key),
    )


@dataclass(frozen=True)
class Entry:
    """One catalogue line: the scenario's fixed facts and how to build its endpoint."""

    name: str
    description: str
    expect: Reason
    build: Callable[[Pki], Endpoint] = field(repr=False)
    lenient: Reason | None = None
    trust: Trust = "ca-file"
    hostile: bool = False
    host: str = "localhost"


CATALOGUE: tuple[Entry, ...] = (
    Entry(
        "good",
        "root, intermediate and leaf for localhost, 127.0.0.1 and ::1",
        Reason.OK,
        _good,
    ),
    Entry(
        "expired-leaf",
        "the leaf's notAfter was yesterday",
        Reason.EXPIRED,
        _expired_leaf,
    ),
    Entry(
        "not-yet-valid-leaf",
        "the leaf's notBefore is 30 days from now",
        Reason.NOT_YET_VALID,
        _not_yet_valid_leaf,
    ),
    Entry(
        "expired-intermediate",
        "a valid leaf under an intermediate that expired yesterday",
        Reason.EXPIRED,
        _expired_intermediate,
    ),
    Entry(
        "self-signed-leaf",
        "a self-signed leaf for localhost that no bundle contains",
        Reason.SELF_SIGNED,
        _self_signed_leaf,
    ),
    Entry(
        "untrusted-root",
        "a well-formed chain to a root that is not in the CA bundle",
        Reason.UNKNOWN_ISSUER,
        _untrusted_root,
    ),
    Entry(
        "hostname-mismatch",
        "the leaf is for wrong.invalid only",
        Reason.HOSTNAME_MISMATCH,
        _hostname_mismatch,
    ),
    Entry(
        "missing-intermediate",
        "the server sends the leaf without its intermediate",
        Reason.UNKNOWN_ISSUER,
        _missing_intermediate,
    ),
    Entry(
        "wrong-order",
        "two intermediates, sent upper first instead of leaf, lower, upper",
        Reason.OK,
        _wrong_order,
    ),
    Entry(
        "cn-only",
        "subject CN=localhost and no subjectAltName extension",
        Reason.HOSTNAME_MISMATCH,
        _cn_only,
        lenient=Reason.OK,
    ),
    Entry(
        "no-aki",
        "the leaf has no Authority Key Identifier, RFC 5280 requires one",
        Reason.INVALID_CERTIFICATE,
        _no_aki,
        lenient=Reason.OK,
    ),
    Entry(
        "rsa-1024-leaf",
        "the leaf key is RSA with 1024 bits",
        Reason.WEAK_CRYPTO,
        _rsa_1024_leaf,
    ),
    Entry(
        "sha1-intermediate",
        "the root signed the intermediate with SHA-1",
        Reason.WEAK_CRYPTO,
        _sha1_intermediate,
    ),
    Entry(
        "tls1-only",
        "a good chain on a server that offers only TLS 1.0 and 1.1",
        Reason.PROTOCOL,
        _tls1_only,
    ),
    Entry(
        "internal-root",
        "a chain to an internal root that only SSL_CERT_FILE adds",
        Reason.OK,
        _internal_root,
        trust="system-env",
    ),
    Entry(
        "root-expires-soon",
        "a trusted root whose notAfter is 20 days from now",
        Reason.OK,
        _root_expires_soon,
    ),
    Entry(
        "expired-root",
        "a chain to a root in the CA bundle that expired yesterday",
        Reason.EXPIRED,
        _expired_root,
    ),
    Entry(
        "ip-san-only",
        "SAN with IP addresses only, probed as 127.0.0.1",
        Reason.OK,
        _ip_san_only,
        host="127.0.0.1",
    ),
    Entry(
        "ip-in-dns-san",
        "127.0.0.1 written as a DNS name in the SAN, probed as 127.0.0.1",
        Reason.HOSTNAME_MISMATCH,
        _ip_in_dns_san,
        host="127.0.0.1",
    ),
    Entry(
        "wildcard-apex",
        "SAN *.localhost only, which does not cover localhost itself",
        Reason.HOSTNAME_MISMATCH,
        _wildcard_apex,
    ),
    Entry(
        "ca-bc-not-critical",
        "the intermediate's basicConstraints is not marked critical",
        Reason.INVALID_CERTIFICATE,
        _ca_bc_not_critical,
        lenient=Reason.OK,
    ),
    Entry(
        "client-auth-eku",
        "the leaf's extendedKeyUsage is clientAuth only",
        Reason.INVALID_CERTIFICATE,
        _client_auth_eku,
    ),
    Entry(
        "unknown-critical-extension",
        "the leaf has a critical extension that no verifier knows",
        Reason.INVALID_CERTIFICATE,
        _unknown_critical_extension,
    ),
    Entry(
        "name-constraints",
        "the intermediate may only issue for example.com",
        Reason.INVALID_CERTIFICATE,
        _name_constraints,
    ),
    Entry(
        "root-included",
        "a good chain that also sends the root",
        Reason.OK,
        _root_included,
    ),
    Entry(
        "extra-certificates",
        "sends the intermediate twice and a CA certificate of another hierarchy",
        Reason.OK,
        _extra_certificates,
    ),
    Entry(
        "expired-cross-root",
        "also sends a cross-certificate of the root that expired yesterday",
        Reason.OK,
        _expired_cross_root,
    ),
    Entry(
        "missing-intermediate-aia",
        "sends the leaf alone; the leaf names its issuer's URL in AIA",
        Reason.UNKNOWN_ISSUER,
        _missing_intermediate_aia,
    ),
    Entry(
        "silent",
        "accepts the connection and never sends a byte",
        Reason.TIMEOUT,
        _hostile("silent"),
        hostile=True,
    ),
    Entry(
        "random-bytes",
        "answers the ClientHello with 4 KiB of random bytes",
        Reason.PROTOCOL,
        _hostile("random-bytes"),
        hostile=True,
    ),
    Entry(
        "plain-http",
        "a plain HTTP/1.1 server on the port",
        Reason.PROTOCOL,
        _hostile("plain-http"),
        hostile=True,
    ),
    Entry(
        "reset",
        "resets every connection as soon as it is accepted",
        Reason.CONNECT,
        _hostile("reset"),
        hostile=True,
    ),
    Entry(
        "close-after-hello",
        "reads the ClientHello, then closes the connection",
        Reason.PROTOCOL,
        _hostile("close-after-hello"),
        hostile=True,
    ),
    Entry(
        "trickle",
        "sends a real handshake one byte every half second",
        Reason.TIMEOUT,
        _trickle,
        hostile=True,
    ),
    Entry(
        "long-chain",
        "sends 100 certificates: the leaf and 99 intermediates to the root",
        Reason.OK,
        _long_chain,
        hostile=True,
    ),
    Entry(
        "oversized-certificate",
        "an RSA-8192 leaf with a SAN list over 100 KiB",
        Reason.PROTOCOL,
        _oversized_certificate,
        hostile=True,
    ),
    Entry(
        "client-certificate",
        "a good chain, but the server requires a client certificate",
        Reason.CLIENT_CERTIFICATE,
        _client_certificate,
        hostile=True,
    ),
)


def find_entry(name: str) -> Entry:
    """Return the catalogue entry called `name`, or raise KeyError naming it."""
    for entry in CATALOGUE:
        if entry.name == name:
            return entry
    raise KeyError(f"unknown lab scenario {name!r}; choose from {', '.join(names())}")


def names(*, hostile: bool = True) -> list[str]:
    """Return scenario names in catalogue order, hostile ones only if `hostile`."""
    return [e.name for e in CATALOGUE if hostile or not e.hostile]
