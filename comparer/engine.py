"""Run commands in throwaway containers through the Docker or Podman command line.

Every container is started with the same confinement: removed on exit, read-only root
file system, all capabilities dropped, no privilege gain, a private tmpfs on /tmp, and
only the bind mounts that the caller passes, all read-only. No value given here reaches
a shell: the engine is called with an argument list, and the image reference, mount
paths and pull policy are checked before they become arguments.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from comparer.errors import UsageError

log = logging.getLogger(__name__)

ENGINES = ("docker", "podman")
PULL_POLICIES = ("never", "missing", "always")

Network = Literal["host", "none"]
Mount = tuple[str, str]

# Characters that no image reference, mount path or user contains: whitespace and
# the C0/C1 control characters, which could split or hide arguments in logs.
_UNSAFE = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")

# Seconds given to `ENGINE rm -f` when a container outlives its timeout.
_CLEANUP_TIMEOUT = 30.0


class EngineError(UsageError):
    """No usable container engine; the message names what is missing and the remedy."""


@dataclass(frozen=True)
class ContainerSpec:
    """One container run: the engine, the image and the confinement options.

    `mounts` are (host path, container path) pairs, each bind-mounted read-only.
    `user` is a `uid:gid` for the container process, or None for the image default.
    """

    engine: str
    image: str
    argv: tuple[str, ...]
    mounts: tuple[Mount, ...] = ()
    network: Network = "host"
    pull: str = "missing"
    user: str | None = None
    tmpfs_size: str = "64m"


def check_image_ref(image: str) -> str:
    """Return `image`, or raise UsageError when it could be read as an option."""
    if not image:
        raise UsageError(
            "image reference is empty; pass a name such as debian:bookworm"
        )
    if image.startswith("-"):
        raise UsageError(
            f"image reference {image!r} starts with '-'; pass an image name"
        )
    if _UNSAFE.search(image):
        raise UsageError(
            f"image reference {image!r} contains whitespace or control characters"
        )
    return image


def check_pull_policy(pull: str) -> str:
    """Return `pull`, or raise UsageError unless it is never, missing or always."""
    if pull not in PULL_POLICIES:
        choices = ", ".join(PULL_POLICIES)
        raise UsageError(f"pull policy {pull!r} is invalid; choose one of {choices}")
    return pull


def _check_mount(source: str, target: str) -> Mount:
    for path in (source, target):
        # `--mount` splits its value on commas, so a comma would start a new field.
        if not os.path.isabs(path) or "," in path or _UNSAFE.search(path):
            raise UsageError(
                f"mount path {path!r} must be absolute, without commas or whitespace"
            )
    if not os.path.exists(source):
        raise UsageError(f"mount source {source!r} not found")
    return source, target


def find_engine(preferred: str | None = None) -> str:
    """Return the path of `preferred`, else of docker, else of podman."""
    if preferred is not None:
        if preferred.startswith("-") or _UNSAFE.search(preferred):
            raise UsageError(f"engine {preferred!r} is not a command name or path")
        path = shutil.which(preferred)
        if path is None:
            raise EngineError(
                f"container engine {preferred!r} not found on PATH; install it or "
                "pass docker or podman"
            )
        return path
    for name in ENGINES:
        path = shutil.which(name)
        if path is not None:
            return path
    raise EngineError(
        "no container engine found: neither docker nor podman is on PATH; install "
        "one (scripts/start-docker.sh installs and starts Docker)"
    )


def image_exists(engine: str, image: str) -> bool:
    """Return whether the engine has `image` locally, without pulling it."""
    check_image_ref(image)
    try:
        completed = subprocess.run(  # noqa: S603 - argument list, image checked above
            [engine, "image", "inspect", "--format", "{{.Id}}", image],
            capture_output=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EngineError(f"{engine} image inspect failed: {exc}") from exc
    return completed.returncode == 0


def container_command(spec: ContainerSpec, *, name: str | None = None) -> list[str]:
    """Build the `ENGINE run ...` argument list for one confined container."""
    check_image_ref(spec.image)
    check_pull_policy(spec.pull)
    if spec.network not in ("host", "none"):
        raise UsageError(f"network {spec.network!r} is invalid; choose host or none")
    command = [
        spec.engine,
        "run",
        "--rm",
        "--interactive",
        "--read-only",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--network",
        spec.network,
        "--pull",
        spec.pull,
        "--tmpfs",
        f"/tmp:rw,nosuid,nodev,size={spec.tmpfs_size}",
    ]
    if name is not None:
        command += ["--name", name]
    if spec.user is not None:
        if not re.fullmatch(r"[0-9]+(:[0-9]+)?", spec.user):
            raise UsageError(f"container user {spec.user!r} must be numeric uid[:gid]")
        command += ["--user", spec.user]
    for source, target in spec.mounts:
        source, target = _check_mount(source, target)
        command += ["--mount", f"type=bind,source={source},target={target},readonly"]
    # `--` ends the engine's options, so the image cannot be taken for one.
    command += ["--", spec.image, *spec.argv]
    return command


def _spec(
    engine: str,
    image: str,
    argv: Sequence[str],
    mounts: Sequence[Mount],
    network: Network,
    pull: str,
    user: str | None,
) -> ContainerSpec:
    return ContainerSpec(
        engine=engine,
        image=image,
        argv=tuple(argv),
        mounts=tuple(mounts),
        network=network,
        pull=pull,
        user=user,
    )


def _container_name() -> str:
    return f"comparer-{uuid.uuid4().hex[:12]}"


def _remove_container(engine: str, name: str) -> None:
    # Killing the client does not stop the container, so remove it by name.
    try:
        subprocess.run(  # noqa: S603 - fixed arguments and a name we generated
            [engine, "rm", "--force", name],
            capture_output=True,
            timeout=_CLEANUP_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("could not remove timed-out container %s: %s", name, exc)


def run_container(
    engine: str,
    image: str,
    argv: Sequence[str],
    *,
    stdin: bytes = b"",
    mounts: Sequence[Mount] = (),
    network: Network = "host",
    timeout: float,
    pull: str = "missing",
    user: str | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run `argv` in a confined container of `image` and capture its output.

    Raises subprocess.TimeoutExpired after removing the container when it runs longer
    than `timeout` seconds, and EngineError when the engine cannot be started.
    """
    spec = _spec(engine, image, argv, mounts, network, pull, user)
    name = _container_name()
    command = container_command(spec, name=name)
    log.debug("running %s", command)
    try:
        return subprocess.run(  # noqa: S603 - argument list built and checked above
            command, input=stdin, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        _remove_container(engine, name)
        raise
    except OSError as exc:
        raise EngineError(f"could not start {engine}: {exc}") from exc


async def run_container_async(
    engine: str,
    image: str,
    argv: Sequence[str],
    *,
    stdin: bytes = b"",
    mounts: Sequence[Mount] = (),
    network: Network = "host",
    timeout: float,
    pull: str = "missing",
    user: str | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run `argv` in a confined container like run_container, as a coroutine."""
    spec = _spec(engine, image, argv, mounts, network, pull, user)
    name = _container_name()
    command = container_command(spec, name=name)
    log.debug("running %s", command)
    try:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise EngineError(f"could not start {engine}: {exc}") from exc
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(stdin), timeout)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        await asyncio.to_thread(_remove_container, engine, name)
        raise subprocess.TimeoutExpired(command, timeout) from None
    except asyncio.CancelledError:
        process.kill()
        await process.wait()
        await asyncio.shield(asyncio.to_thread(_remove_container, engine, name))
        raise
    returncode = process.returncode if process.returncode is not None else -1
    return subprocess.CompletedProcess(command, returncode, stdout, stderr)
