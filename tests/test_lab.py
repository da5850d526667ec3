"""Tests of the lab: real handshakes against every scenario it serves.

Each scenario is checked twice. The stdlib `ssl` module, trusting `lab.ca_bundle`,
gives the verdict. `openssl s_client -showcerts` reads the chain the server really
sends, and the tests compare it with `Scenario.served_chain` and inspect it for the
defect that names the scenario.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import certifi
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from comparer.lab import Lab, Scenario, names
from comparer.lab.server import TRICKLE_INTERVAL, bind_loopback
from comparer.model import Reason
from comparer.reasons import classify_exception

pytestmark = pytest.mark.usefixtures("clean_tls_env")

OPENSSL = shutil.which("openssl")
PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL
)
HOSTILE_NAMES = [n for n in names() if n not in names(hostile=False)]

# Verify codes from the stdlib on OpenSSL 3.0, with OpenSSL's default checks, then
# with VERIFY_X509_STRICT and no common-name fallback. 0 means the chain verified;
# None means the handshake failed before any certificate verdict.
STDLIB_VERIFY_CODES: dict[str, tuple[int | None, int | None]] = {
    "good": (0, 0),
    "expired-leaf": (10, 10),
    "not-yet-valid-leaf": (9, 9),
    "expired-intermediate": (10, 10),
    "self-signed-leaf": (18, 18),
    "untrusted-root": (20, 20),
    "hostname-mismatch": (62, 62),
    "missing-intermediate": (20, 20),
    "wrong-order": (0, 0),
    "cn-only": (0, 62),
    "no-aki": (0, 85),
    "rsa-1024-leaf": (66, 66),
    "sha1-intermediate": (68, 68),
    "tls1-only": (None, None),
    "internal-root": (0, 0),
    "root-expires-soon": (0, 0),
    "expired-root": (10, 10),
    "ip-san-only": (0, 0),
    "ip-in-dns-san": (64, 64),
    "wildcard-apex": (62, 62),
    "ca-bc-not-critical": (0, 89),
    "client-auth-eku": (26, 26),
    "unknown-critical-extension": (34, 34),
    "name-constraints": (47, 47),
    "root-included": (0, 0),
    "extra-certificates": (0, 0),
    "expired-cross-root": (0, 0),
    "missing-intermediate-aia": (20, 20),
}


# --- clients ----------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What the stdlib client concluded about one endpoint."""

    reason: Reason
    verify_code: int | None = None
    version: str | None = None
    response: bytes = b""


def client_context(cafile: Path | None, *, strict: bool) -> ssl.SSLContext:
    """Build the stdlib default context, with or without the strict checks."""
    context = ssl.create_default_context(cafile=None if cafile is None else str(cafile))
    # Python 3.13 turns both flags on by default. Clearing them first makes each
    # client read the same on every Python version.
    context.verify_flags &= ~(ssl.VERIFY_X509_STRICT | ssl.VERIFY_X509_PARTIAL_CHAIN)
    if strict:
        context.verify_flags |= ssl.VERIFY_X509_STRICT
        context.hostname_checks_common_name = False
    return context


def fetch(
    scenario: Scenario,
    context: ssl.SSLContext,
    *,
    timeout: float = 5.0,
    address: str | None = None,
    request: bytes | None = None,
) -> Outcome:
    """Connect, send one HTTP request, and classify what happened."""
    host = scenario.host
    request = request or f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    try:
        with (
            socket.create_connection(
                (address or host, scenario.port), timeout=timeout
            ) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            tls.sendall(request)
            response = read_all(tls)
            version = tls.version()
    except (OSError, ssl.SSLError) as exc:
        found = classify_exception(exc)
        return Outcome(found.reason, found.verify_code)
    return Outcome(Reason.OK, 0, version, response)


def read_all(tls: ssl.SSLSocket) -> bytes:
    """Read until the server closes the connection."""
    chunks = []
    while True:
        try:
            chunk = tls.recv(65536)
        except ssl.SSLZeroReturnError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


@contextmanager
def ssl_cert_file(path: Path) -> Iterator[None]:
    """Set SSL_CERT_FILE for the block, which is when a default context reads it."""
    previous = os.environ.get("SSL_CERT_FILE")
    os.environ["SSL_CERT_FILE"] = str(path)
    try:
        yield
    finally:
        if previous is None:
            del os.environ["SSL_CERT_FILE"]
        else:
            os.environ["SSL_CERT_FILE"] = previous


def probe(lab: Lab, scenario: Scenario, *, strict: bool, **options: Any) -> Outcome:
    """Probe with the trust the scenario names: --ca-file or SSL_CERT_FILE."""
    if scenario.trust == "system-env":
        with ssl_cert_file(lab.system_plus_internal):
            context = client_context(None, strict=strict)
    else:
        context = client_context(lab.ca_bundle, strict=strict)
    return fetch(scenario, context, **options)


def served_by_openssl(scenario: Scenario) -> list[x509.Certificate]:
    """Return the chain `openssl s_client -showcerts` receives, leaf first."""
    assert OPENSSL is not None
    command = [
        OPENSSL,
        "s_client",
        "-connect",
        f"127.0.0.1:{scenario.port}",
        "-showcerts",
        # Level 0 lets s_client finish TLS 1.0 and weak chains, so it can print them.
        "-cipher",
        "DEFAULT:@SECLEVEL=0",
    ]
    if scenario.host == "localhost":
        command += ["-servername", "localhost"]
    completed = subprocess.run(  # noqa: S603 - fixed arguments and a lab port
        command, stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False
    )
    blocks = PEM_CERTIFICATE.findall(completed.stdout)
    return [x509.load_pem_x509_certificate(block) for block in blocks]


def chain_of(scenario: Scenario) -> list[x509.Certificate]:
    """Parse the scenario's served chain, leaf first."""
    return [x509.load_der_x509_certificate(der) for der in scenario.served_chain]


def load_bundle(path: Path) -> list[x509.Certificate]:
    """Parse every certificate of a PEM bundle."""
    with warnings.catch_warnings():
        # System bundles still carry old roots with a serial number of 0 or less,
        # which cryptography parses with a deprecation warning.
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        return x509.load_pem_x509_certificates(path.read_bytes())


def extension(
    certificate: x509.Certificate, kind: type[x509.ExtensionType]
) -> x509.Extension[Any] | None:
    """Return the certificate's extension of that type, or None."""
    try:
        return certificate.extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        return None


def dns_names(certificate: x509.Certificate) -> list[str]:
    """Return the DNS names of the SAN extension."""
    found = extension(certificate, x509.SubjectAlternativeName)
    return [] if found is None else found.value.get_values_for_type(x509.DNSName)


# --- catalogue --------------------------------------------------------------------


def test_catalogue_names_unique_kebab_case() -> None:
    catalogue = names()
    assert len(catalogue) == len(set(catalogue))
    for name in catalogue:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name), name


def test_verify_code_table_covers_catalogue() -> None:
    assert sorted(STDLIB_VERIFY_CODES) == sorted(names(hostile=False))


def test_scenarios_in_catalogue_order(lab: Lab) -> None:
    assert [s.name for s in lab.scenarios] == names(hostile=False)
    assert all(not s.hostile for s in lab.scenarios)
    assert all("\n" not in s.description for s in lab.scenarios)


def test_scenario_ports_are_distinct(lab: Lab) -> None:
    ports = [s.port for s in lab.scenarios]
    assert len(ports) == len(set(ports))
    assert lab.scenario("good").target == f"localhost:{lab.scenario('good').port}"


def test_scenario_lookup_names_missing(lab: Lab) -> None:
    with pytest.raises(KeyError, match="no-such-scenario"):
        lab.scenario("no-such-scenario")


def test_lab_rejects_unknown_name() -> None:
    with pytest.raises(ValueError, match="no-such-scenario"):
        Lab(names=["good", "no-such-scenario"])


def test_selected_names_follow_catalogue_order() -> None:
    with Lab(names=["wrong-order", "good"]) as running:
        assert [s.name for s in running.scenarios] == ["good", "wrong-order"]


# --- verdicts of the stdlib ---------------------------------------------------------


@pytest.mark.parametrize("name", names(hostile=False))
def test_stdlib_lenient_verdict(lab: Lab, name: str) -> None:
    scenario = lab.scenario(name)
    outcome = probe(lab, scenario, strict=False)
    assert outcome.verify_code == STDLIB_VERIFY_CODES[name][0]
    assert outcome.reason == (scenario.lenient or scenario.expect)


@pytest.mark.parametrize("name", names(hostile=False))
def test_stdlib_strict_verdict(lab: Lab, name: str) -> None:
    scenario = lab.scenario(name)
    outcome = probe(lab, scenario, strict=True)
    assert outcome.verify_code == STDLIB_VERIFY_CODES[name][1]
    assert outcome.reason == scenario.expect


def test_good_answers_http(lab: Lab) -> None:
    outcome = probe(lab, lab.scenario("good"), strict=True)
    head, _, body = outcome.response.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    assert f"Content-Length: {len(body)}".encode() in lines
    assert b"Connection: close" in lines
    assert body == b"comparer lab: good\n"


def test_good_head_has_no_body(lab: Lab) -> None:
    scenario = lab.scenario("good")
    request = b"HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n"
    context = client_context(lab.ca_bundle, strict=True)
    outcome = fetch(scenario, context, request=request)
    assert outcome.response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert outcome.response.endswith(b"\r\n\r\n")


def test_good_fails_without_lab_roots(lab: Lab) -> None:
    outcome = fetch(lab.scenario("good"), client_context(None, strict=True))
    assert outcome.reason is Reason.UNKNOWN_ISSUER


def test_good_serves_ipv6_loopback(lab: Lab) -> None:
    try:
        bind_loopback("::1").close()
    except OSError:
        pytest.skip("this host has no IPv6 loopback")
    context = client_context(lab.ca_bundle, strict=True)
    outcome = fetch(lab.scenario("good"), context, address="::1")
    assert outcome.reason is Reason.OK


def test_internal_root_needs_ssl_cert_file(lab: Lab) -> None:
    scenario = lab.scenario("internal-root")
    with_bundle = fetch(scenario, client_context(lab.ca_bundle, strict=True))
    assert with_bundle.reason is Reason.UNKNOWN_ISSUER
    assert probe(lab, scenario, strict=True).reason is Reason.OK


def test_tls1_only_refuses_tls12(lab: Lab) -> None:
    outcome = probe(lab, lab.scenario("tls1-only"), strict=False)
    assert outcome.reason is Reason.PROTOCOL


def test_tls1_only_speaks_tls11(lab: Lab) -> None:
    context = client_context(lab.ca_bundle, strict=True)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        # Python 3.10 deprecated TLS 1.0 and 1.1, but this client allows them.
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
    outcome = fetch(lab.scenario("tls1-only"), context)
    assert outcome.reason is Reason.OK
    assert outcome.version == "TLSv1.1"


# --- what the servers send -----------------------------------------------------------


needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command")


@needs_openssl
@pytest.mark.parametrize("name", names(hostile=False))
def test_openssl_receives_served_chain(lab: Lab, name: str) -> None:
    scenario = lab.scenario(name)
    received = served_by_openssl(scenario)
    assert [c.public_bytes(serialization.Encoding.DER) for c in received] == list(
        scenario.served_chain
    )


def test_missing_intermediate_serves_leaf_only(lab: Lab) -> None:
    assert len(lab.scenario("missing-intermediate").served_chain) == 1
    assert len(lab.scenario("good").served_chain) == 2


def test_wrong_order_reverses_intermediates(lab: Lab) -> None:
    leaf, first, second = chain_of(lab.scenario("wrong-order"))
    assert leaf.issuer == second.subject
    assert second.issuer == first.subject
    roots = {root.subject for root in load_bundle(lab.ca_bundle)}
    assert first.issuer in roots


def test_cn_only_has_no_san(lab: Lab) -> None:
    leaf = chain_of(lab.scenario("cn-only"))[0]
    assert extension(leaf, x509.SubjectAlternativeName) is None
    common_names = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [a.value for a in common_names] == ["localhost"]


def test_no_aki_leaf_lacks_aki(lab: Lab) -> None:
    leaf, intermediate = chain_of(lab.scenario("no-aki"))
    assert extension(leaf, x509.AuthorityKeyIdentifier) is None
    assert extension(intermediate, x509.AuthorityKeyIdentifier) is not None
    good_leaf = chain_of(lab.scenario("good"))[0]
    assert extension(good_leaf, x509.AuthorityKeyIdentifier) is not None


def test_sha1_intermediate_signed_with_sha1(lab: Lab) -> None:
    leaf, intermediate = chain_of(lab.scenario("sha1-intermediate"))
    assert isinstance(intermediate.signature_hash_algorithm, hashes.SHA1)
    assert isinstance(leaf.signature_hash_algorithm, hashes.SHA256)
    good_intermediate = chain_of(lab.scenario("good"))[1]
    assert isinstance(good_intermediate.signature_hash_algorithm, hashes.SHA256)


def test_rsa_1024_leaf_key_size(lab: Lab) -> None:
    key = chain_of(lab.scenario("rsa-1024-leaf"))[0].public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    assert key.key_size == 1024


def test_self_signed_leaf_issues_itself(lab: Lab) -> None:
    (leaf,) = chain_of(lab.scenario("self-signed-leaf"))
    assert leaf.issuer == leaf.subject
    constraints = extension(leaf, x509.BasicConstraints)
    assert constraints is not None
    assert constraints.value.ca is False


def test_hostname_mismatch_names_other_host(lab: Lab) -> None:
    leaf = chain_of(lab.scenario("hostname-mismatch"))[0]
    assert dns_names(leaf) == ["wrong.invalid"]
    assert "localhost" in dns_names(chain_of(lab.scenario("good"))[0])


def test_san_defects(lab: Lab) -> None:
    wildcard = chain_of(lab.scenario("wildcard-apex"))[0]
    assert dns_names(wildcard) == ["*.localhost"]

    ip_only = chain_of(lab.scenario("ip-san-only"))[0]
    san = extension(ip_only, x509.SubjectAlternativeName)
    assert san is not None
    assert dns_names(ip_only) == []
    assert [str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)] == [
        "127.0.0.1",
        "::1",
    ]

    ip_as_dns = chain_of(lab.scenario("ip-in-dns-san"))[0]
    assert dns_names(ip_as_dns) == ["127.0.0.1"]


def test_extension_defects(lab: Lab) -> None:
    eku_leaf = chain_of(lab.scenario("client-auth-eku"))[0]
    eku = extension(eku_leaf, x509.ExtendedKeyUsage)
    assert eku is not None
    assert list(eku.value) == [ExtendedKeyUsageOID.CLIENT_AUTH]

    unknown_leaf = chain_of(lab.scenario("unknown-critical-extension"))[0]
    unknown = [e for e in unknown_leaf.extensions if e.critical]
    assert any(isinstance(e.value, x509.UnrecognizedExtension) for e in unknown)

    constrained = chain_of(lab.scenario("name-constraints"))[1]
    constraints = extension(constrained, x509.NameConstraints)
    assert constraints is not None
    assert constraints.critical
    assert constraints.value.permitted_subtrees == [x509.DNSName("example.com")]

    good_leaf = chain_of(lab.scenario("good"))[0]
    good_eku = extension(good_leaf, x509.ExtendedKeyUsage)
    assert good_eku is not None
    assert list(good_eku.value) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_validity_windows(lab: Lab) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    expired = chain_of(lab.scenario("expired-leaf"))[0]
    assert expired.not_valid_after_utc < now
    future = chain_of(lab.scenario("not-yet-valid-leaf"))[0]
    assert future.not_valid_before_utc > now
    expired_intermediate = chain_of(lab.scenario("expired-intermediate"))[1]
    assert expired_intermediate.not_valid_after_utc < now


def test_bundle_roots(lab: Lab) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    roots = {root.subject: root for root in load_bundle(lab.ca_bundle)}
    assert len(roots) == 3

    soon = roots[chain_of(lab.scenario("root-expires-soon"))[1].issuer]
    remaining = soon.not_valid_after_utc - now
    assert dt.timedelta(days=19) < remaining <= dt.timedelta(days=20)

    expired = roots[chain_of(lab.scenario("expired-root"))[1].issuer]
    assert expired.not_valid_after_utc < now


def test_untrusted_and_internal_roots_stay_out(lab: Lab) -> None:
    bundle = {root.subject for root in load_bundle(lab.ca_bundle)}
    untrusted = chain_of(lab.scenario("untrusted-root"))[1].issuer
    internal = chain_of(lab.scenario("internal-root"))[1].issuer
    assert untrusted not in bundle
    assert internal not in bundle

    system_plus = {c.subject for c in load_bundle(lab.system_plus_internal)}
    assert internal in system_plus
    assert untrusted not in system_plus
    assert internal not in {c.subject for c in load_bundle(Path(certifi.where()))}


def test_system_plus_internal_keeps_system_roots(lab: Lab) -> None:
    system_file = ssl.get_default_verify_paths().cafile
    if not system_file:
        pytest.skip("this host has no default CA file")
    system = load_bundle(Path(system_file))
    combined = load_bundle(lab.system_plus_internal)
    assert combined[: len(system)] == system
    assert len(combined) == len(system) + 1


def test_certificate_authorities_well_formed(lab: Lab) -> None:
    authorities: list[tuple[str, x509.Certificate]] = [
        ("ca-bundle", root) for root in load_bundle(lab.ca_bundle)
    ]
    for scenario in lab.scenarios:
        authorities += [(scenario.name, c) for c in chain_of(scenario)[1:]]
    for name, authority in authorities:
        constraints = extension(authority, x509.BasicConstraints)
        assert constraints is not None, name
        assert constraints.value.ca, name
        assert constraints.critical is (name != "ca-bc-not-critical"), name
        key_usage = extension(authority, x509.KeyUsage)
        assert key_usage is not None, name
        assert key_usage.critical, name
        assert key_usage.value.key_cert_sign, name
        assert extension(authority, x509.SubjectKeyIdentifier) is not None, name
        if authority.issuer != authority.subject:
            assert extension(authority, x509.AuthorityKeyIdentifier) is not None, name


def test_leaves_well_formed(lab: Lab) -> None:
    for scenario in lab.scenarios:
        leaf = chain_of(scenario)[0]
        has_aki = extension(leaf, x509.AuthorityKeyIdentifier) is not None
        has_san = extension(leaf, x509.SubjectAlternativeName) is not None
        assert has_aki is (scenario.name not in {"no-aki", "self-signed-leaf"})
        assert has_san is (scenario.name != "cn-only")


def test_private_files(lab: Lab) -> None:
    assert stat.S_IMODE(lab.directory.stat().st_mode) == 0o700
    for path in lab.directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
        assert b"PRIVATE KEY" not in path.read_bytes(), path.name


# --- hostile endpoints ---------------------------------------------------------------


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_verdict(hostile_lab: Lab, name: str) -> None:
    scenario = hostile_lab.scenario(name)
    assert scenario.hostile
    outcome = probe(hostile_lab, scenario, strict=True, timeout=1.5)
    assert outcome.reason == scenario.expect


def test_plain_http_answers_plain_request(hostile_lab: Lab) -> None:
    port = hostile_lab.scenario("plain-http").port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 200 OK\r\n")


def client_hello() -> bytes:
    """Return the first flight of a real TLS client."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(
        incoming, outgoing, server_hostname="localhost"
    )
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_trickle_sends_one_byte_at_a_time(hostile_lab: Lab) -> None:
    port = hostile_lab.scenario("trickle").port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(client_hello())
        first = sock.recv(100)
        started = time.monotonic()
        second = sock.recv(100)
        gap = time.monotonic() - started
    assert first == b"\x16"  # a handshake record begins
    assert len(second) == 1
    assert gap > TRICKLE_INTERVAL / 2


def test_long_chain_sends_100_certificates(hostile_lab: Lab) -> None:
    scenario = hostile_lab.scenario("long-chain")
    assert len(scenario.served_chain) == 100
    if OPENSSL is not None:
        assert len(served_by_openssl(scenario)) == 100


def test_oversized_certificate_size(hostile_lab: Lab) -> None:
    leaf_der = hostile_lab.scenario("oversized-certificate").served_chain[0]
    assert len(leaf_der) > 100 * 1024
    key = x509.load_der_x509_certificate(leaf_der).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    assert key.key_size == 8192


def test_client_certificate_accepted_when_sent(hostile_lab: Lab) -> None:
    context = client_context(hostile_lab.ca_bundle, strict=True)
    context.load_cert_chain(hostile_lab.client_certificate)
    outcome = fetch(hostile_lab.scenario("client-certificate"), context)
    assert outcome.reason is Reason.OK
    assert outcome.response.startswith(b"HTTP/1.1 200 OK\r\n")


# --- life cycle ---------------------------------------------------------------------


def lab_threads() -> list[threading.Thread]:
    """Return the running threads that the lab starts."""
    return [t for t in threading.enumerate() if t.name == "comparer-lab"]


def test_stop_releases_everything() -> None:
    before = len(lab_threads())
    running = Lab(names=["good"])
    running.start()
    directory = running.directory
    port = running.scenario("good").port
    assert len(lab_threads()) == before + 1

    running.stop()
    assert not directory.exists()
    assert len(lab_threads()) == before
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_bind_loopback_rejects_other_addresses() -> None:
    for address in ("0.0.0.0", "192.0.2.1", "::", "localhost"):
        with pytest.raises(ValueError, match="loopback"):
            bind_loopback(address)
    bind_loopback("127.0.0.1").close()


# --- command line ---------------------------------------------------------------------


def start_command(*arguments: str) -> subprocess.Popen[str]:
    """Start `comparer lab` in a subprocess with a wide, colourless console."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.Popen(  # noqa: S603 - the test's own interpreter and arguments
        [sys.executable, "-m", "comparer", "lab", *arguments],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def read_until(stream: IO[str], last: str, limit: int = 500) -> list[str]:
    """Read lines up to and including the first line that starts with `last`."""
    lines = []
    for _ in range(limit):
        line = stream.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith(last):
            return lines
    raise AssertionError(f"output ended before {last!r}: {''.join(lines)!r}")


@pytest.fixture
def command() -> Iterator[list[subprocess.Popen[str]]]:
    """Collect started commands and kill any that a failing test left running."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def test_command_json_sigint(command: list[subprocess.Popen[str]]) -> None:
    process = start_command("--json", "--only", "good,expired-leaf")
    command.append(process)
    assert process.stdout is not None
    catalogue = json.loads("".join(read_until(process.stdout, "}")))
    assert [s["name"] for s in catalogue["scenarios"]] == ["good", "expired-leaf"]
    assert catalogue["scenarios"][1]["expect"] == "expired"

    good = catalogue["scenarios"][0]
    scenario = Scenario(
        name="good",
        description="",
        host=good["host"],
        port=good["port"],
        expect=Reason.OK,
    )
    context = client_context(Path(catalogue["ca_bundle"]), strict=True)
    assert fetch(scenario, context).reason is Reason.OK

    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "PRIVATE KEY" not in stdout
    assert not Path(catalogue["ca_bundle"]).parent.exists()


def test_command_table_sigterm(command: list[subprocess.Popen[str]]) -> None:
    process = start_command("--only", "good,internal-root")
    command.append(process)
    assert process.stdout is not None
    text = "".join(read_until(process.stdout, "Press Ctrl-C"))
    assert re.search(r"good\s+│\s+https://localhost:\d+\s+│\s+ok", text), text
    assert "--ca-file" in text
    assert "SSL_CERT_FILE=" in text
    assert "PRIVATE KEY" not in text

    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr


def test_command_rejects_unknown_name() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "comparer", "lab", "--only", "good,bogus"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2
    assert completed.stdout == ""
    lines = completed.stderr.splitlines()
    assert len(lines) == 1
    assert "'bogus'" in lines[0]
