"""One name, several backends on 127.0.0.0/8: per-address rows, pinning and SNI.

Every backend listens on the same port of its own loopback address and serves its own
chain for the name svc.example, which only --resolve and --connect-to make reachable
(no DNS query leaves the machine). Each backend records the SNI of every handshake,
so a test can tell which backend a stack reached and what name it sent.
"""

from __future__ import annotations

import asyncio
import datetime
import errno
import ipaddress
import json
import os
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cli_run import clean_env
from cryptography import x509

from comparer.addresses import backend_chain, plan_addresses
from comparer.errors import UsageError
from comparer.lab import Lab
from comparer.lab.pki import (
    Authority,
    PrivateKey,
    make_intermediate,
    make_leaf,
    make_root,
    make_self_signed_leaf,
    new_ec_key,
    pem_certificates,
    pem_private_key,
    write_private,
)
from comparer.lab.server import LabServer, Site, bind_loopback
from comparer.model import ProbeResult, Reason, Target
from comparer.pinning import (
    PinOptions,
    parse_connect_to,
    parse_resolve,
    parse_sni,
    requests_pool_kwargs,
)
from comparer.stacks import DEFAULT_STACKS, get_stack
from comparer.stacks.base import ProbeSettings

NAME = "svc.example"
NOW = datetime.datetime.now(datetime.timezone.utc)
VALID = {
    "not_before": NOW - datetime.timedelta(hours=1),
    "not_after": NOW + datetime.timedelta(days=30),
}
# Stacks whose ssl module sends server_hostname as SNI and verifies that same name.
SNI_BOUND = {"stdlib", "httpx", "aiohttp"}


@dataclass
class Backends:
    """The backends of svc.example and what each one saw."""

    port: int
    other_port: int
    ca_bundle: Path
    seen: dict[str, list[str | None]] = field(default_factory=dict)

    def target(self, address: str | None = None, **options: Any) -> Target:
        return Target(
            raw=f"{NAME}:{self.port}",
            host=NAME,
            port=self.port,
            address=address,
            **options,
        )


def _names(*dns: str, ips: tuple[str, ...] = ()) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns]
    return names + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]


def _context(
    chain: list[x509.Certificate], key: PrivateKey, directory: Path
) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    chain_file, key_file = directory / "chain.pem", directory / "key.pem"
    write_private(chain_file, pem_certificates(chain))
    write_private(key_file, pem_private_key(key))
    try:
        context.load_cert_chain(chain_file, key_file)
    finally:
        chain_file.unlink()
        key_file.unlink()
    return context


def _leaf(issuer: Authority, names: list[x509.GeneralName]) -> tuple[Any, PrivateKey]:
    key = new_ec_key()
    return make_leaf(issuer, key, sans=names, common_name=NAME, **VALID), key


def _bind_same_port(addresses: list[str]) -> list[Any]:
    """Bind one free port on every address, retrying when another process has it."""
    for _ in range(20):
        first = bind_loopback(addresses[0])
        port = first.getsockname()[1]
        sockets = [first]
        try:
            for address in addresses[1:]:
                sockets.append(bind_loopback(address, port))
        except OSError as exc:
            for sock in sockets:
                sock.close()
            if exc.errno == errno.EADDRINUSE:
                continue
            raise
        return sockets
    raise OSError(errno.EADDRINUSE, "no port free on every backend address")


@pytest.fixture(scope="module")
def backends() -> Iterator[Backends]:
    """Start the backends of svc.example on 127.0.0.1-5 (one port) and 127.0.0.6."""
    root = make_root("address test root", **VALID)
    first = make_intermediate("address test intermediate A", root, **VALID)
    second = make_intermediate("address test intermediate B", root, **VALID)
    leaf_a, key_a = _leaf(first, _names(NAME))
    leaf_b, key_b = _leaf(second, _names(NAME))
    # The IP SAN makes a stack that checked the address instead of the name pass.
    wrong, wrong_key = _leaf(first, _names("other.example", ips=("127.0.0.3",)))
    default_key = new_ec_key()
    default = make_self_signed_leaf(default_key, **VALID)

    with tempfile.TemporaryDirectory(prefix="comparer-addresses-") as name:
        directory = Path(name)
        ca_bundle = directory / "root.pem"
        write_private(ca_bundle, pem_certificates([root.certificate]))
        contexts = {
            "a": _context([leaf_a, first.certificate], key_a, directory),
            "b": _context([leaf_b, second.certificate], key_b, directory),
            "wrong": _context([wrong, first.certificate], wrong_key, directory),
            "default": _context([default], default_key, directory),
            "same-as-a": _context([leaf_a, first.certificate], key_a, directory),
            "other-port": _context([leaf_a, first.certificate], key_a, directory),
        }
        by_sni = _context([leaf_a, first.certificate], key_a, directory)
        sockets = _bind_same_port([f"127.0.0.{n}" for n in range(1, 6)])
        other = bind_loopback("127.0.0.6")
        running = Backends(
            sockets[0].getsockname()[1], other.getsockname()[1], ca_bundle
        )

        def record(backend: str) -> Any:
            def callback(tls: Any, server_name: str | None, _: Any) -> None:
                running.seen.setdefault(backend, []).append(server_name)
                if backend == "default" and server_name == NAME:
                    tls.context = by_sni  # a name-based virtual host

            return callback

        for backend, context in contexts.items():
            context.sni_callback = record(backend)
        order = ["a", "b", "wrong", "default", "same-as-a"]
        sites = [
            Site(backend, "https", (sock,), contexts[backend])
            for backend, sock in zip(order, sockets, strict=True)
        ]
        sites.append(Site("other-port", "https", (other,), contexts["other-port"]))
        server = LabServer(sites)
        server.start()
        try:
            yield running
        finally:
            server.stop()


@pytest.fixture(autouse=True)
def _forget(backends: Backends, clean_tls_env: None) -> None:
    backends.seen.clear()


def probe(backends: Backends, stack: str, target: Target) -> ProbeResult:
    settings = ProbeSettings(ca_file=backends.ca_bundle, timeout=10)

    async def probe_and_settle() -> ProbeResult:
        result = await get_stack(stack).probe(target, settings)
        # aiohttp finishes closing a TLS transport shortly after its session has
        # closed. A loop that ends at once leaves the transport to the garbage
        # collector, whose ResourceWarning would fail whichever test runs next.
        await asyncio.sleep(0.05)
        return result

    return asyncio.run(probe_and_settle())


def check(backends: Backends, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "comparer", "check", "--ca-file"]
        + [str(backends.ca_bundle), "--timeout", "10", *args],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
    )


def check_json(backends: Backends, *args: str) -> dict[str, Any]:
    done = check(backends, "--json", *args)
    assert done.returncode in (0, 1), done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def rows_by_address(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["address"]: row for row in document["targets"]}


def reasons(row: dict[str, Any]) -> dict[str, str]:
    return {result["stack"]: result["reason"] for result in row["results"]}


# --- pinning in each stack ----------------------------------------------------------


@pytest.mark.parametrize("stack", DEFAULT_STACKS)
def test_resolve_reaches_the_backend_and_verifies_the_name(
    backends: Backends, stack: str
) -> None:
    result = probe(backends, stack, backends.target("127.0.0.2"))
    assert result.reason is Reason.OK, result.detail
    assert result.address == "127.0.0.2"
    assert backends.seen == {"b": [NAME]}


@pytest.mark.parametrize("stack", DEFAULT_STACKS)
def test_pin_to_wrong_name_backend_is_hostname_mismatch(
    backends: Backends, stack: str
) -> None:
    # The certificate there names other.example and 127.0.0.3: only a stack that
    # checked the address rather than svc.example would accept it.
    result = probe(backends, stack, backends.target("127.0.0.3"))
    assert result.reason is Reason.HOSTNAME_MISMATCH, result.detail
    assert backends.seen == {"wrong": [NAME]}


@pytest.mark.parametrize("stack", DEFAULT_STACKS)
def test_connect_to_other_port(backends: Backends, stack: str) -> None:
    target = backends.target("127.0.0.6", address_port=backends.other_port)
    result = probe(backends, stack, target)
    assert result.reason is Reason.OK, result.detail
    assert backends.seen == {"other-port": [NAME]}


@pytest.mark.parametrize("stack", DEFAULT_STACKS)
def test_connect_to_keeps_the_port_it_was_given(backends: Backends, stack: str) -> None:
    # Nothing listens on 127.0.0.6 at the backends' shared port.
    result = probe(backends, stack, backends.target("127.0.0.6"))
    assert result.reason is Reason.CONNECT, result.detail
    assert backends.seen == {}


# --- SNI ----------------------------------------------------------------------------


@pytest.mark.parametrize("stack", DEFAULT_STACKS)
def test_no_sni_gets_the_default_certificate(backends: Backends, stack: str) -> None:
    result = probe(backends, stack, backends.target("127.0.0.4", send_sni=False))
    if stack in SNI_BOUND:
        assert result.reason is Reason.UNAVAILABLE
        assert "server_hostname" in result.detail
        assert backends.seen == {}
    else:
        assert result.reason is Reason.SELF_SIGNED, result.detail
        assert backends.seen == {"default": [None]}


@pytest.mark.parametrize("stack", DEFAULT_STACKS)
def test_same_backend_with_sni_is_verified(backends: Backends, stack: str) -> None:
    result = probe(backends, stack, backends.target("127.0.0.4"))
    assert result.reason is Reason.OK, result.detail
    assert backends.seen == {"default": [NAME]}


@pytest.mark.parametrize("stack", ["openssl", "requests"])
def test_sni_changes_only_what_is_sent(backends: Backends, stack: str) -> None:
    # Backend a serves svc.example whatever the SNI: verified against the host.
    sent = probe(backends, stack, backends.target("127.0.0.1", sni="other.example"))
    assert sent.reason is Reason.OK, sent.detail
    assert backends.seen == {"a": ["other.example"]}
    # The twin: a certificate for other.example, the SNI sent, is still rejected.
    twin = probe(backends, stack, backends.target("127.0.0.3", sni="other.example"))
    assert twin.reason is Reason.HOSTNAME_MISMATCH, twin.detail


def test_requests_pool_kwargs() -> None:
    pinned = Target(raw=NAME, host=NAME, address="127.0.0.1")
    assert requests_pool_kwargs(pinned) == {"server_hostname": NAME}
    other = Target(raw=NAME, host=NAME, address="127.0.0.1", sni="other.example")
    assert requests_pool_kwargs(other) == {
        "server_hostname": "other.example",
        "assert_hostname": NAME,
    }


# --- the command line ---------------------------------------------------------------


def test_one_row_per_backend_flags_chain(
    backends: Backends,
) -> None:
    target = f"{NAME}:{backends.port}"
    resolve = f"{NAME}:{backends.port}:127.0.0.1,127.0.0.2"
    document = check_json(backends, target, "--resolve", resolve)
    rows = rows_by_address(document)
    assert list(rows) == ["127.0.0.1", "127.0.0.2"]
    for address, row in rows.items():
        assert row["host"] == NAME
        assert row["address_group"] == target
        assert set(reasons(row).values()) == {"ok"}
        assert {r["address"] for r in row["results"]} == {address}
    assert rows["127.0.0.1"]["backend_differs"] is False
    assert rows["127.0.0.2"]["backend_differs"] is True
    (finding,) = rows["127.0.0.2"]["findings"]
    assert finding["kind"] == "backend-differs"
    assert finding["compared_with"] == "127.0.0.1"
    (explanation,) = rows["127.0.0.2"]["explanations"]
    assert "intermediate B" in explanation["text"]
    assert "intermediate A" in explanation["text"]
    chains = [rows[a]["addresses"][0]["served_chain"] for a in rows]
    assert chains[0]["chain_sha256"] != chains[1]["chain_sha256"]
    assert document["summary"]["disagreements"] == 0


def test_table_marks_the_backend_that_differs(backends: Backends) -> None:
    target = f"{NAME}:{backends.port}"
    done = check(
        backends, target, "--resolve", f"{NAME}:{backends.port}:127.0.0.1,127.0.0.2"
    )
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if target in line]
    assert any("127.0.0.1 " + target in row for row in rows)
    assert any("◆ 127.0.0.2 " + target in row for row in rows)
    finding = f"{target} [◆ 127.0.0.2]: 127.0.0.2 serves "
    assert any(finding in line for line in done.stdout.splitlines())


def test_backends_that_agree_share_a_row(backends: Backends) -> None:
    resolve = f"{NAME}:{backends.port}:127.0.0.1,127.0.0.5"
    document = check_json(backends, f"{NAME}:{backends.port}", "--resolve", resolve)
    (row,) = document["targets"]
    assert row["label"] == "127.0.0.1, 127.0.0.5"
    assert row["backend_differs"] is False
    assert [a["address"] for a in row["addresses"]] == ["127.0.0.1", "127.0.0.5"]
    assert not row["findings"]


def test_lab_on_both_loopbacks_is_one_row(lab: Lab) -> None:
    # The lab serves each scenario on 127.0.0.1 and ::1 with one chain, which is
    # what "localhost" with both addresses in /etc/hosts reaches.
    good = lab.scenario("good")
    resolve = f"localhost:{good.port}:127.0.0.1,[::1]"
    done = subprocess.run(
        [sys.executable, "-m", "comparer", "check", "--json", "--ca-file"]
        + [str(lab.ca_bundle), good.target, "--resolve", resolve],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)["targets"]
    assert [a["address"] for a in row["addresses"]] == ["127.0.0.1", "::1"]
    assert row["backend_differs"] is False
    assert row["label"] == "127.0.0.1, [::1]"


def test_each_address_keeps_agreeing_rows_apart(backends: Backends) -> None:
    resolve = f"{NAME}:{backends.port}:127.0.0.1,127.0.0.5"
    document = check_json(
        backends, f"{NAME}:{backends.port}", "--resolve", resolve, "--each-address"
    )
    rows = rows_by_address(document)
    assert list(rows) == ["127.0.0.1", "127.0.0.5"]
    assert not any(row["backend_differs"] for row in rows.values())


def test_backend_with_another_verdict_is_explained(backends: Backends) -> None:
    resolve = f"{NAME}:{backends.port}:127.0.0.1,127.0.0.3"
    done = check(backends, "--json", f"{NAME}:{backends.port}", "--resolve", resolve)
    assert done.returncode == 1
    rows = rows_by_address(json.loads(done.stdout))
    assert set(reasons(rows["127.0.0.3"]).values()) == {"hostname-mismatch"}
    assert rows["127.0.0.3"]["backend_differs"] is True
    text = rows["127.0.0.3"]["explanations"][0]["text"]
    assert "the verdicts differ" in text
    assert "hostname-mismatch at 127.0.0.3, ok at 127.0.0.1" in text


def test_unreachable_address_is_a_note_by_default(backends: Backends) -> None:
    # Nothing listens on 127.0.0.9; clients fall back to 127.0.0.1.
    resolve = f"{NAME}:{backends.port}:127.0.0.9,127.0.0.1"
    target = f"{NAME}:{backends.port}"
    document = check_json(backends, target, "--resolve", resolve)
    (row,) = document["targets"]
    assert row["address"] == "127.0.0.1"
    assert [f["kind"] for f in row["findings"]] == ["address-unreachable"]
    each = check_json(backends, target, "--resolve", resolve, "--each-address")
    assert set(reasons(rows_by_address(each)["127.0.0.9"]).values()) == {"connect"}


def test_connect_to_in_every_stack(backends: Backends) -> None:
    target = f"{NAME}:{backends.port}"
    rule = f"{NAME}:{backends.port}:127.0.0.6:{backends.other_port}"
    (row,) = check_json(backends, target, "--connect-to", rule)["targets"]
    assert set(reasons(row).values()) == {"ok"}
    assert row["address"] == "127.0.0.6"
    assert set(backends.seen) == {"other-port"}
    openssl = next(r for r in row["results"] if r["stack"] == "openssl")
    assert f"-connect 127.0.0.6:{backends.other_port}" in openssl["reproduce"]
    assert f"-servername {NAME}" in openssl["reproduce"]
    wrong = f"{NAME}:{backends.port}:127.0.0.3:"
    (row,) = check_json(backends, target, "--connect-to", wrong)["targets"]
    assert set(reasons(row).values()) == {"hostname-mismatch"}


def test_no_sni_finding_names_both_chains(backends: Backends) -> None:
    target = f"{NAME}:{backends.port}"
    resolve = f"{NAME}:{backends.port}:127.0.0.4"
    (row,) = check_json(backends, target, "--resolve", resolve, "--no-sni")["targets"]
    assert reasons(row) == {
        "openssl": "self-signed",
        "stdlib": "unavailable",
        "requests": "self-signed",
        "httpx": "unavailable",
        "aiohttp": "unavailable",
    }
    kinds = {f["kind"]: f for f in row["findings"]}
    assert "self-signed" in kinds["sni-changes-chain"]["text"]
    assert "intermediate A" in kinds["sni-changes-chain"]["text"]
    (twin,) = check_json(backends, target, "--resolve", resolve)["targets"]
    assert set(reasons(twin).values()) == {"ok"}
    assert not twin["findings"]


def test_no_sni_on_a_server_without_virtual_hosts(backends: Backends) -> None:
    resolve = f"{NAME}:{backends.port}:127.0.0.1"
    (row,) = check_json(
        backends, f"{NAME}:{backends.port}", "--resolve", resolve, "--no-sni"
    )["targets"]
    assert [f["kind"] for f in row["findings"]] == ["sni-same-chain"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--resolve", "other.example:1:127.0.0.1"], "matches no target"),
        (["--resolve", "svc.example:1:not-an-ip"], "is not an IP address"),
        (["--sni", "other.example", "--no-sni"], "exclude each other"),
        (["--connect-to=-svc.example:1::2"], "starts with '-'"),
    ],
)
def test_bad_options_exit_two(args: list[str], fragment: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "comparer", "check", "svc.example:1", *args],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
    )
    assert done.returncode == 2
    assert fragment in done.stderr
    assert "Traceback" not in done.stderr


# --- parsing and planning -----------------------------------------------------------


def test_parse_resolve() -> None:
    rule = parse_resolve("svc.example:443:127.0.0.1,[::1],127.0.0.1")
    assert (rule.host, rule.port, rule.addresses) == (NAME, 443, ("127.0.0.1", "::1"))
    assert parse_resolve("svc.example:443:::1").addresses == ("::1",)


@pytest.mark.parametrize(
    "text", ["svc.example:443", "svc.example:x:127.0.0.1", "svc.example:443:", "-a:1:2"]
)
def test_parse_resolve_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_resolve(text)


def test_parse_connect_to() -> None:
    rule = parse_connect_to("svc.example:443:[::1]:8443")
    assert (rule.host, rule.port, rule.connect_host, rule.connect_port) == (
        NAME,
        443,
        "::1",
        8443,
    )
    anything = parse_connect_to("::127.0.0.2:")
    assert (anything.host, anything.port, anything.connect_host) == (
        None,
        None,
        "127.0.0.2",
    )
    with pytest.raises(UsageError):
        parse_connect_to("svc.example:443::")


def test_parse_sni() -> None:
    assert parse_sni("Other.Example") == "other.example"
    for bad in ("127.0.0.1", "a.example:443", "-servername"):
        with pytest.raises(UsageError):
            parse_sni(bad)


def test_plan_splits_pinned_name() -> None:
    options = PinOptions(resolve=(parse_resolve("svc.example:443:127.0.0.1,::1"),))
    targets = [Target(raw=NAME, host=NAME), Target(raw="127.0.0.1", host="127.0.0.1")]
    plan = asyncio.run(plan_addresses(targets, options, timeout=5))
    assert [m.address for m in plan.groups[0].members] == ["127.0.0.1", "::1"]
    assert plan.groups[1].members == [targets[1]]
    off = PinOptions(resolve=options.resolve, each_address=False)
    plan = asyncio.run(plan_addresses(targets[:1], off, timeout=5))
    assert [m.address for m in plan.targets] == ["127.0.0.1"]


def test_plan_resolves_localhost_to_loopback() -> None:
    plan = asyncio.run(
        plan_addresses(
            [Target(raw="localhost", host="localhost")], PinOptions(), timeout=5
        )
    )
    (group,) = plan.groups
    assert group.source == "dns"
    assert {m.address for m in group.members} <= {"127.0.0.1", "::1"}


def test_backend_chain_reads_every_certificate() -> None:
    key = new_ec_key()
    leaf = make_self_signed_leaf(key, **VALID)
    text = "CONNECTED\n" + pem_certificates([leaf]).decode() * 2 + "---\n"
    chain = backend_chain(text, name="test")
    assert chain is not None and len(chain.der) == 2
    assert "self-signed" in chain.describe()
    assert backend_chain("CONNECTED\nno peer certificate available\n", name="t") is None


# --- the in-image probe and the entry script, run on this host ----------------------

PROBE = Path(__file__).resolve().parent.parent / "docker" / "probe.py"
PYTHON27 = Path.home() / ".pyenv" / "versions" / "2.7.18" / "bin" / "python"
INTERPRETERS = [
    pytest.param(sys.executable, id="host-python"),
    pytest.param(
        str(PYTHON27),
        id="python2.7",
        marks=pytest.mark.skipif(not PYTHON27.exists(), reason="no Python 2.7 here"),
    ),
]


def image_request(backends: Backends, targets: list[Target]) -> bytes:
    from comparer.images import build_request

    settings = ProbeSettings(ca_file=backends.ca_bundle, timeout=10)
    return build_request(targets, settings, str(backends.ca_bundle))


def run_image_probe(
    python: str, backends: Backends, targets: list[Target]
) -> dict[tuple[str, str], str]:
    done = subprocess.run(
        [python, str(PROBE)],
        input=image_request(backends, targets),
        capture_output=True,
        env=clean_env(),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()
    lines = [json.loads(line) for line in done.stdout.decode().splitlines()[1:]]
    return {
        (line["key"], line["stack"].split("-py")[0]): line["reason"] for line in lines
    }


@pytest.mark.parametrize("python", INTERPRETERS)
def test_image_probe_pins_addresses_ports_and_sni(
    backends: Backends, python: str
) -> None:
    targets = {
        "b": backends.target("127.0.0.2"),
        "wrong": backends.target("127.0.0.3"),
        "port": backends.target("127.0.0.6", address_port=backends.other_port),
        "no-sni": backends.target("127.0.0.4", send_sni=False),
    }
    found = run_image_probe(python, backends, list(targets.values()))
    by_target: dict[str, dict[str, str]] = {}
    for (key, stack), reason in found.items():
        name = next(n for n, t in targets.items() if t.key == key)
        by_target.setdefault(name, {})[stack] = reason
    assert set(by_target["b"].values()) == {"ok"}
    assert "openssl" in by_target["b"]
    assert "stdlib" in by_target["b"]
    assert set(by_target["wrong"].values()) == {"hostname-mismatch"}
    assert set(by_target["port"].values()) == {"ok"}
    assert by_target["no-sni"].pop("openssl") == "self-signed"
    assert set(by_target["no-sni"].values()) == {"unavailable"}
    assert None in backends.seen["default"]  # s_client sent no SNI


def test_image_probe_rejects_option_like_sni() -> None:
    request = {"targets": [{"key": "k", "host": NAME, "port": 1, "sni": "-proxy"}]}
    done = subprocess.run(
        [sys.executable, str(PROBE)],
        input=json.dumps(request).encode() + b"\n",
        capture_output=True,
        env=clean_env(),
        timeout=60,
    )
    assert done.returncode == 2
    assert b"starts with '-'" in done.stderr
    assert done.stdout == b""


@pytest.mark.parametrize("send_sni", [True, False], ids=["sni", "no-sni"])
def test_entry_script_without_python_honours_pins(
    backends: Backends, tmp_path: Path, send_sni: bool
) -> None:
    from comparer.images import ENTRY_SCRIPT, REQUEST_DELIMITER

    # A PATH with the shell tools and openssl but no Python: the script runs
    # s_client itself. Without /comparer/ca.pem it uses the default store, so the
    # lab's chain is unknown-issuer (20) and the default certificate self-signed (18).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "cat", "openssl", "readlink", "sed", "date", "timeout"):
        found = subprocess.run(
            ["sh", "-c", f"command -v {tool}"], capture_output=True, text=True
        ).stdout.strip()
        if found:
            (bin_dir / tool).symlink_to(found)
    target = backends.target("127.0.0.4", send_sni=send_sni)
    stdin = b"# no probe program\n" + REQUEST_DELIMITER.encode() + b"\n"
    stdin += image_request(backends, [target])
    done = subprocess.run(
        [str(bin_dir / "sh"), "-c", ENTRY_SCRIPT],
        input=stdin,
        capture_output=True,
        env={"PATH": str(bin_dir)},
        timeout=60,
    )
    output = done.stdout.decode()
    assert "@@comparer-openssl-begin 0" in output
    assert ("num=20" if send_sni else "num=18") in output
    assert backends.seen["default"] == [NAME if send_sni else None]


# --- real containers ----------------------------------------------------------------

# Python 2.7 and 3.9 with OpenSSL 1.1.1, and an image with no Python at all.
IMAGES = ("comparer-test/bullseye:1", "comparer-test/nopython:1")


@pytest.fixture(scope="module")
def engine() -> str:
    from comparer import engine as engines

    try:
        name = engines.find_engine()
    except engines.EngineError as exc:
        missing: str | None = str(exc)
    else:
        missing = next(
            (
                f"image {i} not found"
                for i in IMAGES
                if not engines.image_exists(name, i)
            ),
            None,
        )
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    return name


def image_cells(row: dict[str, Any]) -> dict[str, str]:
    return {
        f"{r['where'].removeprefix('image:')}/{r['stack']}": r["reason"]
        for r in row["results"]
        if r["where"] != "host"
    }


@pytest.mark.docker
@pytest.mark.usefixtures("engine")
def test_images_honour_resolve_and_no_sni(backends: Backends) -> None:
    target = f"{NAME}:{backends.port}"
    images = [arg for image in IMAGES for arg in ("--image", image)]
    resolve = f"{NAME}:{backends.port}:127.0.0.2"
    options = ["--stacks", "openssl", "--pull", "never", *images]
    (row,) = check_json(backends, *options, target, "--resolve", resolve)["targets"]
    cells = image_cells(row)
    assert len(cells) >= 5, cells
    assert set(cells.values()) == {"ok"}
    assert set(backends.seen) == {"b"}
    backends.seen.clear()

    resolve = f"{NAME}:{backends.port}:127.0.0.4"
    (row,) = check_json(backends, *options, target, "--resolve", resolve, "--no-sni")[
        "targets"
    ]
    cells = image_cells(row)
    openssl = {
        column: reason for column, reason in cells.items() if "openssl" in column
    }
    assert set(openssl.values()) == {"self-signed"}
    assert len(openssl) == 2
    others = {
        column: reason for column, reason in cells.items() if column not in openssl
    }
    assert set(others.values()) == {"unavailable"}
