"""Probe every address behind a name and find the backend that serves another chain.

A name with several A/AAAA records (or several `--resolve` addresses) is probed once
per address, and the chain each address serves is read with `openssl s_client
-showcerts`. Addresses that agree on chain and verdicts share one row unless
`--each-address` is given. An address that differs is marked, with a finding and an
explanation that names both chains.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import shutil
import socket
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from comparer.errors import UsageError
from comparer.model import Reason, Target, TargetReport
from comparer.pinning import (
    PinOptions,
    bracket,
    describe_address,
    describe_pin,
    describe_sni,
    has_custom_sni,
    is_ip_literal,
)

log = logging.getLogger(__name__)

# Sources of a group's addresses, for the JSON and the labels.
SOURCE_DNS = "dns"
SOURCE_RESOLVE = "--resolve"
SOURCE_NONE = "none"
# Name lookups running at once.
RESOLVE_THREADS = 16


@dataclass(frozen=True)
class BackendChain:
    """The certificates one backend sent, leaf first, as DER."""

    der: tuple[bytes, ...]

    @property
    def leaf_sha256(self) -> str:
        """Return the SHA-256 fingerprint of the leaf, in hex."""
        return hashlib.sha256(self.der[0]).hexdigest()

    @property
    def chain_sha256(self) -> str:
        """Return the SHA-256 of every certificate in the order served."""
        digest = hashlib.sha256()
        for item in self.der:
            digest.update(hashlib.sha256(item).digest())
        return digest.hexdigest()

    def describe(self) -> str:
        """Return one line such as `leaf svc.example from CA (sha256 0131…)`."""
        fingerprint = f"sha256 {self.leaf_sha256[:16]}…"
        try:
            leaf = x509.load_der_x509_certificate(self.der[0])
        except ValueError:
            return f"an unreadable leaf ({fingerprint})"
        subject = _common_name(leaf.subject)
        if leaf.issuer == leaf.subject:
            return f"self-signed leaf {subject} ({fingerprint})"
        extra = len(self.der) - 1
        sent = f", {extra} more sent" if extra else ", sent alone"
        return f"leaf {subject} from {_common_name(leaf.issuer)} ({fingerprint}{sent})"

    def to_json(self) -> dict[str, Any]:
        """Return the fingerprints and the one-line description."""
        return {
            "leaf_sha256": self.leaf_sha256,
            "chain_sha256": self.chain_sha256,
            "certificates": len(self.der),
            "describe": self.describe(),
        }


def _common_name(name: x509.Name) -> str:
    values = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if values:
        value = values[-1].value
        return repr(value if isinstance(value, str) else value.decode("latin-1"))
    return repr(name.rfc4514_string())


def backend_chain(output: str, *, name: str) -> BackendChain | None:
    """Return the chain in `openssl s_client -showcerts` output, or None."""
    from comparer.chain import parse_served_chain

    entries = parse_served_chain(output, name=name)
    der = tuple(entry.certificate.public_bytes(Encoding.DER) for entry in entries)
    return BackendChain(der) if der else None


def showcerts_argv(
    binary: str, host: str, port: int, server_name: str | None
) -> list[str]:
    """Return the s_client argument list that only reads the served chain."""
    # No -verify_return_error and no CA store: a diagnostic read that must get the
    # chain whatever the verdict. The verdicts come from the stacks.
    argv = [binary, "s_client", "-connect", f"{bracket(host)}:{port}", "-showcerts"]
    argv += ["-no-CAfile", "-no-CApath"]
    if server_name is None:
        return [*argv, "-noservername"]
    return [*argv, "-servername", server_name]


async def fetch_backend_chain(
    host: str, port: int, server_name: str | None, *, timeout: float
) -> BackendChain | None:
    """Read the chain that host:port serves for this SNI; None if it sent none."""
    # comparer/chain.py runs s_client and parses its output. Its own argv sends the
    # target's port and host name, but a backend needs its address, port and SNI.
    from comparer.chain import run_command

    binary = shutil.which("openssl")
    if binary is None:
        log.warning("openssl not found on PATH: cannot compare the served chains")
        return None
    argv = showcerts_argv(binary, host, port, server_name)
    try:
        output, _, _ = await run_command(argv, timeout=timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        log.debug("no chain from %s:%d: %r", host, port, exc)
        return None
    return backend_chain(output, name=f"{bracket(host)}:{port}")


# --- expansion ----------------------------------------------------------------------


@dataclass
class AddressGroup:
    """One target as the user gave it and the address targets probed for it.

    `connect_name` and `connect_port` are where the connection goes once
    --connect-to has applied. `source` names where the addresses came from: "dns",
    "--resolve" or "none" (the stacks resolve the name, or it is an IP). `note` explains
    why a name could not be resolved.
    """

    target: Target
    members: list[Target]
    connect_name: str
    connect_port: int
    source: str = SOURCE_NONE
    note: str | None = None


@dataclass
class AddressPlan:
    """Every group of a run and the options that made them."""

    options: PinOptions
    groups: list[AddressGroup] = field(default_factory=list)

    @property
    def targets(self) -> list[Target]:
        """Return every member target once, in input order."""
        seen: dict[str, Target] = {}
        for group in self.groups:
            for member in group.members:
                seen.setdefault(member.key, member)
        return list(seen.values())


async def resolve_addresses(
    name: str, port: int, *, timeout: float, executor: Executor | None = None
) -> list[str]:
    """Return every A and AAAA address of `name`, deduplicated, in resolver order."""
    loop = asyncio.get_running_loop()
    # What loop.getaddrinfo() does, on a pool that the caller can abandon.
    lookup = functools.partial(socket.getaddrinfo, name, port, type=socket.SOCK_STREAM)
    infos = await asyncio.wait_for(loop.run_in_executor(executor, lookup), timeout)
    addresses = [str(info[4][0]) for info in infos]
    return list(dict.fromkeys(addresses))


def _pin(target: Target, address: str | None, port: int) -> Target:
    return replace(
        target,
        address=address if address not in (None, target.host) else None,
        address_port=port if port != target.port else None,
    )


async def plan_group(
    target: Target,
    options: PinOptions,
    *,
    timeout: float,
    executor: Executor | None = None,
) -> AddressGroup:
    """Work out which addresses to probe for one target."""
    target = options.apply_sni(target)
    rule = options.connect_rule(target)
    name = rule.connect_host if rule and rule.connect_host else target.host
    port = rule.connect_port if rule and rule.connect_port else target.port
    pinned = options.pinned_addresses(name, port)

    if pinned is not None and not is_ip_literal(name):
        addresses = list(pinned)
        source = SOURCE_RESOLVE
    elif is_ip_literal(name) or options.each_address is False:
        # An IP literal is its own address; with --no-each-address the stacks
        # resolve the name themselves, as they would without comparer.
        return AddressGroup(target, [_pin(target, name, port)], name, port)
    else:
        note = None
        try:
            addresses = await resolve_addresses(
                name, port, timeout=timeout, executor=executor
            )
        except asyncio.TimeoutError:  # before OSError: 3.11 made it a subclass
            note = f"could not resolve {name} within {timeout:g} s"
        except OSError as exc:
            note = f"could not resolve {name}: {exc.strerror or exc}"
        if note is not None:
            # The stacks try on their own and report the failure in their cells.
            log.debug("%s", note)
            member = _pin(target, name, port)
            return AddressGroup(target, [member], name, port, note=note)
        source = SOURCE_DNS
    if options.each_address is False:
        # One connection, as curl makes: to the first address.
        addresses = addresses[:1]
    members = [_pin(target, address, port) for address in addresses]
    return AddressGroup(target, members, name, port, source=source)


async def plan_addresses(
    targets: Sequence[Target], options: PinOptions, *, timeout: float
) -> AddressPlan:
    """Resolve the targets' addresses, a few names at a time, and return the plan."""
    # A lookup's timeout starts once a thread is free for it, so a long targets
    # file does not time out in the queue. NOTE: a lookup that hangs past its
    # timeout keeps its thread busy, and the lookups after it wait for the rest.
    executor = ThreadPoolExecutor(RESOLVE_THREADS, thread_name_prefix="resolve")
    semaphore = asyncio.Semaphore(RESOLVE_THREADS)

    async def one(target: Target) -> AddressGroup:
        async with semaphore:
            return await plan_group(target, options, timeout=timeout, executor=executor)

    try:
        groups = await asyncio.gather(*(one(target) for target in targets))
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
    return AddressPlan(options=options, groups=list(groups))


def unused_rules(plan: AddressPlan) -> list[str]:
    """Return the --resolve and --connect-to values that matched no target."""
    unused = []
    for rule in plan.options.resolve:
        if not any(
            (group.connect_name, group.connect_port) == (rule.host, rule.port)
            for group in plan.groups
        ):
            unused.append(f"--resolve {rule.host}:{rule.port}")
    for connect in plan.options.connect_to:
        if not any(connect.matches(group.target) for group in plan.groups):
            host = connect.host or "*"
            port = connect.port or "*"
            unused.append(f"--connect-to {host}:{port}")
    return unused


# --- comparing the addresses of a group -------------------------------------------


ChainKey = tuple[str, int, str | None]


def _chain_key(target: Target, server_name: str | None) -> ChainKey:
    return (target.connect_host, target.connect_port, server_name)


def _verdicts(report: TargetReport) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((r.column, r.reason.value) for r in report.results))


def _is_unreachable(report: TargetReport) -> bool:
    return bool(report.results) and all(
        r.reason is Reason.CONNECT for r in report.results
    )


@dataclass(frozen=True)
class _Row:
    """A member of a group with what the comparison needs."""

    target: Target
    report: TargetReport
    chain: BackendChain | None

    @property
    def address(self) -> str:
        return describe_address(self.target) or bracket(self.target.connect_host)

    @property
    def signature(self) -> tuple[Any, ...]:
        return (_fingerprint(self), _verdicts(self.report))


def _fingerprint(row: _Row) -> str | None:
    return row.chain.chain_sha256 if row.chain else None


def _reference(rows: Sequence[_Row]) -> _Row:
    """Pick the row that the others are compared with.

    It is the one with the most common chain and verdicts. On a tie it is the first
    one that every stack verified, else the first one.
    """
    counts = Counter(row.signature for row in rows)
    best = max(counts.values())
    tied = [row for row in rows if counts[row.signature] == best]
    return next((row for row in tied if row.report.all_ok), tied[0])


def _difference_text(row: _Row, reference: _Row) -> str:
    parts = []
    if _fingerprint(row) != _fingerprint(reference):
        mine = row.chain.describe() if row.chain else "no certificate"
        theirs = reference.chain.describe() if reference.chain else "no certificate"
        parts.append(
            f"{row.address} serves {mine}, while {reference.address} serves {theirs}"
        )
    if _verdicts(row.report) != _verdicts(reference.report):
        parts.append(
            f"the verdicts differ: {_verdict_summary(row.report)} at {row.address}, "
            f"{_verdict_summary(reference.report)} at {reference.address}"
        )
    return (
        "; ".join(parts) + ". Clients reach every backend through the same name, "
        "so whether they succeed depends on the address they get."
    )


def _verdict_summary(report: TargetReport) -> str:
    reasons = Counter(r.reason.value for r in report.results)
    return ", ".join(
        f"{reason} ({count})" if len(reasons) > 1 else reason
        for reason, count in reasons.items()
    )


def _finding(kind: str, severity: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "severity": severity, "text": text, **extra}


def compare_group(
    group: AddressGroup,
    reports: dict[str, TargetReport],
    chains: dict[ChainKey, BackendChain | None],
    *,
    collapse: bool,
) -> list[TargetReport]:
    """Mark the members that differ and return the rows to show for the group."""
    rows = [
        _Row(
            member,
            reports[member.key],
            chains.get(_chain_key(member, member.server_name)),
        )
        for member in group.members
        if member.key in reports
    ]
    if len(rows) < 2:
        for row in rows:
            if _shows_pin(group):
                row.report.label = describe_pin(row.target)
        return [row.report for row in rows]

    reachable = [row for row in rows if not _is_unreachable(row.report)]
    folded: list[_Row] = []
    if collapse and reachable and len(reachable) < len(rows):
        # Clients fall back to the next address when one refuses the connection, so
        # by default such an address is a note on the group, not a failing row.
        folded = [row for row in rows if _is_unreachable(row.report)]
        rows = reachable
    reference = _reference(rows)

    shown: list[_Row] = []
    covered: dict[int, list[_Row]] = {}
    for row in rows:
        if collapse and row is not reference and row.signature == reference.signature:
            covered.setdefault(id(reference), []).append(row)
            continue
        shown.append(row)
    for row in shown:
        _annotate(row, reference, covered.get(id(row), []), group)
    if folded:
        addresses = ", ".join(row.address for row in folded)
        reference.report.findings.append(
            _finding(
                "address-unreachable",
                "warning",
                f"{addresses}: every stack failed to connect; clients that fall back "
                "to another address still connect (--each-address shows the row)",
                addresses=[row.target.connect_host for row in folded],
            )
        )
    return [row.report for row in shown]


def _shows_pin(group: AddressGroup) -> bool:
    first = group.members[0]
    return (
        group.source == SOURCE_RESOLVE
        or first.address_port is not None
        or has_custom_sni(first)
    )


def _annotate(
    row: _Row, reference: _Row, covered: list[_Row], group: AddressGroup
) -> None:
    report = row.report
    differs = row.signature != reference.signature
    # Addresses that agree with this row share it; ◆ marks a backend that differs.
    addresses = ", ".join(other.address for other in [row, *covered])
    parts = [("◆ " if differs else "") + addresses, describe_sni(row.target)]
    report.label = " · ".join(part for part in parts if part)
    report.extra["address_group"] = group.target.raw
    report.extra["backend_differs"] = differs
    report.extra["addresses"] = [
        {
            "address": member.target.connect_host,
            "port": member.target.connect_port,
            "served_chain": member.chain.to_json() if member.chain else None,
        }
        for member in [row, *covered]
    ]
    if differs:
        text = _difference_text(row, reference)
        kind = "backend-differs"
        report.findings.append(
            _finding(
                kind,
                "warning",
                text,
                address=row.target.connect_host,
                compared_with=reference.target.connect_host,
            )
        )
        report.explanations.append({"kind": kind, "text": text})


# --- SNI ----------------------------------------------------------------------------


def compare_sni(
    report: TargetReport, chains: dict[ChainKey, BackendChain | None]
) -> None:
    """Note whether the chain changes when the SNI does, for --sni and --no-sni."""
    target = report.target
    sent = chains.get(_chain_key(target, target.server_name))
    usual = chains.get(_chain_key(target, target.host))
    as_sent = f"SNI {target.server_name}" if target.server_name else "no SNI"
    where = bracket(target.connect_host)
    if sent is None or usual is None:
        return
    checks = f"verification still checks {target.host}"
    if sent.chain_sha256 == usual.chain_sha256:
        text = (
            f"{where} serves the same chain with {as_sent} as with SNI "
            f"{target.host}: {sent.describe()}; {checks}."
        )
        report.findings.append(_finding("sni-same-chain", "info", text))
        return
    text = (
        f"with {as_sent}, {where} serves {sent.describe()}; with SNI {target.host} "
        f"it serves {usual.describe()}. Clients that send {as_sent} get the first "
        f"({checks})."
    )
    report.findings.append(_finding("sni-changes-chain", "warning", text))


# --- the whole run ------------------------------------------------------------------


def _chain_requests(plan: AddressPlan, reports: dict[str, TargetReport]) -> set[Any]:
    wanted: set[tuple[str, int, str | None]] = set()
    for group in plan.groups:
        members = [m for m in group.members if m.key in reports]
        if len(members) > 1:
            wanted |= {_chain_key(m, m.server_name) for m in members}
        for member in members:
            if has_custom_sni(member):
                wanted.add(_chain_key(member, member.server_name))
                wanted.add(_chain_key(member, member.host))
    return wanted


async def fetch_chains(
    keys: Iterable[ChainKey], *, timeout: float, concurrency: int = 16
) -> dict[ChainKey, BackendChain | None]:
    """Fetch the served chain for every (host, port, SNI), a few at a time."""
    semaphore = asyncio.Semaphore(concurrency)

    async def one(key: ChainKey) -> tuple[ChainKey, BackendChain | None]:
        async with semaphore:
            chain = await fetch_backend_chain(*key, timeout=timeout)
        return key, chain

    return dict(await asyncio.gather(*(one(key) for key in sorted(keys, key=str))))


def finish_reports(
    plan: AddressPlan,
    reports: Sequence[TargetReport],
    chains: dict[ChainKey, BackendChain | None],
) -> list[TargetReport]:
    """Return the rows to show: groups compared, agreeing addresses sharing a row."""
    by_key = {report.target.key: report for report in reports}
    collapse = plan.options.each_address is None
    rows: list[TargetReport] = []
    done: set[str] = set()
    for group in plan.groups:
        keys = {member.key for member in group.members}
        if keys & done:
            continue  # the same target given twice
        done |= keys
        group_rows = compare_group(group, by_key, chains, collapse=collapse)
        for report in group_rows:
            if group.note:
                report.findings.append(
                    _finding("resolve-failed", "warning", group.note)
                )
            if has_custom_sni(report.target):
                compare_sni(report, chains)
        rows.extend(group_rows)
    # A report outside every group (none is expected) keeps its place.
    rows.extend(r for r in reports if r.target.key not in done)
    return rows


async def compare_addresses(
    plan: AddressPlan, reports: Sequence[TargetReport], *, timeout: float
) -> list[TargetReport]:
    """Fetch the chains the comparison needs and return the rows to show."""
    by_key = {report.target.key: report for report in reports}
    chains = await fetch_chains(_chain_requests(plan, by_key), timeout=timeout)
    return finish_reports(plan, reports, chains)


# --- the command line ---------------------------------------------------------------


def plan_run(
    targets: Sequence[Target], options: PinOptions, *, timeout: float
) -> AddressPlan:
    """Plan the addresses of a run; a pin that matches no target is a UsageError."""
    plan = asyncio.run(plan_addresses(targets, options, timeout=timeout))
    unused = unused_rules(plan)
    if unused:
        raise UsageError(
            f"{unused[0]} matches no target; add that HOST:PORT as a target or fix "
            "the option"
        )
    return plan


def finish_run(
    plan: AddressPlan, reports: Sequence[TargetReport], *, timeout: float
) -> tuple[list[TargetReport], bool]:
    """Compare the addresses; return the rows and whether Ctrl-C cut it short."""
    try:
        rows = asyncio.run(compare_addresses(plan, reports, timeout=timeout))
    except KeyboardInterrupt:
        return list(reports), True
    return rows, False
