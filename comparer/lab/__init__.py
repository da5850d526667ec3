"""A local catalogue of deliberately broken TLS endpoints.

`Lab` generates fresh CA hierarchies, starts one loopback server per scenario in a
background thread, and removes every generated file when it stops::

    with Lab() as lab:
        good = lab.scenario("good")
        ...  # probe good.target, trusting lab.ca_bundle
"""

from __future__ import annotations

import logging
import shutil
import ssl
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from cryptography.hazmat.primitives import serialization

from comparer.lab.pki import (
    PkiError,
    pem_certificates,
    pem_private_key,
    write_private,
)
from comparer.lab.scenarios import (
    CATALOGUE,
    Entry,
    Pki,
    Scenario,
    find_entry,
    make_pki,
    names,
)
from comparer.lab.server import LabServer, Site, bind_localhost, make_tls_context

__all__ = ["Lab", "LabError", "Scenario", "names"]

logger = logging.getLogger(__name__)


class LabError(Exception):
    """The lab could not start. The message names the cause and the remedy."""


class Lab:
    """Deliberately broken TLS endpoints on loopback, one port per scenario.

    `hostile` adds the endpoints that misbehave below the certificate level. `names`,
    when given, selects scenarios from the whole catalogue, hostile ones included,
    and raises ValueError for a name that is not in it.
    """

    def __init__(
        self, *, hostile: bool = False, names: Iterable[str] | None = None
    ) -> None:
        if names is None:
            self._entries = [e for e in CATALOGUE if hostile or not e.hostile]
        else:
            requested = {_entry_for_option(name).name for name in names}
            self._entries = [e for e in CATALOGUE if e.name in requested]
        self._directory: Path | None = None
        self._server: LabServer | None = None
        self._sites: list[Site] = []
        self._scenarios: list[Scenario] = []
        self.start_seconds: float | None = None

    def __enter__(self) -> Lab:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Generate the certificates, write the bundles and start every server."""
        if self._directory is not None:
            raise RuntimeError("this Lab is already running; stop() it first")
        started = time.perf_counter()
        self._directory = Path(tempfile.mkdtemp(prefix="comparer-lab-"))
        try:
            self._start(self._directory)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.perf_counter() - started
        logger.debug(
            "lab started %d scenarios in %.2f s",
            len(self._scenarios),
            self.start_seconds,
        )

    def _start(self, directory: Path) -> None:
        try:
            pki = make_pki(directory)
        except PkiError as exc:
            raise LabError(str(exc)) from exc
        write_private(
            self.ca_bundle, pem_certificates(r.certificate for r in pki.trusted_roots)
        )
        write_private(
            self.system_plus_internal,
            _system_bundle() + pem_certificates([pki.internal_root.certificate]),
        )
        for entry in self._entries:
            site, scenario = self._build(entry, pki)
            self._sites.append(site)
            self._scenarios.append(scenario)
        self._server = LabServer(self._sites)
        self._server.start()

    def _build(self, entry: Entry, pki: Pki) -> tuple[Site, Scenario]:
        try:
            endpoint = entry.build(pki)
        except PkiError as exc:
            raise LabError(f"lab scenario {entry.name!r}: {exc}") from exc
        context = None
        if endpoint.chain:
            context = make_tls_context(endpoint, pki.workdir, entry.name)
        if endpoint.client_identity is not None:
            certificate, key = endpoint.client_identity
            write_private(
                self.client_certificate,
                pem_certificates([certificate]) + pem_private_key(key),
            )
        sockets = bind_localhost()
        site = Site(entry.name, endpoint.behaviour, sockets, context)
        scenario = Scenario(
            name=entry.name,
            description=entry.description,
            host=entry.host,
            port=site.port,
            expect=entry.expect,
            trust=entry.trust,
            hostile=entry.hostile,
            served_chain=tuple(
                c.public_bytes(serialization.Encoding.DER) for c in endpoint.chain
            ),
            lenient=entry.lenient,
        )
        return site, scenario

    def stop(self) -> None:
        """Close every server and connection and remove the lab's directory."""
        if self._server is not None:
            self._server.stop()
            self._server = None
        for site in self._sites:
            for sock in site.sockets:
                sock.close()
        self._sites = []
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    @property
    def directory(self) -> Path:
        """The private (0700) directory with the bundles and served chains."""
        if self._directory is None:
            raise RuntimeError("the Lab is not running; use it in a with block")
        return self._directory

    @property
    def ca_bundle(self) -> Path:
        """The PEM bundle of the lab's trusted roots, for --ca-file."""
        return self.directory / "ca-bundle.pem"

    @property
    def system_plus_internal(self) -> Path:
        """The host's default CA file plus the internal root, for SSL_CERT_FILE."""
        return self.directory / "system-plus-internal.pem"

    @property
    def client_certificate(self) -> Path:
        """The client certificate and key (PEM) that the client-certificate scenario
        accepts, written only when that scenario runs."""
        return self.directory / "client-identity.pem"

    @property
    def scenarios(self) -> list[Scenario]:
        """The running scenarios in catalogue order."""
        return list(self._scenarios)

    def scenario(self, name: str) -> Scenario:
        """Return the running scenario called `name`, or raise KeyError naming it."""
        for scenario in self._scenarios:
            if scenario.name == name:
                return scenario
        running = ", ".join(s.name for s in self._scenarios) or "none"
        raise KeyError(f"lab scenario {name!r} is not running (running: {running})")


def _entry_for_option(name: str) -> Entry:
    try:
        return find_entry(name)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None


def _system_bundle() -> bytes:
    """Read the CA file OpenSSL uses by default, or return b"" when there is none.

    `ssl.get_default_verify_paths()` honours SSL_CERT_FILE, so a variable set when the
    lab starts replaces the system file here as it would for OpenSSL.
    """
    cafile = ssl.get_default_verify_paths().cafile
    if not cafile:
        return b""
    try:
        data = Path(cafile).read_bytes()
    except OSError as exc:
        logger.warning("could not read the system CA file %s: %s", cafile, exc)
        return b""
    return data if data.endswith(b"\n") else data + b"\n"
