"""The chain a server sends, and the path each stack's trust store completes from it.

The served chain is read with `openssl s_client -showcerts`. That read is a
diagnostic: it does not stop at a verify error, so the chain is read even when
verification fails, and no stack's verdict comes from it. Paths are built the way
OpenSSL 1.1.0 and later build them: at each step a certificate in the trust store
is tried before the certificates the server sent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import os
import shutil
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import SignatureAlgorithmOID

from comparer import trust
from comparer.bundle_checks import format_date, is_issued_by, is_self_signed
from comparer.bundle_model import CertificateEntry
from comparer.bundle_parse import parse_pem
from comparer.bundle_server import TrustStore
from comparer.bundle_sources import load_file
from comparer.errors import UsageError
from comparer.model import Reason, Target, TrustSource
from comparer.stacks.base import ProbeSettings
from comparer.stacks.openssl_cli import classify_output, openssl_version

# OpenSSL's default verify depth: a path longer than this fails in every OpenSSL.
MAX_PATH_LENGTH = 100
# s_client prints every certificate as PEM; a chain of 100 large ones stays below this.
OUTPUT_LIMIT = 4 << 20
# Stacks that load OpenSSL's default CA file and CA directory, not one file only.
DEFAULT_PATH_STACKS = frozenset({"openssl", "stdlib", "stdlib-strict", "aiohttp"})

_SIGNATURE_NAMES = {
    SignatureAlgorithmOID.RSA_WITH_MD5: "md5WithRSAEncryption",
    SignatureAlgorithmOID.RSA_WITH_SHA1: "sha1WithRSAEncryption",
    SignatureAlgorithmOID.RSA_WITH_SHA224: "sha224WithRSAEncryption",
    SignatureAlgorithmOID.RSA_WITH_SHA256: "sha256WithRSAEncryption",
    SignatureAlgorithmOID.RSA_WITH_SHA384: "sha384WithRSAEncryption",
    SignatureAlgorithmOID.RSA_WITH_SHA512: "sha512WithRSAEncryption",
    SignatureAlgorithmOID.RSASSA_PSS: "rsassaPss",
    SignatureAlgorithmOID.ECDSA_WITH_SHA1: "ecdsa-with-SHA1",
    SignatureAlgorithmOID.ECDSA_WITH_SHA224: "ecdsa-with-SHA224",
    SignatureAlgorithmOID.ECDSA_WITH_SHA256: "ecdsa-with-SHA256",
    SignatureAlgorithmOID.ECDSA_WITH_SHA384: "ecdsa-with-SHA384",
    SignatureAlgorithmOID.ECDSA_WITH_SHA512: "ecdsa-with-SHA512",
    SignatureAlgorithmOID.DSA_WITH_SHA1: "dsaWithSHA1",
    SignatureAlgorithmOID.DSA_WITH_SHA256: "dsa_with_SHA256",
    SignatureAlgorithmOID.ED25519: "ED25519",
    SignatureAlgorithmOID.ED448: "ED448",
}


@dataclass(frozen=True)
class ServedChain:
    """The certificates a server sent, leaf first, or why they could not be read.

    `error` and `reason` are None when the chain was read.
    """

    certificates: tuple[CertificateEntry, ...] = ()
    error: str | None = None
    reason: Reason | None = None

    @property
    def leaf(self) -> CertificateEntry | None:
        """The first certificate, which the server's key belongs to."""
        return self.certificates[0] if self.certificates else None


def s_client_connect_args(target: Target) -> list[str]:
    """Return s_client's -connect and SNI options for the target."""
    host = target.connect_host
    connect = f"[{host}]" if ":" in host else host
    argv = ["-connect", f"{connect}:{target.connect_port}"]
    server_name = target.server_name
    if server_name is None:
        argv += ["-noservername"]
    else:
        argv += ["-servername", server_name]
    return argv


def s_client_chain_argv(binary: str, target: Target) -> list[str]:
    """Return the argument list that prints the served chain and loads no CA store."""
    argv = [binary, "s_client", *s_client_connect_args(target), "-showcerts"]
    # Loading the default store takes most of s_client's time, and this read
    # verifies nothing.
    argv += ["-no-CAfile", "-no-CApath"]
    if openssl_version()[1] >= (3,):
        argv += ["-no-CAstore"]
    return argv


async def run_command(argv: Sequence[str], *, timeout: float) -> tuple[str, str, int]:
    """Run a command with stdin closed; return stdout, stderr and the exit status.

    Raises TimeoutError when it runs longer than `timeout` seconds, after killing it.
    """
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except (asyncio.TimeoutError, asyncio.CancelledError):
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    return (
        stdout[:OUTPUT_LIMIT].decode("utf-8", "replace"),
        stderr[:OUTPUT_LIMIT].decode("utf-8", "replace"),
        process.returncode or 0,
    )


async def fetch_served_chain(target: Target, *, timeout: float) -> ServedChain:
    """Read the chain the server sends with `openssl s_client -showcerts`."""
    binary = shutil.which("openssl")
    if binary is None:
        return ServedChain(
            error="openssl not found on PATH; install OpenSSL to read served chains",
            reason=Reason.UNAVAILABLE,
        )
    try:
        out, err, _ = await run_command(
            s_client_chain_argv(binary, target), timeout=timeout
        )
    except asyncio.TimeoutError:
        return ServedChain(
            error=f"no chain within {timeout:g} s", reason=Reason.TIMEOUT
        )
    except OSError as exc:
        return ServedChain(error=f"cannot run openssl: {exc}", reason=Reason.ERROR)
    certificates = parse_served_chain(out, name=target.raw)
    if certificates:
        return ServedChain(certificates=tuple(certificates))
    reason, _, detail = classify_output(out, err)
    if reason is Reason.OK:
        reason, detail = Reason.ERROR, "the server sent no certificate"
    return ServedChain(error=detail or reason.value, reason=reason)


def parse_served_chain(output: str, *, name: str) -> list[CertificateEntry]:
    """Return the certificates of s_client's output in the order they were sent."""
    return list(parse_pem(output.encode("utf-8"), name).certificates)


# --- describing certificates --------------------------------------------------------


def certificate_role(entry: CertificateEntry, position: int | None) -> str:
    """Return "leaf" for the first served certificate, else "root" or "intermediate"."""
    if position == 0:
        return "leaf"
    return "root" if is_self_signed(entry.certificate) else "intermediate"


def common_name(name: x509.Name) -> str:
    """Return the name's last CN, or the whole RFC 4514 string when it has none."""
    values = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if values:
        value = values[-1].value
        return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return name.rfc4514_string() or "(empty name)"


def describe_key(certificate: x509.Certificate) -> tuple[str, int | None]:
    """Return the key type as OpenSSL names it (with the curve for EC) and its bits."""
    try:
        key = certificate.public_key()
    except (ValueError, TypeError) as exc:
        return f"unsupported ({exc})", None
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}", key.key_size
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456
    return type(key).__name__, None


def signature_name(certificate: x509.Certificate) -> str:
    """Return the signature algorithm as OpenSSL prints it, or its dotted OID."""
    oid = certificate.signature_algorithm_oid
    return _SIGNATURE_NAMES.get(oid, oid.dotted_string)


def days_left(certificate: x509.Certificate, now: dt.datetime) -> int:
    """Return whole days until notAfter, counted down; negative once expired."""
    return (certificate.not_valid_after_utc - now).days


def describe_certificate(
    entry: CertificateEntry, *, position: int | None, now: dt.datetime, source: str
) -> dict[str, Any]:
    """Return the JSON form of one certificate of a chain or a path.

    `position` is the index in the served chain, None for a store's certificate.
    `source` is "served" or "store".
    """
    certificate = entry.certificate
    key_type, key_bits = describe_key(certificate)
    return {
        "position": position,
        "source": source,
        "role": certificate_role(entry, position),
        "subject": entry.subject,
        "issuer": certificate.issuer.rfc4514_string(),
        "serial": f"{entry.serial:X}" if entry.serial >= 0 else f"-{-entry.serial:X}",
        "sha256": entry.fingerprint,
        "key_type": key_type,
        "key_bits": key_bits,
        "signature_algorithm": signature_name(certificate),
        "not_before": certificate.not_valid_before_utc.isoformat(),
        "not_after": certificate.not_valid_after_utc.isoformat(),
        "days_left": days_left(certificate, now),
    }


# --- trust stores -------------------------------------------------------------------


def stack_trust_source(
    stack: str, settings: ProbeSettings, env: Mapping[str, str] | None = None
) -> TrustSource | None:
    """Return the trust source a host stack uses under the settings, None if unknown."""
    if settings.ca_file is not None:
        return trust.ca_file_source(settings.ca_file)
    if stack == "cryptography":
        # The what-if verifier is fed the store that OpenSSL's defaults name.
        return trust.openssl_default_source(env)
    try:
        return trust.default_trust(stack, env)
    except ValueError:
        return None


def describe_store(source: TrustSource) -> str:
    """Return a store's name for a sentence: `certifi 2026.10.19 (/x/cacert.pem)`."""
    if source.origin == "certifi":
        return f"certifi {source.certifi_version or '?'} ({source.path})"
    if source.origin in trust.TRUST_VARIABLES:
        return f"{source.origin}={source.path}"
    if source.origin == "--ca-file":
        return f"--ca-file {source.path}"
    return f"the default store {source.path}"


def _default_directory(stack: str, env: Mapping[str, str]) -> str | None:
    """Return the CA directory OpenSSL's defaults add to the stack's CA file."""
    if stack == "openssl":
        directory = env.get("SSL_CERT_DIR")
        if directory:
            return directory
        root = trust.openssl_cli_dir()
        return os.path.join(root, "certs") if root else None
    # get_default_verify_paths() reads SSL_CERT_DIR from os.environ itself.
    return ssl.get_default_verify_paths().capath


@functools.lru_cache(maxsize=16)
def _load_store_cached(path: str, mtime: float) -> tuple[TrustStore | None, str | None]:
    try:
        parsed = load_file(path)
    except UsageError as exc:
        return None, str(exc)
    return TrustStore(label=path, entries=list(parsed.certificates)), None


def load_store(path: str) -> tuple[TrustStore | None, str | None]:
    """Read a PEM bundle or hashed directory; return the store or an error message."""
    try:
        mtime = os.stat(path).st_mtime
    except OSError as exc:
        return None, f"{path}: {exc.strerror or exc}"
    return _load_store_cached(path, mtime)


@dataclass
class TrustAnchors:
    """The anchors one stack trusts: its CA file and, read on first need, the CA
    directory that OpenSSL's default paths add to it.

    `directory` is None for stacks that load one file only. `error` is set when the
    store could not be read, and then `store` is None.
    """

    source: TrustSource
    store: TrustStore | None
    directory: str | None = None
    error: str | None = None
    _extra: TrustStore | None = field(default=None, repr=False)
    _extra_loaded: bool = field(default=False, repr=False)

    @property
    def label(self) -> str:
        """The store's name for a sentence."""
        return describe_store(self.source)

    @property
    def key(self) -> tuple[str, str | None, str | None]:
        """Identity of the store and of what chose it: stacks with equal keys trust
        the same anchors for the same reason."""
        return self.source.origin, self.source.path, self.directory

    def _directory_store(self) -> TrustStore | None:
        if self.directory is not None and not self._extra_loaded:
            self._extra_loaded = True
            self._extra, _ = load_store(self.directory)
        return self._extra

    def _stores(self) -> list[TrustStore]:
        stores = [self.store] if self.store is not None else []
        extra = self._directory_store()
        return stores if extra is None else [*stores, extra]

    def issuers_of(self, entry: CertificateEntry) -> list[CertificateEntry]:
        """Return the anchors whose name and key match the certificate's issuer."""
        if self.store is not None:
            found = self.store.issuers_of(entry)
            if found:
                return found
        extra = self._directory_store()
        return extra.issuers_of(entry) if extra is not None else []

    def contains(self, entry: CertificateEntry) -> bool:
        """Return whether a certificate with this name and key is an anchor here."""
        if self.store is not None and self.store.contains(entry):
            return True
        extra = self._directory_store()
        return extra is not None and extra.contains(entry)

    def certificates(self) -> list[x509.Certificate]:
        """Return every anchor, the CA directory's included, without duplicates."""
        seen: dict[str, x509.Certificate] = {}
        for store in self._stores():
            for entry in store.entries:
                seen.setdefault(entry.fingerprint, entry.certificate)
        return list(seen.values())


def read_trust_anchors(
    stack: str, settings: ProbeSettings, env: Mapping[str, str] | None = None
) -> TrustAnchors | None:
    """Read the store a host stack uses, or return None for a stack comparer cannot
    read (an image's stack, or an unknown name)."""
    env = os.environ if env is None else env
    source = stack_trust_source(stack, settings, env)
    if source is None:
        return None
    if source.path is None:
        return TrustAnchors(source, None, error="no trust store found")
    store, error = load_store(source.path)
    directory = None
    if settings.ca_file is None and stack in DEFAULT_PATH_STACKS:
        candidate = _default_directory(stack, env)
        if candidate and os.path.isdir(candidate):
            same = os.path.realpath(candidate) == os.path.realpath(source.path)
            directory = None if same else candidate
    return TrustAnchors(source, store, directory=directory, error=error)


# --- paths --------------------------------------------------------------------------


@dataclass(frozen=True)
class TrustPath:
    """The path from the leaf to a trust anchor that one store completes.

    `certificates` are the served certificates on the path, leaf first. `anchor` is
    the store's certificate that ends it, None when the path is incomplete, and then
    `problem` gives the reason.
    """

    certificates: tuple[CertificateEntry, ...]
    anchor: CertificateEntry | None
    problem: str | None = None

    @property
    def complete(self) -> bool:
        """Whether the path reaches an anchor of the store."""
        return self.anchor is not None


def _valid_first(
    candidates: Sequence[CertificateEntry], at: dt.datetime
) -> CertificateEntry:
    for entry in candidates:
        certificate = entry.certificate
        if certificate.not_valid_before_utc <= at <= certificate.not_valid_after_utc:
            return entry
    return candidates[0]


def build_trust_path(
    served: Sequence[CertificateEntry], anchors: TrustAnchors, *, at: dt.datetime
) -> TrustPath:
    """Build the path OpenSSL 1.1.0+ would: store issuers first, then served ones."""
    if not served:
        return TrustPath((), None, "the server sent no certificate")
    current = served[0]
    path = [current]
    used = {current.fingerprint}
    while len(path) <= MAX_PATH_LENGTH:
        in_store = anchors.issuers_of(current)
        if in_store:
            return TrustPath(tuple(path), _valid_first(in_store, at))
        name = common_name(current.certificate.subject)
        if is_self_signed(current.certificate):
            return TrustPath(
                tuple(path),
                None,
                f"the chain ends at the root '{name}', which {anchors.label} does "
                "not contain",
            )
        issuers = [
            entry
            for entry in served
            if entry.fingerprint not in used
            and is_issued_by(current.certificate, entry.certificate)
        ]
        if not issuers:
            issuer = common_name(current.certificate.issuer)
            return TrustPath(
                tuple(path),
                None,
                f"no issuer '{issuer}' of '{name}' in the served chain or in "
                f"{anchors.label}",
            )
        current = _valid_first(issuers, at)
        path.append(current)
        used.add(current.fingerprint)
    return TrustPath(
        tuple(path), None, f"longer than OpenSSL's verify depth of {MAX_PATH_LENGTH}"
    )


@dataclass
class ChainContext:
    """The facts about one target's chain: the served certificates, each host
    stack's trust anchors and the path each completes, at the evaluation time.

    `anchors` and `paths` are keyed by stack name and hold host stacks whose store
    could be read; other stacks are absent.
    """

    target: Target
    served: ServedChain
    at: dt.datetime
    anchors: dict[str, TrustAnchors] = field(default_factory=dict)
    paths: dict[str, TrustPath] = field(default_factory=dict)

    def position(self, entry: CertificateEntry) -> int | None:
        """Return the entry's index in the served chain, None for a store's copy."""
        for index, served in enumerate(self.served.certificates):
            if served is entry:
                return index
        return None


def build_context(
    target: Target,
    served: ServedChain,
    anchors: Mapping[str, TrustAnchors | None],
    *,
    at: dt.datetime,
) -> ChainContext:
    """Build every stack's path, once per distinct store."""
    context = ChainContext(target=target, served=served, at=at)
    by_store: dict[tuple[str, str | None, str | None], TrustPath] = {}
    for stack, found in anchors.items():
        if found is None or found.store is None:
            continue
        context.anchors[stack] = found
        if found.key not in by_store:
            by_store[found.key] = build_trust_path(served.certificates, found, at=at)
        context.paths[stack] = by_store[found.key]
    return context


def chain_json(context: ChainContext) -> dict[str, Any]:
    """Return the `chain` object of a target's JSON: served chain and paths."""
    now = context.at
    served = [
        describe_certificate(entry, position=index, now=now, source="served")
        for index, entry in enumerate(context.served.certificates)
    ]
    groups: dict[int, dict[str, Any]] = {}
    for stack, path in context.paths.items():
        group = groups.get(id(path))
        if group is None:
            group = _path_json(context, path, context.anchors[stack])
            groups[id(path)] = group
        group["stacks"].append(stack)
    return {
        "as_of": now.isoformat(),
        "error": context.served.error,
        "served": served,
        "paths": list(groups.values()),
    }


def _path_json(
    context: ChainContext, path: TrustPath, anchors: TrustAnchors
) -> dict[str, Any]:
    steps = [
        describe_certificate(
            entry, position=context.position(entry), now=context.at, source="served"
        )
        for entry in path.certificates
    ]
    anchor = None
    if path.anchor is not None:
        anchor = describe_certificate(
            path.anchor, position=None, now=context.at, source="store"
        )
        steps.append(anchor)
    return {
        "stacks": [],
        "store": anchors.source.describe(),
        "complete": path.complete,
        "path": steps,
        "anchor": anchor,
        "problem": path.problem,
    }


def format_validity(certificate: x509.Certificate, now: dt.datetime) -> str:
    """Return `notBefore → notAfter (N days left)` for display."""
    left = days_left(certificate, now)
    status = f"{left} days left" if left >= 0 else f"expired {-left} days ago"
    if certificate.not_valid_before_utc > now:
        status = "not yet valid"
    return (
        f"{format_date(certificate.not_valid_before_utc)} → "
        f"{format_date(certificate.not_valid_after_utc)} ({status})"
    )
