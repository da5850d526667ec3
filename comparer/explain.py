"""One plain sentence per disagreeing stack that names why its verdict differs.

The stacks on the smaller side of a disagreement are the ones explained (the
rejecting side on a tie). Each sentence names the stack first and then the fact
behind its verdict. That fact is the store it loaded and whether that store has the
anchor, the variable that chose the store, a verify flag, a hostname rule, the
security level or the protocol versions. Facts come from the stores and the chain
read in this process, so a run in another environment computes its own.
"""

from __future__ import annotations

import functools
import importlib.metadata
import ssl
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from comparer.bundle_checks import (
    MIN_EC_BITS,
    MIN_RSA_BITS,
    WEAK_SIGNATURES,
    is_self_signed,
)
from comparer.bundle_model import CertificateEntry
from comparer.chain import (
    ChainContext,
    TrustAnchors,
    certificate_role,
    common_name,
    describe_key,
)
from comparer.chain_checks import ca_issuers_urls
from comparer.model import ProbeResult, Reason, StackInfo, TargetReport
from comparer.trust import STACK_TRUST_VARIABLES, TRUST_VARIABLES

# OpenSSL 3.0 added codes 80 to 94 for the RFC 5280 checks that
# X509_V_FLAG_X509_STRICT (VERIFY_X509_STRICT) turns on.
# NOTE: only 85 and 89 were seen here, with OpenSSL 3.0.19 on the lab.
STRICT_CODES = frozenset(range(80, 95))
_STRICT_PROBLEMS = {
    85: "it has no Authority Key Identifier",
    86: "it has no Subject Key Identifier",
    87: "its subjectAltName extension is empty",
    89: "its basicConstraints is not marked critical",
    90: "its Authority Key Identifier is marked critical",
    91: "its Subject Key Identifier is marked critical",
    92: "it is a CA certificate without keyUsage",
}
_STRICT_REMEDIES = {
    85: "Reissue it with an authorityKeyIdentifier extension",
    89: "Reissue the CA certificate with basicConstraints marked critical",
}
_NO_VERDICT = {Reason.TIMEOUT, Reason.CONNECT, Reason.ERROR, Reason.UNAVAILABLE}
_TRUST_REASONS = {Reason.UNKNOWN_ISSUER, Reason.SELF_SIGNED}
_OLD_PROTOCOLS = {"TLSv1", "TLSv1.1", "SSLv3"}
_STORE_STATES = {
    True: "which has it",
    False: "which lacks it",
    None: "which comparer cannot read",
}
# Extensions that cryptography's messages name by OID only.
_EXTENSION_NAMES = {
    "2.5.29.14": "Subject Key Identifier",
    "2.5.29.15": "keyUsage",
    "2.5.29.17": "subjectAltName",
    "2.5.29.19": "basicConstraints",
    "2.5.29.35": "Authority Key Identifier",
    "2.5.29.37": "extendedKeyUsage",
}


@dataclass(frozen=True)
class Disagreement:
    """The two sides of a disagreement about one target.

    `subject` is the result being explained. `same` contains the results on its side
    (itself included) and `other` the results on the opposite side.
    """

    subject: ProbeResult
    same: tuple[ProbeResult, ...]
    other: tuple[ProbeResult, ...]

    @property
    def rejecting(self) -> tuple[ProbeResult, ...]:
        """The results that rejected the target."""
        return self.other if self.subject.ok else self.same

    @property
    def accepting(self) -> tuple[ProbeResult, ...]:
        """The results that verified the target."""
        return self.same if self.subject.ok else self.other

    @property
    def rejection(self) -> ProbeResult:
        """The rejection the sentence is about: the subject's own when it rejected,
        else the most common one on the rejecting side."""
        if not self.subject.ok:
            return self.subject
        counts = Counter((r.reason, r.verify_code) for r in self.rejecting)
        (reason, code), _ = counts.most_common(1)[0]
        return next(
            r for r in self.rejecting if (r.reason, r.verify_code) == (reason, code)
        )


def stack_label(result: ProbeResult) -> str:
    """Return `stdlib` for a host stack and `stdlib@debian:11` for an image's."""
    if result.where == "host":
        return result.stack
    return f"{result.stack}@{result.where.removeprefix('image:')}"


def join_names(results: Sequence[ProbeResult]) -> str:
    """Return `a`, `a and b` or `a, b and c` for the stacks of the results."""
    names = list(dict.fromkeys(stack_label(r) for r in results))
    if len(names) == 1:
        return names[0]
    return f"{', '.join(names[:-1])} and {names[-1]}"


def _verb(results: Sequence[ProbeResult], singular: str, plural: str) -> str:
    count = len({stack_label(r) for r in results})
    return singular if count == 1 else plural


def they(results: Sequence[ProbeResult], verb: str) -> str:
    """Return the stacks' names and the verb agreeing with them: `a and b accept`."""
    singular = {"do": "does", "try": "tries"}.get(verb)
    if singular is None:
        singular = verb + ("es" if verb.endswith(("s", "sh", "ch")) else "s")
    return f"{join_names(results)} {_verb(results, singular, verb)}"


def _quoted(entry: CertificateEntry) -> str:
    return f"'{common_name(entry.certificate.subject)}'"


def _clean_detail(detail: str) -> str:
    text = detail.split(" (encountered processing")[0]
    for oid, name in _EXTENSION_NAMES.items():
        text = text.replace(f"{oid}:", f"{name} ({oid}):")
    return text


@functools.lru_cache(maxsize=1)
def host_security_level() -> int | None:
    """Return the OpenSSL security level of a default context on this host."""
    level = getattr(ssl.create_default_context(), "security_level", None)
    return level if isinstance(level, int) else None


class Explainer:
    """Builds the explanations of one target's disagreement."""

    def __init__(
        self,
        report: TargetReport,
        *,
        context: ChainContext | None,
        stacks: Sequence[StackInfo],
        offline: Mapping[str, str],
    ) -> None:
        self.report = report
        self.context = context
        self.infos = {info.column: info for info in stacks}
        self.offline = offline

    def explain(self, case: Disagreement) -> dict[str, Any]:
        """Return the explanation of one result as JSON: stack, where, cause, text."""
        cause, text = self._cause(case)
        return {
            "stack": case.subject.stack,
            "where": case.subject.where,
            "cause": cause,
            "text": text,
        }

    def _cause(self, case: Disagreement) -> tuple[str, str]:
        rejection = case.rejection
        checks: list[Callable[[Disagreement], tuple[str, str] | None]] = []
        if rejection.reason in _NO_VERDICT:
            checks.append(self._probe_failure)
        elif rejection.reason is Reason.HOSTNAME_MISMATCH:
            checks.append(self._hostname)
        elif rejection.verify_code in STRICT_CODES:
            checks.append(self._strict)
        elif rejection.reason is Reason.WEAK_CRYPTO:
            checks.append(self._security_level)
        elif rejection.reason is Reason.PROTOCOL:
            checks.append(self._protocol)
        elif rejection.reason in _TRUST_REASONS:
            checks += [self._trust_store, self._aia]
        elif rejection.reason in {Reason.EXPIRED, Reason.NOT_YET_VALID}:
            checks.append(self._chain_building)
        checks.append(self._verifier_rules)
        for check in checks:
            found = check(case)
            if found is not None:
                return found
        return self._unknown(case)

    # --- helpers ----------------------------------------------------------------

    def _anchors(self, result: ProbeResult) -> TrustAnchors | None:
        if result.where != "host" or self.context is None:
            return None
        return self.context.anchors.get(result.stack)

    def _leaf(self) -> CertificateEntry | None:
        return self.context.served.leaf if self.context is not None else None

    def _is_pyca(self, result: ProbeResult) -> bool:
        return result.stack == "cryptography" or result.column in self.offline

    def _facts(self, result: ProbeResult) -> dict[str, Any]:
        info = self.infos.get(result.column)
        return info.facts if info is not None else {}

    # --- probe failures ---------------------------------------------------------

    def _probe_failure(self, case: Disagreement) -> tuple[str, str]:
        failed = case.rejection
        hints = {
            Reason.TIMEOUT: "retry with a longer --timeout",
            Reason.CONNECT: "check that it can reach the address (proxy variables, "
            "IPv6, firewall)",
            Reason.UNAVAILABLE: "the stack could not run this probe",
            Reason.ERROR: "run with --verbose to see the error",
        }
        failure = f"{failed.reason.value}: {failed.detail}".rstrip(": ")
        if case.subject.ok:
            text = (
                f"{stack_label(case.subject)} verified the chain while "
                f"{join_names(case.rejecting)} reached no verdict ({failure}), so this "
                f"is no verification difference; {hints[failed.reason]}."
            )
        else:
            text = (
                f"{stack_label(case.subject)} reached no verdict ({failure}) while "
                f"{join_names(case.accepting)} verified the chain, so this is no "
                f"verification difference; {hints[failed.reason]}."
            )
        return "probe-failure", text

    # --- hostname rules ---------------------------------------------------------

    def _san_only_clause(self, result: ProbeResult) -> str:
        label = stack_label(result)
        if self._is_pyca(result):
            return f"{self._verifier_subject([result])} requires a subjectAltName"
        if result.stack == "requests":
            version = self._facts(result).get("modules", {}).get("urllib3")
            if result.where == "host":
                version = _installed_version("urllib3")
            return (
                f"{label} matches the hostname against subjectAltName only, because "
                f"urllib3 {version or '2'} turns off the common-name fallback"
            )
        return f"{label} does not fall back to the subject CN"

    def _hostname(self, case: Disagreement) -> tuple[str, str] | None:
        leaf = self._leaf()
        if leaf is None:
            return None
        host = self.report.target.host
        sans = _extension(leaf.certificate, x509.SubjectAlternativeName)
        cn = common_name(leaf.certificate.subject)
        if sans is None and cn.lower() == host.lower().rstrip("."):
            return "hostname-rule", self._cn_fallback_text(case, leaf, cn)
        return "hostname-rule", self._hostname_rules_text(case, sans)

    def _cn_fallback_text(
        self, case: Disagreement, leaf: CertificateEntry, cn: str
    ) -> str:
        fix = (
            "Reissue the certificate with a subjectAltName for "
            f"{self.report.target.host}."
        )
        if case.subject.ok:
            return (
                f"{stack_label(case.subject)} falls back to the subject CN '{cn}' "
                "because the leaf has no subjectAltName, but "
                f"{they(case.rejecting, 'match')} subjectAltName only and reject it. "
                f"{fix}"
            )
        return (
            f"{self._san_only_clause(case.subject)}, and the leaf {_quoted(leaf)} has "
            f"no subjectAltName; {they(case.accepting, 'fall')} back to its subject "
            f"CN '{cn}'. {fix}"
        )

    def _hostname_rules_text(
        self, case: Disagreement, sans: x509.SubjectAlternativeName | None
    ) -> str:
        host = self.report.target.host
        names = ", ".join(_san_strings(sans)) if sans is not None else "none"
        if case.subject.ok:
            verdict = (
                f"accepts the name '{host}' while {they(case.rejecting, 'reject')}"
            )
        else:
            verdict = (
                f"rejects the name '{host}' while {they(case.accepting, 'accept')}"
            )
        return (
            f"{stack_label(case.subject)} {verdict} it "
            f"({case.rejection.detail or 'hostname mismatch'}); the leaf's "
            f"subjectAltNames are {names}. The stacks apply different hostname rules "
            "(partial wildcards, trailing dots, IDNA 2003 or 2008, IP addresses "
            "written as DNS names)."
        )

    # --- VERIFY_X509_STRICT -----------------------------------------------------

    def _strict_owner(self, result: ProbeResult) -> str:
        if result.stack == "stdlib-strict":
            return "sets VERIFY_X509_STRICT, as the default context of Python 3.13 does"
        python = str(self._facts(result).get("python") or "")
        if python:
            return (
                f"runs on Python {python}, whose default context sets "
                "VERIFY_X509_STRICT"
            )
        return "verifies with VERIFY_X509_STRICT"

    def _strict_culprit(self, code: int) -> CertificateEntry | None:
        if self.context is None:
            return None
        for entry in self.context.served.certificates:
            certificate = entry.certificate
            missing_aki = _extension(certificate, x509.AuthorityKeyIdentifier) is None
            if code == 85 and missing_aki and not is_self_signed(certificate):
                return entry
            if code == 89 and _basic_constraints_not_critical(certificate):
                return entry
            if (
                code == 86
                and _extension(certificate, x509.SubjectKeyIdentifier) is None
            ):
                return entry
        return None

    def _strict(self, case: Disagreement) -> tuple[str, str]:
        rejection = case.rejection
        code = rejection.verify_code or 0
        culprit = self._strict_culprit(code)
        problem = _STRICT_PROBLEMS.get(
            code, rejection.detail.lower() or "it breaks RFC 5280"
        )
        offender = "the chain"
        if culprit is not None:
            position = self.context.position(culprit) if self.context else None
            offender = f"the {certificate_role(culprit, position)} {_quoted(culprit)}"
        remedy = _STRICT_REMEDIES.get(code, "Reissue it to follow RFC 5280")
        remedy += (
            "; Python 3.13's default context, and urllib3 2 on Python 3.13, reject it"
        )
        remedy += "."
        if case.subject.ok:
            text = (
                f"{stack_label(case.subject)} verifies without VERIFY_X509_STRICT and "
                f"accepts {offender}, but {they(case.rejecting, 'reject')} it under "
                f"that flag because {problem} (verify code {code}). {remedy}"
            )
        else:
            text = (
                f"{stack_label(case.subject)} {self._strict_owner(case.subject)}, so "
                f"OpenSSL rejects {offender} because {problem} (verify code {code}); "
                f"{they(case.accepting, 'verify')} without the flag. "
                f"{remedy}"
            )
        return "strict-flags", text

    # --- security level and protocol versions -----------------------------------

    def _weak_certificate(self) -> tuple[CertificateEntry, str] | None:
        if self.context is None:
            return None
        for position, entry in enumerate(self.context.served.certificates):
            certificate = entry.certificate
            key_type, bits = describe_key(certificate)
            minimum = MIN_EC_BITS if key_type.startswith("EC") else MIN_RSA_BITS
            checked = key_type.split()[0] in {"RSA", "DSA", "EC"}
            if checked and bits is not None and bits < minimum:
                return entry, f"its {key_type} key of {bits} bits"
            digest = WEAK_SIGNATURES.get(
                certificate.signature_algorithm_oid.dotted_string
            )
            # A root's signature on itself is never checked, so it is no weakness.
            self_signed_root = position > 0 and is_self_signed(certificate)
            if digest is not None and not self_signed_root:
                return entry, f"its {digest} signature"
        return None

    def _security_level(self, case: Disagreement) -> tuple[str, str]:
        weak = self._weak_certificate()
        code = case.rejection.verify_code
        coded = f" (verify code {code})" if code else ""
        offender = "the chain"
        fix = "Reissue it with stronger keys and SHA-256 signatures."
        if weak is not None:
            entry, problem = weak
            position = self.context.position(entry) if self.context else None
            role = certificate_role(entry, position)
            offender = f"the {role} {_quoted(entry)} for {problem}"
            fix = (
                "Reissue it with an RSA key of at least 2048 bits or an EC key, "
                "signed with SHA-256."
            )
        level = host_security_level()
        at_level = "their OpenSSL's security level"
        if level is not None and all(r.where == "host" for r in case.rejecting):
            at_level = f"OpenSSL at security level {level}"
        if case.subject.ok:
            despite = offender.replace(" for ", " despite ")
            text = (
                f"{stack_label(case.subject)} accepts {despite}, which "
                f"{they(case.rejecting, 'reject')} with {at_level}{coded}. {fix}"
            )
        else:
            if case.subject.where != "host":
                at_level = "its OpenSSL's security level"
            text = (
                f"{stack_label(case.subject)} uses {at_level}, which rejects {offender}"
                f"{coded}; {they(case.accepting, 'accept')} it. {fix}"
            )
        return "security-level", text

    def _protocol(self, case: Disagreement) -> tuple[str, str]:
        failed = f"({case.rejection.detail or 'protocol'})"
        versions = sorted({r.tls_version for r in case.accepting if r.tls_version})
        without_handshake = [r for r in case.accepting if self._is_pyca(r)]
        fix = "Enable TLS 1.2 or 1.3 on the server."
        subject = stack_label(case.subject)
        if case.subject.ok and case.subject in without_handshake:
            text = (
                f"{_no_handshake([case.subject])}; {they(case.rejecting, 'fail')} the "
                f"handshake {failed}. {fix}"
            )
        elif case.subject.ok:
            text = (
                f"{subject} negotiated {case.subject.tls_version or 'a handshake'} "
                f"with the server, but {they(case.rejecting, 'fail')} the handshake "
                f"{failed}. {fix}"
            )
        elif len(without_handshake) == len(case.accepting):
            text = (
                f"{subject} could not complete a handshake {failed}; "
                f"{_no_handshake(case.accepting)}. {fix}"
            )
        else:
            cause = ""
            if _OLD_PROTOCOLS & set(versions):
                cause = (
                    ", because Python 3.10+ and OpenSSL at security level 2 refuse "
                    f"TLS below 1.2 and the server negotiated {', '.join(versions)}"
                )
            text = (
                f"{subject} could not complete a handshake {failed}{cause}, while "
                f"{they(case.accepting, 'verify')} the chain. {fix}"
            )
        return "protocol-version", text

    # --- trust stores, variables and AIA ----------------------------------------

    def _anchor(self, case: Disagreement) -> CertificateEntry | None:
        if self.context is None:
            return None
        for result in case.accepting:
            path = (
                self.context.paths.get(result.stack) if result.where == "host" else None
            )
            if path is not None and path.anchor is not None:
                return path.anchor
        return None

    def _store_clause(
        self, results: Sequence[ProbeResult], anchor: CertificateEntry
    ) -> str:
        groups: dict[str, list[ProbeResult]] = {}
        has: dict[str, bool | None] = {}
        for result in results:
            anchors = self._anchors(result)
            if anchors is None:
                # Image stores are not read from here; one clause names them all.
                label = "their own stores (audit them with comparer bundle --image)"
                has[label] = None
            else:
                label = anchors.label
                has[label] = anchors.contains(anchor)
            groups.setdefault(label, []).append(result)
        clauses = []
        for label, members in groups.items():
            state = _STORE_STATES[has[label]]
            clauses.append(f"{they(members, 'use')} {label}, {state}")
        return "; ".join(clauses)

    def _trust_store(self, case: Disagreement) -> tuple[str, str] | None:
        anchor = self._anchor(case)
        if anchor is None:
            return None
        subject = case.subject
        anchors = self._anchors(subject)
        if anchors is None:
            return None
        has = anchors.contains(anchor)
        if has != subject.ok:
            # Trust is the cause only when the store explains the verdict.
            return None
        name = _quoted(anchor)
        kind = "root" if is_self_signed(anchor.certificate) else "anchor"
        state = "has" if has else "lacks"
        others = self._store_clause(case.other, anchor)
        text = (
            f"{stack_label(subject)} uses {anchors.label}, which {state} the {kind} "
            f"{name}; {others}."
        )
        remedy = self._trust_remedy(case, anchor)
        if remedy:
            text += f" {remedy}"
        origins = {
            a.source.origin
            for r in (*case.same, *case.other)
            if (a := self._anchors(r))
        }
        cause = "environment" if origins & set(TRUST_VARIABLES) else "trust-store"
        return cause, text

    def _trust_remedy(self, case: Disagreement, anchor: CertificateEntry) -> str:
        having = [
            found
            for result in case.accepting
            if (found := self._anchors(result)) is not None and found.contains(anchor)
        ]
        if not having or having[0].source.path is None:
            return ""
        path, origin = having[0].source.path, having[0].source.origin
        lacking = [r for r in case.rejecting if self._anchors(r) is not None]
        sentences = []
        for variable, members in _group_by(lacking, _variable_for).items():
            pronoun = _verb(members, "it", "them")
            if origin in TRUST_VARIABLES and _ignores(members, origin):
                sentences.append(
                    f"{they(members, 'ignore')} {origin}: set {variable}={path} for "
                    f"{pronoun}."
                )
            else:
                sentences.append(
                    f"Set {variable}={path} for {join_names(members)}, or add the "
                    f"root {_quoted(anchor)} to {_verb(members, 'its', 'their')} store."
                )
        return " ".join(sentences)

    def _aia(self, case: Disagreement) -> tuple[str, str] | None:
        leaf = self._leaf()
        if leaf is None or len(self.context.served.certificates) > 1:  # type: ignore[union-attr]
            return None
        urls = ca_issuers_urls(leaf.certificate)
        if not urls:
            return None
        text = (
            f"{they(case.rejecting, 'do')} not fetch the missing intermediate named "
            f"in the leaf's AIA caIssuers URL {urls[0]}, but "
            f"{they(case.accepting, 'do')}, as Chrome and the macOS and Windows "
            "verifiers do. Send the intermediate with the leaf."
        )
        return "aia", text

    # --- chain building and verifier rules --------------------------------------

    def _chain_building(self, case: Disagreement) -> tuple[str, str] | None:
        if self.context is None:
            return None
        anchor = self._anchor(case)
        at = self.context.at
        expired = [
            entry
            for entry in self.context.served.certificates[1:]
            if entry.certificate.not_valid_after_utc < at
        ]
        if anchor is None or not expired:
            return None
        entry = expired[0]
        anchor_name = _quoted(anchor)
        fix = f"Remove {_quoted(entry)} from the served chain."
        if case.subject.ok:
            text = (
                f"{stack_label(case.subject)} tries trusted certificates first and "
                f"ends at its own {anchor_name}, skipping the expired "
                f"{_quoted(entry)} that {they(case.rejecting, 'follow')} as served. "
                f"{fix}"
            )
        else:
            text = (
                f"{stack_label(case.subject)} follows the served chain through "
                f"{_quoted(entry)}, which has expired; {they(case.accepting, 'try')} "
                f"trusted certificates first and {_verb(case.accepting, 'ends', 'end')}"
                f" at {anchor_name}. {fix}"
            )
        return "chain-building", text

    def _verifier_rules(self, case: Disagreement) -> tuple[str, str] | None:
        pyca = [r for r in case.rejecting if self._is_pyca(r)]
        if not pyca:
            return None
        detail = _clean_detail(case.rejection.detail)
        if case.subject.ok:
            text = (
                f"{stack_label(case.subject)} accepts the chain, but "
                f"{self._verifier_subject(pyca)} rejects it under RFC 5280 rules "
                f"that OpenSSL's default verification does not apply: {detail}."
            )
        else:
            text = (
                f"{self._verifier_subject([case.subject])} rejects the chain under "
                "RFC 5280 rules that OpenSSL's default verification does not apply: "
                f"{detail}; "
                f"{they(case.accepting, 'accept')} it."
            )
        return "rfc5280-rules", text

    def _verifier_subject(self, results: Sequence[ProbeResult]) -> str:
        """Name cryptography's verifier, and the stacks it stood in for offline."""
        offline = [r for r in results if r.column in self.offline]
        if not offline:
            return "cryptography's verifier"
        return (
            f"cryptography's verifier, which judged {join_names(offline)} offline "
            "as of the --at time,"
        )

    def _unknown(self, case: Disagreement) -> tuple[str, str]:
        rejection = case.rejection
        code = f", verify code {rejection.verify_code}" if rejection.verify_code else ""
        failure = f"{rejection.reason.value}{code}"
        if rejection.detail:
            failure += f": {rejection.detail}"
        if case.subject.ok:
            text = (
                f"{stack_label(case.subject)} accepts the chain while "
                f"{they(case.rejecting, 'reject')} it ({failure})"
            )
        else:
            text = (
                f"{stack_label(case.subject)} rejects the chain ({failure}) while "
                f"{they(case.accepting, 'accept')} it"
            )
        text += (
            "; comparer knows no cause for this difference, so compare the reproduce "
            "commands in the --json output."
        )
        return "unknown", text


def _no_handshake(results: Sequence[ProbeResult]) -> str:
    own = _verb(results, "its", "their")
    return (
        f"{they(results, 'verify')} the chain that openssl s_client read without a "
        f"handshake of {own} own, so the server's protocol versions do not matter "
        f"to {_verb(results, 'it', 'them')}"
    )


def _installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _extension(certificate: x509.Certificate, kind: type[x509.ExtensionType]) -> Any:
    try:
        return certificate.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _basic_constraints_not_critical(certificate: x509.Certificate) -> bool:
    try:
        extension = certificate.extensions.get_extension_for_class(
            x509.BasicConstraints
        )
    except x509.ExtensionNotFound:
        return False
    return extension.value.ca and not extension.critical


def _san_strings(sans: x509.SubjectAlternativeName) -> list[str]:
    return [str(name.value) for name in sans]


def _variable_for(result: ProbeResult) -> str:
    """Return the variable that sets this stack's CA file."""
    return "REQUESTS_CA_BUNDLE" if result.stack == "requests" else "SSL_CERT_FILE"


def _ignores(results: Sequence[ProbeResult], variable: str) -> bool:
    # Stacks not in the table (image and what-if stacks) read OpenSSL's variables.
    openssl_variables = STACK_TRUST_VARIABLES["stdlib"]
    return all(
        variable not in STACK_TRUST_VARIABLES.get(r.stack, openssl_variables)
        for r in results
    )


def _group_by(
    results: Sequence[ProbeResult], key: Callable[[ProbeResult], str]
) -> dict[str, list[ProbeResult]]:
    groups: dict[str, list[ProbeResult]] = {}
    for result in results:
        groups.setdefault(key(result), []).append(result)
    return groups


def explain_report(
    report: TargetReport,
    *,
    context: ChainContext | None,
    stacks: Sequence[StackInfo],
    offline: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Return one explanation per stack on the smaller side of a disagreement."""
    accepted = tuple(r for r in report.results if r.ok)
    rejected = tuple(r for r in report.results if not r.ok)
    if not accepted or not rejected:
        return []
    smaller = rejected if len(rejected) <= len(accepted) else accepted
    larger = accepted if smaller is rejected else rejected
    explainer = Explainer(report, context=context, stacks=stacks, offline=offline or {})
    explanations = [
        explainer.explain(Disagreement(subject=result, same=smaller, other=larger))
        for result in smaller
    ]
    return merge_explanations(explanations, smaller)


def merge_explanations(
    explanations: list[dict[str, Any]], results: Sequence[ProbeResult]
) -> list[dict[str, Any]]:
    """Merge explanations that differ only in the stack they start with.

    Four stacks that accept for the same reason get one sentence naming all four;
    the merged entry lists them under `stacks`.
    """
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    members: dict[tuple[str, str], list[ProbeResult]] = {}
    for item, result in zip(explanations, results, strict=True):
        label = stack_label(result)
        text = str(item["text"])
        rest = text[len(label) :] if text.startswith(label + " ") else text
        key = (str(item["cause"]), rest)
        if key not in merged:
            merged[key] = dict(item)
            members[key] = []
        members[key].append(result)
    output = []
    for key, item in merged.items():
        group = members[key]
        if len(group) > 1:
            item["stacks"] = [stack_label(r) for r in group]
            rest = key[1]
            # "openssl uses X" becomes "openssl, stdlib and httpx use X".
            for singular, plural in ((" uses ", " use "), (" accepts ", " accept ")):
                if rest.startswith(singular):
                    rest = plural + rest[len(singular) :]
                    break
            item["text"] = join_names(group) + rest
        output.append(item)
    return output
