"""Security properties of comparer itself.

No target or option value reaches a shell or becomes an option of `openssl` or of
the container engine. Certificate verification is never switched off. Temporary
files are private and removed. The lab listens on loopback only, and no command
prints a private key.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from comparer import engine as engines
from comparer.commands.check import load_ca_file
from comparer.errors import UsageError
from comparer.images import private_ca_copy
from comparer.lab import Lab
from comparer.model import Target
from comparer.pinning import parse_connect_to, parse_sni
from comparer.stacks import DEFAULT_STACKS
from comparer.stacks.base import ProbeSettings
from comparer.stacks.openssl_cli import build_argv
from comparer.targets import TargetError, parse_target

ROOT = Path(__file__).resolve().parent.parent

# s_client options that build_argv may emit: those that take a value, and flags.
S_CLIENT_VALUED = {"-connect", "-servername", "-verify_hostname", "-verify_ip"}
S_CLIENT_VALUED |= {"-CAfile"}
S_CLIENT_FLAGS = {"-verify_return_error", "-ign_eof", "-nocommands", "-state"}
S_CLIENT_FLAGS |= {"-no-CApath", "-no-CAstore", "-noservername"}


def check_s_client_argv(argv: list[str]) -> None:
    """Assert that every word is a known option or the value right after one."""
    assert argv[1] == "s_client"
    words = iter(argv[2:])
    for word in words:
        if word in S_CLIENT_FLAGS:
            continue
        assert word in S_CLIENT_VALUED, f"unexpected s_client word {word!r}"
        value = next(words)
        assert not value.startswith("-"), f"{word} {value!r} reads as an option"


# Strings that a hostile user or targets file might try.
HOSTILE_TEXT = [
    "-proxy",
    "--help",
    "-CAfile /etc/passwd",
    "$(touch /tmp/pwned)",
    "`id`",
    "a;b",
    "a|b",
    "a&b",
    "x -servername evil",
    "localhost -verify 0",
    "localhost\n-quiet",
    "[::1]:443 -ign_eof",
    "https://localhost/$(id);`id`|&",
    "fe80::1%-x",
    "[fe80::1%25-x]:443",
    "localhost:443:-1",
]


@pytest.mark.parametrize("text", HOSTILE_TEXT)
def test_hostile_text_never_becomes_an_option(text: str) -> None:
    try:
        target = parse_target(text)
    except TargetError:
        return
    check_s_client_argv(build_argv("/usr/bin/openssl", target, ProbeSettings()))


@given(st.text(max_size=60))
def test_any_parsed_target_gives_safe_argv(text: str) -> None:
    try:
        target = parse_target(text)
    except TargetError:
        return
    check_s_client_argv(build_argv("openssl", target, ProbeSettings()))


@given(
    host=st.text(max_size=30),
    sni=st.text(max_size=30),
    connect=st.text(max_size=40),
)
def test_pinned_values_give_safe_argv(host: str, sni: str, connect: str) -> None:
    try:
        target = parse_target(host)
        server_name = parse_sni(sni)
        rule = parse_connect_to(connect)
    except (TargetError, UsageError):
        return
    pinned = dataclasses.replace(
        target,
        sni=server_name,
        address=rule.connect_host,
        address_port=rule.connect_port,
    )
    check_s_client_argv(build_argv("openssl", pinned, ProbeSettings()))


def test_path_goes_to_stdin_not_argv() -> None:
    target = parse_target("https://localhost:8443/$(id);-quiet")
    argv = build_argv("openssl", target, ProbeSettings())
    assert not any("$(id)" in word or "-quiet" in word for word in argv)


def test_ca_file_option_like_rejected() -> None:
    with pytest.raises(UsageError, match=r"use \./-CAfile"):
        load_ca_file("-CAfile")


def test_ca_file_option_like_path_is_absolute(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "-CAfile").write_bytes(lab.ca_bundle.read_bytes())
    monkeypatch.chdir(tmp_path)
    ca_file = load_ca_file("./-CAfile")
    assert ca_file == tmp_path / "-CAfile"
    target = parse_target("localhost:443")
    argv = build_argv("openssl", target, ProbeSettings(ca_file=ca_file))
    check_s_client_argv(argv)
    assert argv[argv.index("-CAfile") + 1] == str(tmp_path / "-CAfile")


def test_s_client_check_catches_option_values() -> None:
    # The failing twin of the argv checks: a value that starts with '-' is caught.
    target = Target(raw="x", host="-quiet")
    with pytest.raises(AssertionError, match="reads as an option"):
        check_s_client_argv(build_argv("openssl", target, ProbeSettings()))


# --- the container engine's argument list ---------------------------------------------


def spec(**changes: object) -> engines.ContainerSpec:
    base = engines.ContainerSpec(
        engine="docker", image="debian:bookworm", argv=("sh", "-c", "true")
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "image",
    ["", "-it", "--privileged", "debian bookworm", "debian\n--privileged", "\x00"],
)
def test_engine_rejects_option_like_image(image: str) -> None:
    with pytest.raises(UsageError):
        engines.container_command(spec(image=image))


@given(st.text(min_size=1, max_size=40))
def test_engine_image_only_after_double_dash(image: str) -> None:
    try:
        command = engines.container_command(spec(image=image))
    except UsageError:
        return
    end = command.index("--")
    assert command[end + 1] == image
    # The options before "--" never depend on the image: an image named "docker",
    # "host" or "ALL" matches fixed words there without being one of them.
    baseline = engines.container_command(spec(image="comparer-test/baseline:1"))
    assert command[:end] == baseline[: baseline.index("--")]


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("relative/ca.pem", "/ca.pem"),
        ("/tmp/ca.pem,target=/etc", "/ca.pem"),
        ("/tmp", "/ca.pem,readonly=false"),
        ("/tmp", "/ca pem"),
        ("/tmp", "-v"),
    ],
)
def test_engine_rejects_mount_fields(source: str, target: str) -> None:
    with pytest.raises(UsageError, match="mount path"):
        engines.container_command(spec(mounts=((source, target),)))


def test_engine_mount_is_one_read_only_value(tmp_path: Path) -> None:
    command = engines.container_command(spec(mounts=((str(tmp_path), "/ca"),)))
    value = command[command.index("--mount") + 1]
    assert value == f"type=bind,source={tmp_path},target=/ca,readonly"


@pytest.mark.parametrize("user", ["root", "0:0 --privileged", "-1", "0:-1"])
def test_engine_rejects_user(user: str) -> None:
    with pytest.raises(UsageError, match="numeric"):
        engines.container_command(spec(user=user))


@pytest.mark.parametrize("engine", ["-it", "docker --privileged"])
def test_engine_name_rejected(engine: str) -> None:
    with pytest.raises(UsageError):
        engines.find_engine(engine)


def test_engine_confinement_flags() -> None:
    command = engines.container_command(spec())
    for flag in ("--rm", "--read-only", "--cap-drop", "--security-opt"):
        assert flag in command
    assert command[command.index("--cap-drop") + 1] == "ALL"
    assert command[-4:] == ["debian:bookworm", "sh", "-c", "true"]


# --- verification is never switched off -----------------------------------------------

# Each pattern turns verification off, or hands a value to a shell.
FORBIDDEN = {
    "CERT_NONE": re.compile(r"\bCERT_NONE\b"),
    "CERT_OPTIONAL": re.compile(r"\bCERT_OPTIONAL\b"),
    "verify=False": re.compile(r"\bverify(_ssl)?\s*=\s*False\b"),
    "check_hostname = False": re.compile(r"\bcheck_hostname\s*=\s*False\b"),
    "assert_hostname=False": re.compile(r"\bassert_hostname\s*=\s*False\b"),
    "ssl=False": re.compile(r"(?<![\w.])ssl\s*=\s*False\b"),
    "_create_unverified_context": re.compile(r"_create_unverified_context"),
    "VERIFY_NONE": re.compile(r"\bVERIFY_NONE\b"),
    "shell=True": re.compile(r"\bshell\s*=\s*True\b"),
    "os.system": re.compile(r"\bos\.(system|popen)\("),
    "create_subprocess_shell": re.compile(r"\bcreate_subprocess_shell\b"),
}
# Server-side code may ask clients for certificates; it verifies no server.
SERVER_CODE = {ROOT / "comparer" / "lab" / "server.py"}


def python_sources() -> list[Path]:
    """Return comparer's modules, the in-image probe and the benchmarks."""
    found = sorted((ROOT / "comparer").rglob("*.py"))
    found += sorted((ROOT / "docker").rglob("*.py"))
    found += sorted((ROOT / "bench").rglob("*.py"))
    return [path for path in found if path not in SERVER_CODE]


def forbidden_uses(text: str) -> list[str]:
    """Return the names of the forbidden patterns that occur in `text`."""
    return [name for name, pattern in FORBIDDEN.items() if pattern.search(text)]


def test_sources_never_disable_verification() -> None:
    sources = python_sources()
    assert len(sources) > 20
    found = {
        str(path.relative_to(ROOT)): uses
        for path in sources
        if (uses := forbidden_uses(path.read_text()))
    }
    assert found == {}


@pytest.mark.parametrize(
    "line",
    [
        "ctx.verify_mode = ssl.CERT_NONE",
        "requests.get(url, verify=False)",
        "context.check_hostname = False",
        "session.get(url, ssl=False)",
        "subprocess.run(cmd, shell=True)",
        "ssl._create_unverified_context()",
    ],
)
def test_forbidden_patterns_are_caught(line: str) -> None:
    assert forbidden_uses(line)


def test_harmless_lines_pass() -> None:
    assert forbidden_uses("with_openssl = False\nverify = True\nssl=context") == []


def clean_env(**extra: str) -> dict[str, str]:
    """Return the environment without TLS, proxy and colour overrides."""
    drop = {"SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"}
    drop |= {"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"}
    drop |= {"ALL_PROXY", "all_proxy", "NO_COLOR", "FORCE_COLOR", "COLUMNS"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(extra)
    return env


def comparer(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "comparer", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


REJECTED = ("self-signed-leaf", "hostname-mismatch", "untrusted-root", "expired-leaf")


@pytest.mark.parametrize("trust", ["--ca-file", "environment"])
def test_every_stack_rejects_bad_certificates(lab: Lab, trust: str) -> None:
    # Trusting the lab roots by option or by each stack's environment variable
    # never makes a stack accept a certificate it should reject. `good` is the twin.
    targets = [lab.scenario(name).target for name in ("good", *REJECTED)]
    if trust == "--ca-file":
        args, env = ["--ca-file", str(lab.ca_bundle)], clean_env()
    else:
        bundle = str(lab.ca_bundle)
        args = []
        env = clean_env(SSL_CERT_FILE=bundle, REQUESTS_CA_BUNDLE=bundle)
    done = comparer("check", "--json", "--timeout", "10", *args, *targets, env=env)
    assert done.returncode == 1, done.stderr
    rows = {t["port"]: t for t in json.loads(done.stdout)["targets"]}
    good = rows[lab.scenario("good").port]["results"]
    assert [r["stack"] for r in good if r["ok"]] == list(DEFAULT_STACKS)
    for name in REJECTED:
        results = rows[lab.scenario(name).port]["results"]
        assert len(results) == len(DEFAULT_STACKS), name
        for result in results:
            assert result["ok"] is False, (name, result["stack"])
            assert result["reason"] == lab.scenario(name).expect.value, (
                name,
                result["stack"],
            )


# --- temporary files and printed secrets ----------------------------------------------


class TreeWatcher:
    """Record the mode of every file and directory under `root` until stopped."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modes: dict[Path, int] = {}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> TreeWatcher:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopping.set()
        self.thread.join(10)

    def _watch(self) -> None:
        while not self.stopping.wait(0.002):
            for directory, dirs, files in os.walk(self.root):
                for name in dirs + files:
                    path = Path(directory, name)
                    try:
                        mode = os.lstat(path).st_mode
                    except FileNotFoundError:
                        continue
                    self.modes[path] = mode


def test_demo_temp_files_private_and_removed(tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    with TreeWatcher(temp) as watcher:
        done = comparer(
            "demo", "--json", "--timeout", "5", env=clean_env(TMPDIR=str(temp))
        )
    assert done.returncode == 1, done.stderr
    assert watcher.modes, "the demo's lab writes its files under TMPDIR"
    for path, mode in watcher.modes.items():
        expected = 0o700 if stat.S_ISDIR(mode) else 0o600
        assert stat.S_IMODE(mode) == expected, f"{path.name}: {oct(mode)}"
    assert list(temp.iterdir()) == []
    assert "PRIVATE KEY" not in done.stdout + done.stderr


def test_check_with_ca_file_writes_no_temp_files(lab: Lab, tmp_path: Path) -> None:
    env = clean_env(TMPDIR=str(tmp_path))
    done = comparer(
        "check", "--ca-file", str(lab.ca_bundle), lab.scenario("good").target, env=env
    )
    assert done.returncode == 0, done.stderr
    assert list(tmp_path.iterdir()) == []


def test_image_ca_copy_private_and_removed(lab: Lab) -> None:
    with private_ca_copy(lab.ca_bundle) as copy:
        assert copy is not None
        path = Path(copy)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert path.read_bytes() == lab.ca_bundle.read_bytes()
    assert not path.parent.exists()


def test_image_ca_copy_removed_on_error(lab: Lab) -> None:
    with pytest.raises(RuntimeError), private_ca_copy(lab.ca_bundle) as copy:
        assert copy is not None
        raise RuntimeError("probe failed")
    assert not Path(copy).parent.exists()


# --- the lab listens on loopback only -------------------------------------------------


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_listeners(table: str, port: int) -> list[Address]:
    """Return the local addresses of LISTEN sockets on `port` in a /proc/net table."""
    found: list[Address] = []
    for line in table.splitlines()[1:]:
        fields = line.split()
        address, port_hex = fields[1].split(":")
        if fields[3] != "0A" or int(port_hex, 16) != port:  # 0A is LISTEN
            continue
        raw = bytes.fromhex(address)
        # /proc prints each 32-bit word in host (little-endian) byte order.
        packed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
        found.append(ipaddress.ip_address(packed))
    return found


def listening_addresses(port: int) -> list[Address]:
    """Return the local addresses of this host's TCP listeners on `port`."""
    found: list[Address] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if os.path.exists(table):
            found += parse_listeners(Path(table).read_text(), port)
    return found


def test_lab_listens_on_loopback_only(lab: Lab, hostile_lab: Lab) -> None:
    for scenario in lab.scenarios + hostile_lab.scenarios:
        addresses = listening_addresses(scenario.port)
        assert addresses, scenario.name
        assert all(address.is_loopback for address in addresses), scenario.name


def test_listener_parser_reads_loopback() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        addresses = listening_addresses(server.getsockname()[1])
    assert addresses == [ipaddress.IPv4Address("127.0.0.1")]


def test_listener_parser_sees_wildcard() -> None:
    # The failing twin, from a table line rather than a real socket, because servers
    # in tests listen on loopback only.
    table = (
        "  sl  local_address rem_address   st\n"
        "   0: 00000000:1F90 00000000:0000 0A 00000000:00000000\n"
        "   1: 0100007F:1F91 00000000:0000 0A 00000000:00000000\n"
    )
    assert parse_listeners(table, 0x1F90) == [ipaddress.IPv4Address("0.0.0.0")]
    assert parse_listeners(table, 0x1F91) == [ipaddress.IPv4Address("127.0.0.1")]
