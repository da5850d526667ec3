"""Tests of the in-image probe: probe.py on the host, then real containers and images.

The container tests need a Docker engine (scripts/start-docker.sh) and the images of
docker/build-test-images.sh. Without them they are skipped, except under CI=true, where
a missing engine or image fails the run instead of hiding it.
"""

# ruff: noqa: S603 - the tests run engines and tools with argument lists they build

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shlex
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography import x509

from comparer import engine as engines
from comparer import images, reasons
from comparer.errors import UsageError
from comparer.lab import Lab
from comparer.model import ProbeResult, Reason, Target
from comparer.stacks.base import ProbeSettings
from comparer.targets import parse_target

PROBE = Path(__file__).resolve().parent.parent / "docker" / "probe.py"
BULLSEYE = "comparer-test/bullseye:1"
BOOKWORM = "comparer-test/bookworm:1"
TRIXIE = "comparer-test/trixie:1"
NOPYTHON = "comparer-test/nopython:1"
TEST_IMAGES = [BULLSEYE, BOOKWORM, TRIXIE, NOPYTHON]
SCENARIOS = [
    "good",
    "expired-intermediate",
    "no-aki",
    "cn-only",
    "ip-in-dns-san",
    "hostname-mismatch",
    "internal-root",
]
# Variables that would change which trust anchors a stack loads.
TRUST_VARIABLES = (
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
)


def load_probe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("probe_under_test", PROBE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


probe = load_probe()


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(names=SCENARIOS) as running:
        yield running


def target_of(lab: Lab, name: str) -> Target:
    return parse_target(lab.scenario(name).target)


# --- the reason tables --------------------------------------------------------------


def test_verify_codes_match_host_table() -> None:
    for code in range(0, 256):
        host = reasons.reason_for_verify_code(code).value
        assert probe.reason_for_verify_code(code) == host, f"verify code {code}"


def test_ssl_reasons_match_host_table() -> None:
    host = {name: reason.value for name, reason in reasons.SSL_REASONS.items()}
    assert host == probe.SSL_REASONS


def test_every_probe_reason_is_a_host_reason() -> None:
    values = set(probe.VERIFY_CODES.values()) | set(probe.SSL_REASONS.values())
    values |= {"timeout", "connect", "error", "protocol"}
    assert values <= {reason.value for reason in Reason}


# --- probe.py run by the host Python, no container ----------------------------------


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in TRUST_VARIABLES}


def run_probe(
    targets: list[dict[str, Any]],
    *,
    ca_file: Path | None,
    timeout: float = 5.0,
    args: tuple[str, ...] = (),
) -> tuple[dict[str, Any], dict[tuple[str, str], dict[str, Any]]]:
    request = {
        "targets": targets,
        "timeout": timeout,
        "ca_file": str(ca_file) if ca_file else None,
    }
    completed = subprocess.run(
        [sys.executable, str(PROBE), *args],
        input=json.dumps(request).encode() + b"\n",
        capture_output=True,
        timeout=120,
        env=clean_env(),
        check=False,
    )
    assert completed.returncode == 0, completed.stderr.decode()
    lines = [json.loads(line) for line in completed.stdout.decode().splitlines()]
    facts = lines[0]["facts"]
    results = {(line["key"], line["stack"]): line for line in lines[1:]}
    return facts, results


def request_target(target: Target, address: str | None = None) -> dict[str, Any]:
    return {
        "key": target.key + (address or ""),
        "host": target.host,
        "port": target.port,
        "path": target.path,
        "address": address or target.address,
    }


HOST_STACKS = [
    f"stdlib-py{sys.version_info[0]}.{sys.version_info[1]}",
    "requests",
    "httpx",
    "aiohttp",
    "openssl",
]


def test_probe_on_host_accepts_good_with_ca_file(lab: Lab) -> None:
    target = request_target(target_of(lab, "good"))
    _, results = run_probe([target], ca_file=lab.ca_bundle)
    for stack in HOST_STACKS:
        line = results[(target["key"], stack)]
        assert line["reason"] == "ok", (stack, line)
        assert line["ok"] is True
        assert line["tls_version"] in ("TLSv1.2", "TLSv1.3"), (stack, line)


def test_probe_on_host_rejects_good_without_ca_file(lab: Lab) -> None:
    target = request_target(target_of(lab, "good"))
    _, results = run_probe([target], ca_file=None)
    for stack in HOST_STACKS:
        line = results[(target["key"], stack)]
        assert line["reason"] == "unknown-issuer", (stack, line)
        assert line["verify_code"] == 20
        assert line["ok"] is False


def test_probe_on_host_expired_intermediate(lab: Lab) -> None:
    target = request_target(target_of(lab, "expired-intermediate"))
    _, results = run_probe([target], ca_file=lab.ca_bundle)
    for stack in HOST_STACKS:
        line = results[(target["key"], stack)]
        assert line["reason"] == "expired", (stack, line)
        assert line["verify_code"] == 10


def test_probe_on_host_hostname_mismatch(lab: Lab) -> None:
    target = request_target(target_of(lab, "hostname-mismatch"))
    _, results = run_probe([target], ca_file=lab.ca_bundle)
    for stack in HOST_STACKS:
        assert results[(target["key"], stack)]["reason"] == "hostname-mismatch", stack


def test_probe_on_host_pins_address(lab: Lab) -> None:
    good = target_of(lab, "good")
    # The lab listens on 127.0.0.1 and ::1 only, so pinning localhost to 127.0.0.2
    # must fail in every stack, the HTTP clients included, while the unpinned twin
    # in the same request succeeds.
    pinned = request_target(good, address="127.0.0.2")
    direct = request_target(good)
    _, results = run_probe([pinned, direct], ca_file=lab.ca_bundle)
    for stack in HOST_STACKS:
        assert results[(pinned["key"], stack)]["reason"] == "connect", stack
        assert results[(direct["key"], stack)]["reason"] == "ok", stack


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_probe_on_host_refused_port() -> None:
    target = {"key": "refused", "host": "127.0.0.1", "port": free_port(), "path": "/"}
    _, results = run_probe([target], ca_file=None)
    for stack in HOST_STACKS:
        assert results[("refused", stack)]["reason"] == "connect", stack


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accept TCP connections on loopback and never send a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for sock in accepted:
        sock.close()
    listener.close()


def test_probe_on_host_silent_server_times_out(silent_server: int) -> None:
    target = {"key": "silent", "host": "127.0.0.1", "port": silent_server, "path": "/"}
    _, results = run_probe([target], ca_file=None, timeout=1.0)
    for stack in HOST_STACKS:
        line = results[("silent", stack)]
        assert line["reason"] == "timeout", (stack, line)
        assert line["elapsed_ms"] < 10_000


def test_probe_on_host_stack_option(lab: Lab) -> None:
    target = request_target(target_of(lab, "good"))
    facts, results = run_probe(
        [target], ca_file=lab.ca_bundle, args=("--stack", "httpx")
    )
    assert [stack["name"] for stack in facts["stacks"]] == ["httpx"]
    assert list(results) == [(target["key"], "httpx")]


@pytest.mark.parametrize(
    "request_line", [b"not json\n", b'{"targets": [{"host": "x"}]}\n']
)
def test_probe_rejects_malformed_request(request_line: bytes) -> None:
    completed = subprocess.run(
        [sys.executable, str(PROBE)],
        input=request_line,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2
    assert completed.stdout == b""
    assert b"invalid request on stdin" in completed.stderr


def test_probe_facts_on_host() -> None:
    facts, _ = run_probe([], ca_file=None)
    assert facts["python"] == sys.version.split()[0]
    assert facts["ssl"] == __import__("ssl").OPENSSL_VERSION
    assert facts["modules"]["httpx"] == __import__("httpx").__version__
    assert facts["openssl_cli"].startswith("OpenSSL ")
    bundle = facts["default_bundle"]
    if bundle is not None:
        text = Path(bundle["path"]).read_text(errors="replace")
        assert bundle["certificates"] == text.count("-----BEGIN CERTIFICATE-----")


def test_der_not_after_matches_cryptography(lab: Lab) -> None:
    pem = lab.ca_bundle.read_bytes()
    for certificate in x509.load_pem_x509_certificates(pem):
        der = certificate.public_bytes(encoding=_der_encoding())
        expected = certificate.not_valid_after_utc.strftime("%Y-%m-%d")
        assert probe.der_not_after(der) == expected


def _der_encoding() -> Any:
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


def test_der_not_after_rejects_garbage() -> None:
    assert probe.der_not_after(b"\x30\x03\x02\x01") is None


def test_rpm_header_strings_reads_name_and_version() -> None:
    import struct

    # An rpm header blob: entry count, data size, 16-byte entries, then the data.
    data = b"ca-certificates\x002024.2.69\x001.el9\x00"
    entries = [(1000, 6, 0), (1001, 6, 16), (1002, 6, 26)]
    blob = struct.pack(">ii", len(entries), len(data))
    for tag, kind, offset in entries:
        blob += struct.pack(">iiii", tag, kind, offset, 1)
    blob += data
    tags = probe.rpm_header_strings(blob, (1000, 1001, 1002))
    assert tags == {1000: "ca-certificates", 1001: "2024.2.69", 1002: "1.el9"}
    assert probe.rpm_header_strings(blob[:20], (1000,)) == {}


def test_s_client_argv_for_ip_and_ca_file() -> None:
    target = {"host": "127.0.0.1", "port": 8443, "address": None}
    argv = probe.s_client_argv("openssl", "OpenSSL 1.1.1w", target, "/ca.pem")
    assert argv[:4] == ["openssl", "s_client", "-connect", "127.0.0.1:8443"]
    assert "-servername" not in argv
    assert argv[argv.index("-verify_ip") + 1] == "127.0.0.1"
    assert "-no-CAstore" not in argv
    newer = probe.s_client_argv("openssl", "OpenSSL 3.0.2", target, "/ca.pem")
    assert newer[-1] == "-no-CAstore"


# --- engine command line, no engine needed ------------------------------------------


def test_container_command_confines() -> None:
    spec = engines.ContainerSpec(
        engine="docker", image="debian:bookworm", argv=("true",), mounts=()
    )
    command = engines.container_command(spec)
    for option in ("--rm", "--read-only", "--interactive"):
        assert option in command
    assert command[command.index("--cap-drop") + 1] == "ALL"
    assert command[command.index("--security-opt") + 1] == "no-new-privileges"
    assert command[command.index("--network") + 1] == "host"
    assert command[-3:] == ["--", "debian:bookworm", "true"]


@pytest.mark.parametrize(
    "image", ["-v", "--privileged", "debian bookworm", "bad\nref", "tab\tref", ""]
)
def test_image_ref_rejected(image: str) -> None:
    with pytest.raises(UsageError):
        engines.check_image_ref(image)


def test_image_ref_accepted() -> None:
    assert engines.check_image_ref("registry:5000/team/app@sha256:ab") != ""


def test_pull_policy_rejected() -> None:
    with pytest.raises(UsageError, match="sometimes"):
        engines.check_pull_policy("sometimes")


def test_mount_with_comma_rejected(tmp_path: Path) -> None:
    source = tmp_path / "a,b"
    source.write_text("x")
    spec = engines.ContainerSpec(
        engine="docker", image="x", argv=(), mounts=((str(source), "/x"),)
    )
    with pytest.raises(UsageError, match="comma"):
        engines.container_command(spec)


def test_find_engine_missing_names_it() -> None:
    with pytest.raises(engines.EngineError, match="no-such-engine"):
        engines.find_engine("no-such-engine")


def test_probe_images_without_engine_names_each_image(lab: Lab) -> None:
    run = asyncio.run(
        images.probe_images(
            [BOOKWORM, TRIXIE],
            [target_of(lab, "good")],
            settings=ProbeSettings(timeout=2),
            engine="no-such-engine",
        )
    )
    assert len(run.errors) == 2
    assert BOOKWORM in run.errors[0]
    assert "no-such-engine" in run.errors[0]
    assert TRIXIE in run.errors[1]


def test_probe_images_rejects_option_like_image(lab: Lab) -> None:
    with pytest.raises(UsageError, match="--privileged"):
        asyncio.run(
            images.probe_images(
                ["--privileged"], [target_of(lab, "good")], settings=ProbeSettings()
            )
        )


# --- real containers ----------------------------------------------------------------


def _missing_prerequisite() -> str | None:
    try:
        engine = engines.find_engine()
    except engines.EngineError as exc:
        return str(exc)
    answered = subprocess.run(
        [engine, "info"], capture_output=True, timeout=60, check=False
    )
    if answered.returncode != 0:
        return f"{engine} does not answer; run scripts/start-docker.sh"
    for image in TEST_IMAGES:
        if not engines.image_exists(engine, image):
            return f"image {image} not found; run docker/build-test-images.sh"
    return None


@pytest.fixture(scope="module")
def engine() -> str:
    missing = _missing_prerequisite()
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    return engines.find_engine()


ResultTable = dict[str, dict[str, ProbeResult]]


def run_images(
    lab: Lab, *, ca_file: Path | None
) -> tuple[images.ImageRun, ResultTable]:
    targets = {name: target_of(lab, name) for name in SCENARIOS}
    run = asyncio.run(
        images.probe_images(
            TEST_IMAGES + ["comparer-test/absent:1"],
            list(targets.values()),
            settings=ProbeSettings(ca_file=ca_file, timeout=5),
            pull="never",
        )
    )
    table = {
        name: {result.column: result for result in run.results[target.key]}
        for name, target in targets.items()
    }
    return run, table


@pytest.fixture(scope="module")
def with_ca(engine: str, lab: Lab) -> tuple[images.ImageRun, ResultTable]:
    return run_images(lab, ca_file=lab.ca_bundle)


@pytest.fixture(scope="module")
def without_ca(engine: str, lab: Lab) -> tuple[images.ImageRun, ResultTable]:
    return run_images(lab, ca_file=None)


def column(image: str, stack: str) -> str:
    return f"image:{image}/{stack}"


@pytest.mark.docker
def test_image_stacks_and_versions(
    with_ca: tuple[images.ImageRun, ResultTable],
) -> None:
    run, _ = with_ca
    stacks = {info.column: info for info in run.stacks}
    assert set(stacks) == {
        column(BULLSEYE, "stdlib-py3.9"),
        column(BULLSEYE, "stdlib-py2.7"),
        column(BULLSEYE, "requests"),
        column(BULLSEYE, "openssl"),
        column(BOOKWORM, "stdlib-py3.11"),
        column(BOOKWORM, "requests"),
        column(BOOKWORM, "httpx"),
        column(BOOKWORM, "openssl"),
        column(TRIXIE, "stdlib-py3.13"),
        column(TRIXIE, "openssl"),
        column(NOPYTHON, "openssl"),
    }
    assert stacks[column(BULLSEYE, "openssl")].facts["ssl"].startswith("OpenSSL 1.1.1")
    assert stacks[column(BOOKWORM, "openssl")].facts["ssl"].startswith("OpenSSL 3.0.")
    assert stacks[column(TRIXIE, "openssl")].facts["ssl"].startswith("OpenSSL 3.5.")
    assert stacks[column(NOPYTHON, "openssl")].version.startswith("OpenSSL 3.0.")
    assert stacks[column(NOPYTHON, "openssl")].facts["python"] is None
    for info in run.stacks:
        assert info.trust is not None and info.trust.startswith("--ca-file"), info


@pytest.mark.docker
def test_image_missing_is_named(with_ca: tuple[images.ImageRun, ResultTable]) -> None:
    run, _ = with_ca
    expected = "image comparer-test/absent:1: not found locally; pull it or pass"
    assert run.errors == [expected + " --pull missing"]


@pytest.mark.docker
def test_image_no_aki_fails_only_in_python_313(
    with_ca: tuple[images.ImageRun, ResultTable],
) -> None:
    _, table = with_ca
    row = table["no-aki"]
    strict = row[column(TRIXIE, "stdlib-py3.13")]
    assert strict.reason is Reason.INVALID_CERTIFICATE
    assert strict.verify_code == 85
    assert row[column(TRIXIE, "openssl")].reason is Reason.OK
    assert row[column(BOOKWORM, "stdlib-py3.11")].reason is Reason.OK
    assert row[column(BULLSEYE, "stdlib-py3.9")].reason is Reason.OK
    assert row[column(BULLSEYE, "stdlib-py2.7")].reason is Reason.OK


@pytest.mark.docker
def test_image_good_passes_everywhere(
    with_ca: tuple[images.ImageRun, ResultTable],
) -> None:
    run, table = with_ca
    assert len(table["good"]) == len(run.stacks)
    for name, result in table["good"].items():
        assert result.reason is Reason.OK, (name, result.detail)
        assert result.ok


@pytest.mark.docker
def test_image_expired_intermediate_everywhere(
    with_ca: tuple[images.ImageRun, ResultTable],
) -> None:
    _, table = with_ca
    for name, result in table["expired-intermediate"].items():
        assert not result.ok, name
        if name == column(BULLSEYE, "stdlib-py2.7"):
            # Python 2.7's ssl module reports CERTIFICATE_VERIFY_FAILED without
            # the verify code, so the reason cannot be narrowed further.
            assert result.reason is Reason.INVALID_CERTIFICATE
            assert result.verify_code is None
        else:
            assert result.reason is Reason.EXPIRED, (name, result.detail)
            assert result.verify_code == 10


@pytest.mark.docker
def test_image_lab_root_unknown_without_ca_file(
    without_ca: tuple[images.ImageRun, ResultTable],
) -> None:
    run, table = without_ca
    assert len(table["good"]) == len(run.stacks)
    for name, result in table["good"].items():
        assert not result.ok, name
        if name == column(BULLSEYE, "stdlib-py2.7"):
            assert result.reason is Reason.INVALID_CERTIFICATE
        else:
            assert result.reason is Reason.UNKNOWN_ISSUER, (name, result.detail)
            assert result.verify_code == 20
    for info in run.stacks:
        assert info.trust is not None, info
        assert info.trust.startswith(("default", "certifi")), info


@pytest.mark.docker
def test_image_cn_only_splits_bookworm_clients(
    with_ca: tuple[images.ImageRun, ResultTable],
) -> None:
    _, table = with_ca
    row = table["cn-only"]
    # urllib3 1.26 (under requests in bullseye and bookworm) matches names itself and
    # falls back to the common name. httpx 0.23 sets hostname_checks_common_name off.
    assert row[column(BOOKWORM, "requests")].reason is Reason.OK
    assert row[column(BULLSEYE, "requests")].reason is Reason.OK
    assert row[column(BOOKWORM, "httpx")].reason is Reason.HOSTNAME_MISMATCH


@pytest.mark.docker
def test_image_python27_matches_ip_in_dns_san(
    with_ca: tuple[images.ImageRun, ResultTable],
) -> None:
    _, table = with_ca
    row = table["ip-in-dns-san"]
    assert row[column(BULLSEYE, "stdlib-py2.7")].reason is Reason.OK
    assert row[column(BULLSEYE, "stdlib-py3.9")].reason is Reason.HOSTNAME_MISMATCH


@pytest.mark.docker
def test_image_python27_facts(with_ca: tuple[images.ImageRun, ResultTable]) -> None:
    run, _ = with_ca
    info = {s.column: s for s in run.stacks}[column(BULLSEYE, "stdlib-py2.7")]
    assert info.facts["python"].startswith("2.7.")
    assert info.facts["os"]["version_id"] == "11"
    assert info.facts["ca_certificates"]["manager"] == "dpkg"


@pytest.mark.docker
def test_image_nopython_uses_openssl_fallback(
    with_ca: tuple[images.ImageRun, ResultTable],
) -> None:
    _, table = with_ca
    name = column(NOPYTHON, "openssl")
    assert table["good"][name].reason is Reason.OK
    assert table["good"][name].tls_version == "TLSv1.3"
    assert table["expired-intermediate"][name].verify_code == 10
    assert table["hostname-mismatch"][name].reason is Reason.HOSTNAME_MISMATCH


@pytest.mark.docker
def test_image_reproduce_command_runs(
    engine: str, lab: Lab, with_ca: tuple[images.ImageRun, ResultTable]
) -> None:
    _, table = with_ca
    reproduce = table["expired-intermediate"][column(TRIXIE, "openssl")].reproduce
    assert reproduce is not None
    assert reproduce.startswith("docker run --rm --network host -v ")
    assert reproduce.endswith(" </dev/null")
    argv = shlex.split(reproduce.removesuffix(" </dev/null"))
    completed = subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=60, check=False
    )
    assert completed.returncode != 0
    assert b"certificate has expired" in completed.stdout + completed.stderr


def copy_with_libraries(binary: str, root: Path) -> None:
    """Copy a host binary and the shared libraries that ldd lists into `root`."""
    listing = subprocess.run(
        ["ldd", binary], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    paths = [binary]
    for line in listing.splitlines():
        for word in line.split():
            if word.startswith("/"):
                paths.append(word.split("(")[0])
    for path in paths:
        destination = root / path.lstrip("/")
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(Path(path).read_bytes())
        destination.chmod(0o755)


@pytest.fixture
def shell_only_image(engine: str, tmp_path: Path) -> Iterator[str]:
    """Import an image that has /bin/sh and /bin/cat and nothing else."""
    root = tmp_path / "root"
    copy_with_libraries("/bin/dash", root)
    copy_with_libraries("/bin/cat", root)
    (root / "bin" / "dash").rename(root / "bin" / "sh")
    (root / "tmp").mkdir()
    image = "comparer-test/shell-only:1"
    tar = subprocess.run(
        ["tar", "-C", str(root), "-c", "."], capture_output=True, check=True
    )
    subprocess.run(
        [engine, "import", "-", image],
        input=tar.stdout,
        capture_output=True,
        check=True,
    )
    yield image
    subprocess.run([engine, "rmi", image], capture_output=True, check=False)


@pytest.mark.docker
def test_image_without_python_or_openssl(shell_only_image: str) -> None:
    run = asyncio.run(
        images.probe_images(
            [shell_only_image],
            [parse_target("localhost:1")],
            settings=ProbeSettings(timeout=2),
            pull="never",
        )
    )
    assert run.errors == []
    (result,) = run.results["localhost:1/@"]
    assert result.reason is Reason.UNAVAILABLE
    assert "neither" in result.detail
    assert [info.name for info in run.stacks] == ["probe"]


@pytest.mark.docker
def test_container_is_confined(engine: str) -> None:
    script = "cat /proc/self/status; touch /probe-write-test"
    completed = engines.run_container(
        engine, BOOKWORM, ["sh", "-c", script], network="none", timeout=60
    )
    status = completed.stdout.decode()
    assert "CapEff:\t0000000000000000" in status
    assert "NoNewPrivs:\t1" in status
    assert b"Read-only file system" in completed.stderr
    assert completed.returncode != 0


@pytest.mark.docker
def test_container_timeout_removes_container(engine: str) -> None:
    with pytest.raises(subprocess.TimeoutExpired):
        asyncio.run(
            engines.run_container_async(
                engine, BOOKWORM, ["sleep", "60"], network="none", timeout=3
            )
        )
    running = subprocess.run(
        [engine, "ps", "--quiet", "--filter", "ancestor=" + BOOKWORM],
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert running.stdout.strip() == b""


@pytest.mark.docker
def test_image_silent_server_times_out(engine: str, silent_server: int) -> None:
    target = parse_target(f"127.0.0.1:{silent_server}")
    run = asyncio.run(
        images.probe_images(
            [TRIXIE, NOPYTHON],
            [target],
            settings=ProbeSettings(timeout=1),
            pull="never",
        )
    )
    assert run.errors == []
    by_column = {result.column: result for result in run.results[target.key]}
    assert set(by_column) == {
        column(TRIXIE, "stdlib-py3.13"),
        column(TRIXIE, "openssl"),
        column(NOPYTHON, "openssl"),
    }
    for name, result in by_column.items():
        assert result.reason is Reason.TIMEOUT, (name, result.detail)


@pytest.mark.docker
def test_image_mount_host_certs(engine: str, lab: Lab) -> None:
    host_bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if not host_bundle.is_file():
        pytest.skip("the host has no /etc/ssl/certs/ca-certificates.crt")
    expected = host_bundle.read_text(errors="replace").count("BEGIN CERTIFICATE")
    run = asyncio.run(
        images.probe_images(
            [BOOKWORM],
            [target_of(lab, "good")],
            settings=ProbeSettings(timeout=5),
            pull="never",
            mount_host_certs=True,
        )
    )
    info = {s.column: s for s in run.stacks}[column(BOOKWORM, "stdlib-py3.11")]
    assert info.facts["default_bundle"]["certificates"] == expected
    assert info.trust is not None and f"{expected} roots" in info.trust


@pytest.mark.docker
def test_check_shows_image_disagreement(engine: str, lab: Lab) -> None:
    """trixie's Python 3.13 rejects the leaf without AKI; bookworm's 3.11 accepts it."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "comparer",
            "check",
            "--json",
            "--pull",
            "never",
            "--stacks",
            "stdlib",
            "--ca-file",
            str(lab.ca_bundle),
            "--image",
            BOOKWORM,
            "--image",
            TRIXIE,
            lab.scenario("no-aki").target,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr
    document = json.loads(done.stdout)
    (target,) = document["targets"]
    assert target["agree"] is False
    by_column = {(r["where"], r["stack"]): r for r in target["results"]}
    assert by_column[("host", "stdlib")]["ok"] is True
    assert by_column[(f"image:{BOOKWORM}", "stdlib-py3.11")]["ok"] is True
    strict = by_column[(f"image:{TRIXIE}", "stdlib-py3.13")]
    assert strict["reason"] == "invalid-certificate"
    assert strict["verify_code"] == 85
    wheres = {s["where"] for s in document["stacks"]}
    assert wheres == {"host", f"image:{BOOKWORM}", f"image:{TRIXIE}"}
    trixie_facts = next(
        s["facts"] for s in document["stacks"] if s["where"] == f"image:{TRIXIE}"
    )
    assert trixie_facts["openssl_cli"].startswith("OpenSSL 3.5")


@pytest.mark.docker
def test_store_explanation_merges_stacks(engine: str, lab: Lab) -> None:
    """Host stacks that accept for the same store get one sentence, not four."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"}
    }
    env["SSL_CERT_FILE"] = str(lab.system_plus_internal)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "comparer",
            "check",
            "--json",
            "--pull",
            "never",
            "--image",
            BOOKWORM,
            lab.scenario("internal-root").target,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    (target,) = json.loads(done.stdout)["targets"]
    (explanation,) = target["explanations"]
    assert explanation["stacks"] == ["openssl", "stdlib", "httpx", "aiohttp"]
    assert explanation["text"].startswith("openssl, stdlib, httpx and aiohttp use ")
    assert "audit them with comparer bundle --image" in explanation["text"]
