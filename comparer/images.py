"""Probe targets from inside container images, one container per image.

Each container runs a fixed `sh` entry script (ENTRY_SCRIPT, no user value in it) that
starts docker/probe.py with every Python interpreter it finds in the image. The request
goes in on stdin; results come back as JSON lines. An image without Python falls back
to `openssl s_client` in the script itself, and its output is classified here with the
same parser that probe.py uses.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import math
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

from comparer import engine as engines
from comparer.errors import UsageError
from comparer.model import ProbeResult, Reason, StackInfo, Target
from comparer.pinning import has_custom_sni
from comparer.stacks.base import ProbeSettings

log = logging.getLogger(__name__)

# docker/probe.py is the source; comparer/image_probe.py links to it, so that a wheel
# carries a copy of the program.
PROBE_SOURCE = Path(__file__).parent / "image_probe.py"
PROBE_IN_CONTAINER = "/comparer/probe.py"
CA_IN_CONTAINER = "/comparer/ca.pem"
HOST_CERT_DIRS = ("/etc/ssl/certs", "/usr/share/ca-certificates")

# Parallel probes inside one interpreter (MAX_WORKERS in probe.py).
_PROBE_WORKERS = 8
# Stacks one interpreter may run: stdlib, requests, httpx, aiohttp, openssl.
_STACKS_PER_INTERPRETER = 5
# Interpreters the entry script tries: python3, python2.7, python2, python.
_MAX_INTERPRETERS = 4
# Seconds for starting a container, beyond the probes themselves.
_START_ALLOWANCE = 60.0

# Ends the probe program on stdin; the request follows it.
REQUEST_DELIMITER = "#@@comparer-request"

# The container's command. Stdin is the probe program, the delimiter line, then the
# request: nothing but the CA file is mounted. It runs probe.py once per distinct
# interpreter (only the first one also runs s_client), and without Python runs
# s_client itself for each `target INDEX KIND HOST CONNECT` line of the request.
ENTRY_SCRIPT = r"""
set -u
request=/tmp/comparer-request
probe=/tmp/comparer-probe.py
# Shell built-ins only, so that an image with nothing but sh and cat works. `read`
# takes one line at a time from the pipe, so cat gets exactly the rest.
while IFS= read -r line; do
    [ "$line" = "#@@comparer-request" ] && break
    printf '%s\n' "$line"
done > "$probe" || exit 70
cat > "$request" || exit 70
seen=" "
first=1
status=0
for name in python3 python2.7 python2 python; do
    path=$(command -v "$name" 2>/dev/null) || continue
    real=$(readlink -f "$path" 2>/dev/null) || real=$path
    case $seen in *" $real "*) continue ;; esac
    seen="$seen$real "
    echo "@@comparer-python $path"
    if [ "$first" = 1 ]; then
        "$path" "$probe" < "$request" || status=$?
    else
        "$path" "$probe" --no-openssl < "$request" || status=$?
    fi
    first=0
done
if [ "$first" = 0 ]; then
    exit "$status"
fi
if ! command -v openssl >/dev/null 2>&1; then
    echo "@@comparer-none"
    exit 0
fi
version=$(openssl version 2>&1)
echo "@@comparer-fact openssl_cli $version"
echo "@@comparer-fact openssldir $(openssl version -d 2>&1)"
echo "@@comparer-fact os $(sed -n 's/^PRETTY_NAME=//p' /etc/os-release 2>/dev/null)"
package=$(sed -n '/^Package: ca-certificates$/,/^$/s/^Version: //p' \
    /var/lib/dpkg/status 2>/dev/null)
echo "@@comparer-fact ca_certificates $package"
seconds=10
while read -r word index kind host connect; do
    case $word in
    timeout)
        case $index in '' | *[!0-9]*) ;; *) seconds=$index ;; esac
        continue
        ;;
    target) ;;
    *) continue ;;
    esac
    case $kind in
    ip) set -- -verify_ip "$host" ;;
    ip-sni=*) set -- -servername "${kind#ip-sni=}" -verify_ip "$host" ;;
    name-nosni)
        # -noservername appeared in 1.1.1; 1.0.x sends SNI only when asked.
        case $version in
        "OpenSSL 1.0"*) set -- -verify_hostname "$host" ;;
        *) set -- -noservername -verify_hostname "$host" ;;
        esac
        ;;
    name-sni=*) set -- -servername "${kind#name-sni=}" -verify_hostname "$host" ;;
    *) set -- -servername "$host" -verify_hostname "$host" ;;
    esac
    if [ -f /comparer/ca.pem ]; then
        set -- "$@" -CAfile /comparer/ca.pem -no-CApath
        case $version in
        "OpenSSL 1."* | LibreSSL*) ;;
        *) set -- "$@" -no-CAstore ;;
        esac
    fi
    echo "@@comparer-openssl-begin $index"
    start=$(date +%s%N 2>/dev/null)
    set -- s_client -connect "$connect" -verify_return_error "$@"
    if command -v timeout >/dev/null 2>&1; then
        timeout "$seconds" openssl "$@" </dev/null 2>&1
    else
        openssl "$@" </dev/null 2>&1
    fi
    code=$?
    end=$(date +%s%N 2>/dev/null)
    printf '\n@@comparer-openssl-end %s %s %s %s\n' "$index" "$code" "$start" "$end"
done < "$request"
"""

_SAFE_HOST = re.compile(r"^[A-Za-z0-9_.:\[\]%-]+$")
_MARKER = re.compile(r"^@@comparer-(\S+)(?: (.*))?$")
# `timeout` exits with 124 when it stopped the command.
_TIMEOUT_STATUS = 124


@dataclass
class ImageRun:
    """Results of probing targets inside container images.

    `stacks` lists one column per stack and image, `results` maps `Target.key` to the
    results of every image, and `errors` has one line per image that could not run.
    """

    stacks: list[StackInfo] = field(default_factory=list)
    results: dict[str, list[ProbeResult]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


@lru_cache(maxsize=1)
def load_probe_module() -> ModuleType:
    """Import docker/probe.py, the program copied into containers, as a module."""
    if not PROBE_SOURCE.is_file():
        raise UsageError(
            f"probe program {PROBE_SOURCE} not found; run comparer from a source "
            "checkout that contains docker/probe.py"
        )
    spec = importlib.util.spec_from_file_location("comparer_image_probe", PROBE_SOURCE)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot load the probe program {PROBE_SOURCE}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@lru_cache(maxsize=1)
def probe_program() -> bytes:
    """Return the probe program and the delimiter line that precede the request."""
    source = PROBE_SOURCE.read_bytes()
    if not source.endswith(b"\n"):
        source += b"\n"
    return source + REQUEST_DELIMITER.encode() + b"\n"


def is_sendable(target: Target) -> bool:
    """Return whether a target's host can be sent to the entry script as one word."""
    host = target.host
    return (
        not host.startswith("-")
        and _SAFE_HOST.match(host) is not None
        and _SAFE_HOST.match(target.connect_host) is not None
        and (target.sni is None or _SAFE_HOST.match(target.sni) is not None)
    )


def build_request(
    targets: list[Target], settings: ProbeSettings, ca_path: str | None
) -> bytes:
    """Return the stdin of the container: a JSON line, then lines for the fallback."""
    document = {
        "targets": [
            {
                "key": target.key,
                "host": target.host,
                "port": target.port,
                "path": target.path,
                "address": target.address,
                "address_port": target.address_port,
                "sni": target.sni,
                "send_sni": target.send_sni,
            }
            for target in targets
        ],
        "timeout": settings.timeout,
        "ca_file": ca_path,
    }
    lines = [json.dumps(document), f"timeout {max(1, math.ceil(settings.timeout))}"]
    for index, target in enumerate(targets):
        kind = _fallback_kind(target)
        connect = f"{_bracket(target.connect_host)}:{target.connect_port}"
        lines.append(f"target {index} {kind} {target.host} {connect}")
    return ("\n".join(lines) + "\n").encode()


def _fallback_kind(target: Target) -> str:
    """Return KIND for the entry script: ip or name, then -nosni or -sni=NAME."""
    kind = "ip" if target.is_ip else "name"
    if not has_custom_sni(target):
        return kind
    if target.server_name is None:
        return f"{kind}-nosni"
    return f"{kind}-sni={target.server_name}"


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def container_timeout(targets: int, settings: ProbeSettings) -> float:
    """Return a backstop for one container, in seconds, from the probe timeouts."""
    rounds = math.ceil(targets * _STACKS_PER_INTERPRETER / _PROBE_WORKERS)
    python_bound = _MAX_INTERPRETERS * rounds * settings.timeout
    fallback_bound = targets * settings.timeout
    return _START_ALLOWANCE + max(python_bound, fallback_bound)


def container_user(engine: str) -> str | None:
    """Return the `uid:gid` that lets the container read our 0600 CA copy, or None.

    A root-owned rootful engine runs containers as root, which owns the copy when we
    are root. Rootless Podman maps our uid to the container's root, so it needs none.
    """
    if os.getuid() == 0 or os.path.basename(engine).startswith("podman"):
        return None
    return f"{os.getuid()}:{os.getgid()}"


@contextmanager
def private_ca_copy(ca_file: Path | None) -> Iterator[str | None]:
    """Yield a 0600 copy of the CA bundle in a private directory, removed afterwards."""
    if ca_file is None:
        yield None
        return
    directory = tempfile.mkdtemp(prefix="comparer-ca-")
    path = os.path.join(directory, "ca.pem")
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle, open(ca_file, "rb") as source:
            shutil.copyfileobj(source, handle)
        yield path
    except OSError as exc:
        raise UsageError(f"cannot read --ca-file {ca_file}: {exc.strerror}") from exc
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def build_mounts(ca_copy: str | None, mount_host_certs: bool) -> list[engines.Mount]:
    """Return the read-only bind mounts: the CA copy and the host certificates."""
    mounts: list[engines.Mount] = []
    if ca_copy is not None:
        mounts.append((ca_copy, CA_IN_CONTAINER))
    if mount_host_certs:
        mounts += [(path, path) for path in HOST_CERT_DIRS if os.path.isdir(path)]
    return mounts


async def probe_images(
    images: list[str],
    targets: list[Target],
    *,
    settings: ProbeSettings,
    engine: str | None = None,
    pull: str = "missing",
    mount_host_certs: bool = False,
) -> ImageRun:
    """Probe every target from inside each image, all images concurrently."""
    images = list(dict.fromkeys(engines.check_image_ref(image) for image in images))
    engines.check_pull_policy(pull)
    load_probe_module()
    run = ImageRun(results={target.key: [] for target in targets})
    try:
        engine_path = engines.find_engine(engine)
    except engines.EngineError as exc:
        run.errors += [f"image {image}: {exc}" for image in images]
        return run

    sendable = [target for target in targets if is_sendable(target)]
    for target in targets:
        if not is_sendable(target):
            # parse_target admits no such host; this guards the entry script's `read`.
            message = f"target {target.raw}: not probed in images, invalid host name"
            log.warning("%s", message)
            run.errors.append(message)
    with private_ca_copy(settings.ca_file) as ca_copy:
        context = _RunContext(
            engine=engine_path,
            targets=sendable,
            settings=settings,
            pull=pull,
            mounts=build_mounts(ca_copy, mount_host_certs),
            user=container_user(engine_path) if ca_copy else None,
        )
        outcomes = await asyncio.gather(
            *(_probe_one_image(context, image) for image in images)
        )
    for outcome in outcomes:
        run.stacks += outcome.stacks
        run.errors += outcome.errors
        for key, results in outcome.results.items():
            run.results.setdefault(key, []).extend(results)
    return run


@dataclass(frozen=True)
class _RunContext:
    engine: str
    targets: list[Target]
    settings: ProbeSettings
    pull: str
    mounts: list[engines.Mount]
    user: str | None


async def _probe_one_image(context: _RunContext, image: str) -> ImageRun:
    outcome = ImageRun()
    if context.pull == "never" and not await asyncio.to_thread(
        engines.image_exists, context.engine, image
    ):
        outcome.errors.append(
            f"image {image}: not found locally; pull it or pass --pull missing"
        )
        return outcome
    ca_path = CA_IN_CONTAINER if context.settings.ca_file is not None else None
    request = probe_program() + build_request(
        context.targets, context.settings, ca_path
    )
    timeout = container_timeout(len(context.targets), context.settings)
    log.debug("probing %d targets in image %s", len(context.targets), image)
    try:
        completed = await engines.run_container_async(
            context.engine,
            image,
            ["sh", "-c", ENTRY_SCRIPT],
            stdin=request,
            mounts=context.mounts,
            network="host",
            timeout=timeout,
            pull=context.pull,
            user=context.user,
        )
    except subprocess.TimeoutExpired:
        outcome.errors.append(
            f"image {image}: container timed out after {timeout:.0f}s"
        )
        return outcome
    except engines.EngineError as exc:
        outcome.errors.append(f"image {image}: {exc}")
        return outcome
    return parse_output(image, context, completed)


def _first_line(data: bytes) -> str:
    lines = [line.strip() for line in data.decode("utf-8", "replace").splitlines()]
    useful = [line for line in lines if line]
    return useful[-1] if useful else "no output"


def parse_output(
    image: str, context: _RunContext, completed: subprocess.CompletedProcess[bytes]
) -> ImageRun:
    """Turn the container's output into stacks, results and error lines."""
    outcome = ImageRun()
    stderr = completed.stderr.decode("utf-8", "replace")
    for line in stderr.splitlines():
        log.debug("image %s stderr: %s", image, line)
    # 125-127 come from the engine or sh before any probe ran (no image, no sh).
    if completed.returncode in (125, 126, 127) and not completed.stdout.strip():
        outcome.errors.append(
            f"image {image}: could not run ({_first_line(completed.stderr)})"
        )
        return outcome
    parser = _OutputParser(image, context)
    parser.feed(completed.stdout.decode("utf-8", "replace"))
    outcome = parser.finish()
    if completed.returncode != 0:
        outcome.errors.append(
            f"image {image}: probe exited with status {completed.returncode} "
            f"({_first_line(completed.stderr)})"
        )
    return outcome


class _OutputParser:
    """Reads the entry script's output: probe.py JSON lines and fallback sections."""

    def __init__(self, image: str, context: _RunContext) -> None:
        self.image = image
        self.where = f"image:{image}"
        self.context = context
        self.engine_name = os.path.basename(context.engine)
        self.stacks: dict[str, StackInfo] = {}
        self.outcome = ImageRun()
        self.interpreter: str | None = None
        self.renames: dict[str, str] = {}
        self.facts: dict[str, Any] = {}
        self.fallback: dict[str, str] = {}
        self.section: list[str] | None = None
        self.none_found = False

    def feed(self, text: str) -> None:
        for line in text.splitlines():
            if self.section is not None and not line.startswith(
                "@@comparer-openssl-end"
            ):
                self.section.append(line)
                continue
            marker = _MARKER.match(line)
            if marker:
                self._marker(marker.group(1), marker.group(2) or "")
            elif line.startswith("{"):
                self._json_line(line)
            elif line.strip():
                log.debug("image %s: unexpected output %r", self.image, line)

    def _marker(self, name: str, value: str) -> None:
        if name == "python":
            self.interpreter = value
            self.renames = {}
        elif name == "none":
            self.none_found = True
        elif name == "fact":
            key, _, text = value.partition(" ")
            self.fallback[key] = text.strip()
        elif name == "openssl-begin":
            self.section = []
        elif name == "openssl-end":
            self._fallback_result(value, "\n".join(self.section or []))
            self.section = None

    def _json_line(self, line: str) -> None:
        try:
            record = json.loads(line)
        except ValueError:
            log.debug("image %s: invalid JSON line %r", self.image, line)
            return
        if "facts" in record:
            self._facts(record["facts"])
        elif "stack" in record:
            self._result(record)

    def _facts(self, facts: dict[str, Any]) -> None:
        self.facts = {key: value for key, value in facts.items() if key != "stacks"}
        for stack in facts.get("stacks", []):
            name = stack["name"]
            column = name
            if column in self.stacks:
                # A second interpreter with the same library: name it by its Python.
                column = f"{name}-py{'.'.join(str(facts['python']).split('.')[:2])}"
            self.renames[name] = column
            self.stacks[column] = StackInfo(
                name=column,
                where=self.where,
                version=stack.get("version"),
                trust=stack.get("trust"),
                facts=dict(self.facts),
            )

    def _result(self, record: dict[str, Any]) -> None:
        column = self.renames.get(record["stack"], record["stack"])
        target = self._target_by_key(record["key"])
        if target is None:
            return
        info = self.stacks.get(column)
        self._add(
            target,
            ProbeResult(
                stack=column,
                ok=bool(record["ok"]),
                reason=_reason(record["reason"]),
                detail=str(record.get("detail") or ""),
                where=self.where,
                tls_version=record.get("tls_version"),
                elapsed_ms=float(record.get("elapsed_ms") or 0.0),
                trust=info.trust if info else None,
                reproduce=self._reproduce(target, record["stack"]),
                verify_code=record.get("verify_code"),
                address=target.address,
            ),
        )

    def _fallback_result(self, value: str, output: str) -> None:
        fields = value.split()
        if len(fields) < 2 or not fields[0].isdigit() or not fields[1].isdigit():
            return
        index, status = int(fields[0]), int(fields[1])
        if index >= len(self.context.targets):
            return
        target = self.context.targets[index]
        probe = load_probe_module()
        reason, code, detail, tls = probe.classify_s_client(
            status, output, status == _TIMEOUT_STATUS
        )
        self._ensure_fallback_stack()
        self._add(
            target,
            ProbeResult(
                stack="openssl",
                ok=reason == "ok",
                reason=_reason(reason),
                detail=detail,
                where=self.where,
                tls_version=tls,
                elapsed_ms=_elapsed_ns(fields[2:]),
                trust=self.stacks["openssl"].trust,
                reproduce=self._reproduce(target, "openssl"),
                verify_code=code,
                address=target.address,
            ),
        )

    def _ensure_fallback_stack(self) -> None:
        if "openssl" in self.stacks:
            return
        facts = {
            "os": {"pretty_name": self.fallback.get("os", "").strip("\"'")},
            "python": None,
            "openssl_cli": self.fallback.get("openssl_cli"),
            "ca_certificates": {
                "manager": "dpkg",
                "version": self.fallback.get("ca_certificates") or None,
            },
        }
        self.facts = facts
        directory = re.search(
            r'OPENSSLDIR: "([^"]*)"', self.fallback.get("openssldir", "")
        )
        trust = "--ca-file" if self.context.settings.ca_file else "default"
        if directory and not self.context.settings.ca_file:
            trust = f"default (OPENSSLDIR {directory.group(1)})"
        self.stacks["openssl"] = StackInfo(
            name="openssl",
            where=self.where,
            version=self.fallback.get("openssl_cli"),
            trust=trust,
            facts=facts,
        )

    def _target_by_key(self, key: str) -> Target | None:
        for target in self.context.targets:
            if target.key == key:
                return target
        log.debug("image %s: result for unknown target %r", self.image, key)
        return None

    def _add(self, target: Target, result: ProbeResult) -> None:
        self.outcome.results.setdefault(target.key, []).append(result)

    def _reproduce(self, target: Target, stack: str) -> str:
        return reproduce_command(
            self.engine_name,
            self.image,
            target,
            stack,
            settings=self.context.settings,
            interpreter=self.interpreter,
            openssl_version=str(self.facts.get("openssl_cli") or ""),
        )

    def finish(self) -> ImageRun:
        """Return the parsed run, with a result for every target a stack skipped."""
        self.outcome.stacks = list(self.stacks.values())
        if self.none_found or not self.stacks:
            self._mark_unavailable()
        else:
            self._fill_missing()
        return self.outcome

    def _mark_unavailable(self) -> None:
        detail = "image has neither a Python interpreter nor the openssl command line"
        self.outcome.stacks = [StackInfo(name="probe", where=self.where, version=None)]
        for target in self.context.targets:
            self._add(
                target,
                ProbeResult(
                    stack="probe",
                    ok=False,
                    reason=Reason.UNAVAILABLE,
                    detail=detail,
                    where=self.where,
                    address=target.address,
                ),
            )

    def _fill_missing(self) -> None:
        # A probe that broke midway leaves targets without a verdict for some stacks.
        for target in self.context.targets:
            done = {result.stack for result in self.outcome.results.get(target.key, [])}
            for column in self.stacks:
                if column not in done:
                    self._add(
                        target,
                        ProbeResult(
                            stack=column,
                            ok=False,
                            reason=Reason.ERROR,
                            detail="the probe in the image returned no result",
                            where=self.where,
                            address=target.address,
                        ),
                    )


def _reason(value: str) -> Reason:
    try:
        return Reason(value)
    except ValueError:
        return Reason.ERROR


def _elapsed_ns(fields: list[str]) -> float:
    # `date +%s%N` prints nanoseconds with GNU date only; busybox prints a literal %N.
    if len(fields) == 2 and all(field.isdigit() for field in fields):
        return (int(fields[1]) - int(fields[0])) / 1e6
    return 0.0


def reproduce_command(
    engine_name: str,
    image: str,
    target: Target,
    stack: str,
    *,
    settings: ProbeSettings,
    interpreter: str | None,
    openssl_version: str,
) -> str:
    """Return a shell command line that repeats one probe in the image by hand."""
    run = [engine_name, "run", "--rm", "--network", "host"]
    if settings.ca_file is not None:
        run += ["-v", f"{settings.ca_file.resolve()}:{CA_IN_CONTAINER}:ro"]
    ca_path = CA_IN_CONTAINER if settings.ca_file is not None else None
    if stack == "openssl":
        probe = load_probe_module()
        request = {
            "host": target.host,
            "port": target.port,
            "address": target.address,
        }
        argv = probe.s_client_argv("openssl", openssl_version, request, ca_path)
        return shlex.join([*run, image, *argv]) + " </dev/null"
    document = {
        "targets": [
            {
                "key": target.key,
                "host": target.host,
                "port": target.port,
                "path": target.path,
                "address": target.address,
            }
        ],
        "timeout": settings.timeout,
        "ca_file": ca_path,
    }
    run[3:3] = ["-i"]
    run += ["-v", f"{PROBE_SOURCE.resolve()}:{PROBE_IN_CONTAINER}:ro"]
    base_stack = stack.split("-py")[0]
    command = [*run, image, interpreter or "python3", PROBE_IN_CONTAINER]
    command += ["--stack", base_stack]
    return f"echo {shlex.quote(json.dumps(document))} | {shlex.join(command)}"
