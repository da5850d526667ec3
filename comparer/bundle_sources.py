"""Read the inputs of `comparer bundle`: files, wheels, hashed directories, the
stores of host stacks and the default bundle of a container image."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import zipfile
from dataclasses import dataclass

from comparer.bundle_model import Finding, ParsedInput, Severity
from comparer.bundle_names import subject_hash
from comparer.bundle_parse import parse_bytes
from comparer.errors import UsageError

log = logging.getLogger(__name__)

STACK_NAMES = ("openssl", "stdlib", "requests", "httpx", "aiohttp")
IMAGE_PREFIX = "image:"

# A CA bundle is well under a megabyte; this bound keeps a wrong path such as a
# disk image from being read into memory.
MAX_INPUT_BYTES = 32 * 1024 * 1024
WHEEL_MEMBER = "certifi/cacert.pem"

# Paths of the PEM bundle that OpenSSL and most clients read, by distribution. The
# first file that exists is used. Debian, Ubuntu, Alpine and Arch use the first path.
IMAGE_BUNDLE_PATHS = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",
    "/var/lib/ca-certificates/ca-bundle.pem",
    "/etc/ssl/cert.pem",
)
# The script gets no value from the user: the paths above are constants. It names the
# file it found on stderr after a marker, because the engine may also write there.
_PATH_MARKER = "comparer-bundle-path="
_IMAGE_SCRIPT = (
    f"for p in {' '.join(IMAGE_BUNDLE_PATHS)}; do "
    f'if [ -s "$p" ]; then echo "{_PATH_MARKER}$p" >&2; exec cat "$p"; fi; '
    "done; exit 3"
)
_HASH_LINK = re.compile(r"^([0-9a-f]{8})\.([0-9]+)$")


@dataclass
class LoadedSource:
    """One input read into memory.

    `label` is the input as the user named it ("bundle.pem", "stack:requests",
    "image:debian:12"). `path` is the file or directory read, None for images.
    `description` names the store that a stack or image uses, None for plain files.
    """

    label: str
    path: str | None
    parsed: ParsedInput
    description: str | None = None


def read_input_bytes(path: str) -> bytes:
    """Read a whole input file, or raise UsageError naming the file and the remedy."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_INPUT_BYTES + 1)
    except FileNotFoundError:
        raise UsageError(f"{path}: file not found; check the path") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory that cannot be read") from None
    except OSError as exc:
        raise UsageError(
            f"{path}: cannot read it ({exc.strerror}); check its permissions"
        ) from None
    if len(data) > MAX_INPUT_BYTES:
        raise UsageError(
            f"{path}: larger than {MAX_INPUT_BYTES // (1024 * 1024)} MiB; "
            "pass a certificate file or bundle"
        )
    return data


def read_wheel(data: bytes, path: str) -> ParsedInput:
    """Read certifi's cacert.pem out of a wheel or other zip file."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            # The size in the directory can lie, so the read itself is bounded too:
            # a small zip can expand to gigabytes.
            if archive.getinfo(WHEEL_MEMBER).file_size > MAX_INPUT_BYTES:
                raise UsageError(
                    f"{path}!{WHEEL_MEMBER}: larger than "
                    f"{MAX_INPUT_BYTES // (1024 * 1024)} MiB unpacked; pass a real "
                    "certifi wheel"
                )
            with archive.open(WHEEL_MEMBER) as handle:
                member = handle.read(MAX_INPUT_BYTES + 1)
            if len(member) > MAX_INPUT_BYTES:
                raise UsageError(
                    f"{path}!{WHEEL_MEMBER}: larger than the size its zip entry "
                    "states; the file is damaged"
                )
    except KeyError:
        raise UsageError(
            f"{path}: zip file without {WHEEL_MEMBER}; pass a certifi wheel or a "
            "PEM bundle"
        ) from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise UsageError(
            f"{path}: damaged zip file ({exc}); download it again"
        ) from None
    return parse_bytes(member, f"{path}!{WHEEL_MEMBER}")


def load_file(path: str) -> ParsedInput:
    """Read a PEM or DER file, a wheel, or an OpenSSL hashed directory."""
    if os.path.isdir(path):
        return load_hashed_directory(path)
    data = read_input_bytes(path)
    if data.startswith(b"PK\x03\x04"):
        return read_wheel(data, path)
    return parse_bytes(data, path)


def load_hashed_directory(directory: str) -> ParsedInput:
    """Read an OpenSSL hashed directory the way OpenSSL's lookup finds certificates.

    OpenSSL opens only files named `<subject hash>.<n>`, so each one is audited and
    checked against the hash of its subject. Certificates in other files of the
    directory are reported when no hash link contains them, because OpenSSL never
    loads those.
    """
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        raise UsageError(
            f"{directory}: cannot list the directory ({exc.strerror}); check its "
            "permissions"
        ) from None
    result = ParsedInput(name=directory)
    loose: list[str] = []
    for name in names:
        path = os.path.join(directory, name)
        match = _HASH_LINK.match(name)
        if match is None:
            if os.path.isfile(path):
                loose.append(path)
            continue
        result.extend(_load_hash_link(path, match.group(1)))

    _report_unhashed(result, loose, directory)
    if not result.certificates:
        result.findings.append(
            Finding(
                Severity.ERROR,
                "no-certificates",
                f"no <hash>.<n> link with a certificate in {directory}, so OpenSSL "
                f"trusts nothing from it; run `openssl rehash {directory}`",
                file=directory,
            )
        )
    return result


def _load_hash_link(path: str, expected: str) -> ParsedInput:
    if not os.path.exists(path):
        return ParsedInput(
            name=path,
            findings=[
                Finding(
                    Severity.ERROR,
                    "dangling-link",
                    f"link to {os.readlink(path)!r}, which does not exist; remove it "
                    "or reinstall the certificate",
                    file=path,
                )
            ],
        )
    parsed = parse_bytes(read_input_bytes(path), path)
    for entry in parsed.certificates:
        actual = subject_hash(entry.certificate.subject)
        if actual != expected:
            parsed.findings.append(
                entry.finding(
                    Severity.WARNING,
                    "hash-mismatch",
                    f"the subject hash is {actual} but the link is named "
                    f"{expected}, so OpenSSL never finds this certificate; run "
                    "`openssl rehash` on the directory",
                )
            )
    return parsed


def _report_unhashed(result: ParsedInput, loose: list[str], directory: str) -> None:
    hashed = {entry.fingerprint for entry in result.certificates}
    reported: set[str] = set()
    for path in loose:
        try:
            data = read_input_bytes(path)
        except UsageError:
            continue
        for entry in parse_bytes(data, path).certificates:
            if entry.fingerprint in hashed or entry.fingerprint in reported:
                continue
            reported.add(entry.fingerprint)
            result.findings.append(
                entry.finding(
                    Severity.WARNING,
                    "not-hashed",
                    "no <hash>.<n> link holds this certificate, so OpenSSL never "
                    f"loads it; run `openssl rehash {directory}`",
                )
            )


def load_stack(name: str) -> LoadedSource:
    """Read the trust store that a host stack uses by default."""
    from comparer.trust import default_trust

    if name not in STACK_NAMES:
        raise UsageError(
            f"unknown stack {name!r}; choose from: {', '.join(STACK_NAMES)}"
        )
    source = default_trust(name)
    if source.path is None:
        raise UsageError(
            f"stack {name}: no trust store found (is the openssl command installed?)"
        )
    return LoadedSource(
        label=f"stack:{name}",
        path=source.path,
        parsed=load_file(source.path),
        description=source.describe(),
    )


@dataclass(frozen=True)
class ImageOptions:
    """Options for running an image.

    `engine` is a command name, or None for docker and then podman. `pull` is the
    pull policy (never, missing, always) and `timeout` the time limit in seconds.
    """

    engine: str | None = None
    pull: str = "missing"
    timeout: float = 120.0


def load_image(reference: str, options: ImageOptions) -> LoadedSource:
    """Read the default CA bundle of a container image with a fixed `cat` command.

    The container runs with no network. Raises UsageError when no container engine
    runs, or the image has no shell or none of IMAGE_BUNDLE_PATHS.
    """
    from comparer import engine as engines

    engines.check_image_ref(reference)
    binary = engines.find_engine(options.engine)
    try:
        completed = engines.run_container(
            binary,
            reference,
            ["/bin/sh", "-c", _IMAGE_SCRIPT],
            network="none",
            timeout=options.timeout,
            pull=options.pull,
        )
    except subprocess.TimeoutExpired:
        raise UsageError(
            f"image {reference}: reading the bundle timed out after "
            f"{options.timeout:g}s; pull the image first or raise --timeout"
        ) from None
    stderr = completed.stderr.decode("utf-8", "replace").strip()
    if completed.returncode == 3:
        raise UsageError(
            f"image {reference}: none of {', '.join(IMAGE_BUNDLE_PATHS)} exists; "
            "install ca-certificates in the image"
        )
    if completed.returncode != 0:
        # The engine's own error comes first; a usage hint may follow it.
        lines = [line for line in stderr.splitlines() if line.strip()]
        cause = lines[0] if lines else f"exit status {completed.returncode}"
        raise UsageError(
            f"image {reference}: could not read the CA bundle ({cause}); check the "
            "image name and that it has /bin/sh and cat"
        )
    found = [line for line in stderr.splitlines() if line.startswith(_PATH_MARKER)]
    path = found[-1][len(_PATH_MARKER) :] if found else "?"
    label = f"{IMAGE_PREFIX}{reference}"
    return LoadedSource(
        label=label,
        path=None,
        parsed=parse_bytes(completed.stdout, f"{label}:{path}"),
        description=f"{path} in {reference}",
    )


def load_spec(spec: str, options: ImageOptions) -> LoadedSource:
    """Read a store named as a stack, `image:REF`, or a path.

    A stack name wins over a file of the same name; write `./openssl` for the file.
    """
    if spec in STACK_NAMES:
        return load_stack(spec)
    if spec.startswith(IMAGE_PREFIX):
        return load_image(spec[len(IMAGE_PREFIX) :], options)
    return LoadedSource(label=spec, path=spec, parsed=load_file(spec))
