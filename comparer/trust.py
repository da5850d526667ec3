"""Trust sources of the host stacks, each found the way that stack finds it.

The rules mirror the installed libraries (checked against requests 2.34, httpx 0.29,
aiohttp 3.14 and OpenSSL 3.0): the point of comparer is that they differ.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import ssl
import subprocess
from collections.abc import Mapping
from pathlib import Path

from comparer.model import TrustSource

# Environment variables that choose each host stack's default trust, in the order the
# stack reads them.
STACK_TRUST_VARIABLES: dict[str, tuple[str, ...]] = {
    "openssl": ("SSL_CERT_FILE", "SSL_CERT_DIR"),
    "stdlib": ("SSL_CERT_FILE", "SSL_CERT_DIR"),
    "stdlib-strict": ("SSL_CERT_FILE", "SSL_CERT_DIR"),
    "httpx": ("SSL_CERT_FILE", "SSL_CERT_DIR"),
    "aiohttp": ("SSL_CERT_FILE", "SSL_CERT_DIR"),
    "requests": ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"),
}
# Every such variable, each once.
TRUST_VARIABLES = tuple(
    dict.fromkeys(name for names in STACK_TRUST_VARIABLES.values() for name in names)
)

_HASHED_NAME = re.compile(r"^[0-9a-f]{8}\.[0-9]+$")
_PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"


def count_roots(path: str | Path | None) -> int | None:
    """Count the certificates in a PEM bundle or the hashed links in a directory."""
    if path is None:
        return None
    return _count_roots_cached(str(path), _mtime(path))


def _mtime(path: str | Path) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return -1.0


@functools.lru_cache(maxsize=64)
def _count_roots_cached(path: str, mtime: float) -> int | None:
    if mtime < 0:
        return None
    if os.path.isdir(path):
        try:
            return sum(1 for name in os.listdir(path) if _HASHED_NAME.match(name))
        except OSError:
            return None
    try:
        with open(path, "rb") as handle:
            return handle.read().count(_PEM_BEGIN)
    except OSError:
        return None


def _source(origin: str, path: str, **extra: str | None) -> TrustSource:
    kind = "dir" if os.path.isdir(path) else "file"
    return TrustSource(
        origin=origin,
        path=path,
        kind=kind,
        roots=count_roots(path),
        certifi_version=extra.get("certifi_version"),
    )


def certifi_source() -> TrustSource:
    """Describe the certifi bundle installed next to comparer."""
    import certifi

    return _source("certifi", certifi.where(), certifi_version=certifi.__version__)


def ca_file_source(ca_file: Path) -> TrustSource:
    """Describe the bundle given with --ca-file."""
    return _source("--ca-file", str(ca_file))


def _env_file_or_dir(env: Mapping[str, str]) -> TrustSource | None:
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        value = env.get(name)
        if value:
            return _source(name, value)
    return None


def openssl_default_source(env: Mapping[str, str] | None = None) -> TrustSource:
    """Describe the default verify paths of the OpenSSL that Python links.

    OpenSSL reads SSL_CERT_FILE and SSL_CERT_DIR when a context loads its defaults, and
    loads both the file and the directory, so the file is reported when it exists.
    """
    env = os.environ if env is None else env
    from_env = _env_file_or_dir(env)
    if from_env is not None:
        return from_env
    paths = ssl.get_default_verify_paths()
    if paths.cafile:
        # Debian's /usr/lib/ssl/cert.pem links to the bundle in /etc/ssl/certs; the
        # real path lets the stdlib and openssl columns name the same file.
        return _source("default", os.path.realpath(paths.cafile))
    if paths.capath:
        return _source("default", paths.capath)
    return TrustSource(origin="default", path=paths.openssl_cafile, roots=0)


@functools.lru_cache(maxsize=1)
def openssl_cli_dir() -> str | None:
    """Return OPENSSLDIR of the `openssl` command line, or None without the CLI."""
    binary = shutil.which("openssl")
    if binary is None:
        return None
    try:
        out = subprocess.run(
            [binary, "version", "-d"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r'OPENSSLDIR: "([^"]*)"', out)
    return match.group(1) if match else None


def openssl_cli_source(env: Mapping[str, str] | None = None) -> TrustSource:
    """Describe the trust of `openssl s_client` without -CAfile."""
    env = os.environ if env is None else env
    from_env = _env_file_or_dir(env)
    if from_env is not None:
        return from_env
    directory = openssl_cli_dir()
    if directory is None:
        return TrustSource(origin="default", path=None)
    cert_pem = os.path.join(directory, "cert.pem")
    if os.path.exists(cert_pem):
        return _source("default", os.path.realpath(cert_pem))
    return _source("default", os.path.join(directory, "certs"))


def requests_source(env: Mapping[str, str] | None = None) -> TrustSource:
    """Describe the trust requests uses: REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, certifi."""
    env = os.environ if env is None else env
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        value = env.get(name)
        if value:
            return _source(name, value)
    return certifi_source()


def httpx_source(env: Mapping[str, str] | None = None) -> TrustSource:
    """Describe httpx's trust: SSL_CERT_FILE, then SSL_CERT_DIR, then certifi."""
    env = os.environ if env is None else env
    return _env_file_or_dir(env) or certifi_source()


def default_trust(stack: str, env: Mapping[str, str] | None = None) -> TrustSource:
    """Return the trust source a host stack uses by default, with no --ca-file."""
    if stack == "openssl":
        return openssl_cli_source(env)
    if stack == "requests":
        return requests_source(env)
    if stack == "httpx":
        return httpx_source(env)
    if stack in {"stdlib", "aiohttp", "stdlib-strict"}:
        return openssl_default_source(env)
    raise ValueError(f"unknown stack {stack!r}")
