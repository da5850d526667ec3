"""Pin a target to addresses without DNS, as curl's --resolve and --connect-to do.

The options only change where the TCP connection goes and, with --sni/--no-sni, the
name sent in the ClientHello. Every stack still verifies the certificate against the
target's host name with its own default trust. This module parses the options and
contains the per-stack helpers that keep that promise, which the stacks import.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from comparer.errors import UsageError
from comparer.model import ProbeResult, Reason, Target
from comparer.reasons import iter_exception_chain
from comparer.targets import TargetError, parse_target

# OpenSSL's verify code for a name that the certificate does not cover.
X509_V_ERR_HOSTNAME_MISMATCH = 62


@dataclass(frozen=True)
class ResolveRule:
    """One `--resolve HOST:PORT:ADDR[,ADDR…]`: connect to these addresses for HOST."""

    host: str
    port: int
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class ConnectToRule:
    """One `--connect-to HOST:PORT:CONNECT_HOST:CONNECT_PORT`.

    An empty HOST or PORT (None) matches any; an empty CONNECT_HOST or CONNECT_PORT
    (None) keeps the target's own, as in curl.
    """

    host: str | None
    port: int | None
    connect_host: str | None
    connect_port: int | None

    def matches(self, target: Target) -> bool:
        """Return whether this rule applies to the target."""
        host_ok = self.host is None or self.host == target.host
        return host_ok and (self.port is None or self.port == target.port)


@dataclass(frozen=True)
class PinOptions:
    """Address and SNI options of one run.

    `each_address` is None for the default (every address of a name, agreeing
    addresses sharing a row), True for one row per address, False to let each stack
    resolve the name itself. `sni` is the name to send instead of the host;
    `send_sni=False` sends none.
    """

    resolve: tuple[ResolveRule, ...] = ()
    connect_to: tuple[ConnectToRule, ...] = ()
    sni: str | None = None
    send_sni: bool = True
    each_address: bool | None = None

    def apply_sni(self, target: Target) -> Target:
        """Return the target with this run's SNI choice."""
        if not self.send_sni:
            return replace(target, send_sni=False)
        if self.sni is not None and self.sni != target.host:
            return replace(target, sni=self.sni)
        return target

    def connect_rule(self, target: Target) -> ConnectToRule | None:
        """Return the first --connect-to rule that applies, as curl picks it."""
        return next((r for r in self.connect_to if r.matches(target)), None)

    def pinned_addresses(self, host: str, port: int) -> tuple[str, ...] | None:
        """Return the --resolve addresses for host:port, or None without a rule."""
        for rule in self.resolve:
            if rule.host == host and rule.port == port:
                return rule.addresses
        return None

    def to_json(self) -> dict[str, Any]:
        """Return the options as they appear in the JSON settings."""
        return {
            "each_address": self.each_address,
            "resolve": [
                f"{r.host}:{r.port}:{','.join(map(bracket, r.addresses))}"
                for r in self.resolve
            ],
            "connect_to": [
                ":".join(
                    [
                        r.host or "",
                        str(r.port or ""),
                        bracket(r.connect_host or ""),
                        str(r.connect_port or ""),
                    ]
                )
                for r in self.connect_to
            ],
            "sni": self.sni if self.send_sni else None,
            "send_sni": self.send_sni,
        }


def bracket(host: str) -> str:
    """Return an IPv6 literal in brackets and anything else unchanged."""
    return f"[{host}]" if ":" in host else host


def _reject_option_like(option: str, text: str) -> None:
    if text.startswith("-"):
        raise UsageError(f"invalid {option} {text!r}: starts with '-'")


def _split_fields(option: str, text: str, count: int) -> list[str]:
    """Split on ':' outside brackets into exactly `count` fields."""
    fields: list[str] = []
    current, depth = "", 0
    for char in text:
        if char == ":" and depth == 0 and len(fields) < count - 1:
            fields.append(current)
            current = ""
            continue
        depth += {"[": 1, "]": -1}.get(char, 0)
        current += char
    fields.append(current)
    if len(fields) != count:
        shape = {3: "HOST:PORT:ADDR[,ADDR…]", 4: "HOST:PORT:CONNECT_HOST:CONNECT_PORT"}
        raise UsageError(f"invalid {option} {text!r}: expected {shape[count]}")
    return fields


def _parse_host(option: str, text: str, host: str, port: str) -> tuple[str, int]:
    """Check host and port with the target parser and return them normalised."""
    try:
        target = parse_target(f"{host}:{port}")
    except TargetError as exc:
        reason = str(exc).split(": ", 1)[-1]
        raise UsageError(f"invalid {option} {text!r}: {reason}") from None
    if target.path != "/" or target.raw.count("://"):
        raise UsageError(f"invalid {option} {text!r}: give HOST:PORT, not a URL")
    return target.host, target.port


def _parse_address(option: str, text: str, value: str) -> str:
    try:
        return ipaddress.ip_address(value.strip("[]")).compressed
    except ValueError:
        raise UsageError(
            f"invalid {option} {text!r}: {value!r} is not an IP address"
        ) from None


def parse_resolve(text: str) -> ResolveRule:
    """Parse `HOST:PORT:ADDR[,ADDR…]` with IPv6 addresses in brackets, as curl."""
    option = "--resolve"
    _reject_option_like(option, text)
    host, port, addresses = _split_fields(option, text, 3)
    host, port_number = _parse_host(option, text, host, port)
    values = [part for part in addresses.split(",")]
    if not all(values):
        raise UsageError(f"invalid {option} {text!r}: give at least one address")
    pinned = [_parse_address(option, text, value) for value in values]
    return ResolveRule(host, port_number, tuple(dict.fromkeys(pinned)))


def parse_connect_to(text: str) -> ConnectToRule:
    """Parse `HOST:PORT:CONNECT_HOST:CONNECT_PORT`; empty fields mean any or same."""
    option = "--connect-to"
    _reject_option_like(option, text)
    host, port, connect_host, connect_port = _split_fields(option, text, 4)
    # A placeholder port or host lets the target parser check each half alone.
    match_host = _parse_host(option, text, host, port or "1")[0] if host else None
    match_port = _parse_host(option, text, "x", port)[1] if port else None
    to_host = to_port = None
    if connect_host:
        to_host = _parse_host(option, text, connect_host, connect_port or "1")[0]
    if connect_port:
        to_port = _parse_host(option, text, "x", connect_port)[1]
    if to_host is None and to_port is None:
        raise UsageError(
            f"invalid {option} {text!r}: give CONNECT_HOST, CONNECT_PORT or both"
        )
    return ConnectToRule(match_host, match_port, to_host, to_port)


def parse_sni(text: str) -> str:
    """Parse the name for --sni: a host name, never an IP address or a port."""
    _reject_option_like("--sni", text)
    if any(char in text for char in ":/[]@"):
        raise UsageError(f"invalid --sni {text!r}: give a host name only")
    try:
        target = parse_target(text)
    except TargetError as exc:
        reason = str(exc).split(": ", 1)[-1]
        raise UsageError(f"invalid --sni {text!r}: {reason}") from None
    if target.is_ip:
        raise UsageError(
            f"invalid --sni {text!r}: SNI carries host names only (RFC 6066); "
            "use --no-sni to send none"
        )
    return target.host


# --- what each stack can do ---------------------------------------------------------


def default_server_name(target: Target) -> str | None:
    """Return the SNI a client sends for the target when nothing overrides it."""
    return None if target.is_ip else target.host


def has_custom_sni(target: Target) -> bool:
    """Return whether --sni or --no-sni changes what this target sends."""
    return target.server_name != default_server_name(target)


def is_ip_literal(host: str) -> bool:
    """Return whether `host` is an IP address literal."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def sni_unavailable(stack: str, target: Target) -> str | None:
    """Return why `stack` cannot send this SNI while verifying the host, or None.

    Python's ssl module sends `server_hostname` as SNI and verifies the same name, so
    stdlib, httpx and aiohttp can neither send another name nor omit it while
    checking the host. urllib3 can: it verifies `assert_hostname` itself.
    """
    if not has_custom_sni(target):
        return None
    if stack == "openssl":
        return None
    if stack == "requests":
        if target.server_name is None and not is_ip_literal(target.connect_host):
            return (
                "urllib3 sends SNI for the name it connects to; --no-sni needs an "
                "address (--resolve, --connect-to or --each-address)"
            )
        return None
    what = "send no SNI" if target.server_name is None else "send another SNI"
    return (
        f"{stack} cannot {what} while verifying {target.host}: Python's ssl sends "
        "server_hostname as SNI and verifies that same name"
    )


def host_header(target: Target) -> str:
    """Return the Host header a client sends for the target's URL."""
    host = bracket(target.host)
    return host if target.port == 443 else f"{host}:{target.port}"


def address_url(target: Target) -> str:
    """Return the target's URL with the address and port the connection goes to."""
    return f"https://{bracket(target.connect_host)}:{target.connect_port}{target.path}"


def is_pinned(target: Target) -> bool:
    """Return whether the connection goes somewhere other than the host's own port."""
    return target.address is not None or target.address_port is not None


def requests_pool_kwargs(target: Target) -> dict[str, str]:
    """Return urllib3 pool options that connect to the address but check the name.

    `server_hostname` is the SNI, and OpenSSL checks the certificate against it, as
    for any requests call. Only when --sni or --no-sni changes the SNI does
    `assert_hostname` take the check over, in urllib3's own matcher.
    """
    if not has_custom_sni(target):
        return {"server_hostname": target.host}
    options = {"assert_hostname": target.host.rstrip(".")}
    if target.server_name is not None:
        options["server_hostname"] = target.server_name
    return options


def needs_requests_adapter(target: Target) -> bool:
    """Return whether requests needs the pinning adapter for this target."""
    return is_pinned(target) or has_custom_sni(target)


def requests_request_options(target: Target) -> tuple[str, dict[str, str]]:
    """Return the URL and headers of a requests call for the target."""
    if not is_pinned(target):
        return target.url, {}
    return address_url(target), {"Host": host_header(target)}


def requests_reproduce_code(target: Target, verify: str) -> str:
    """Return Python code that repeats the requests probe with the same pinning."""
    url, headers = requests_request_options(target)
    call = f"{url!r}, verify={verify}, allow_redirects=False, timeout=10" + (
        f", headers={headers!r}" if headers else ""
    )
    if not needs_requests_adapter(target):
        return f"import requests; print(requests.get({call}).status_code)"
    pool = ", ".join(f"{k}={v!r}" for k, v in requests_pool_kwargs(target).items())
    return (
        "import requests\n"
        "from requests.adapters import HTTPAdapter\n"
        "class Pin(HTTPAdapter):\n"
        "    def init_poolmanager(self, *a, **k):\n"
        f"        super().init_poolmanager(*a, **k, {pool})\n"
        "s = requests.Session()\n"
        "s.mount('https://', Pin())\n"
        f"print(s.get({call}).status_code)"
    )


def make_requests_adapter(target: Target) -> Any:
    """Return a requests HTTPAdapter whose pools use requests_pool_kwargs(target)."""
    from requests.adapters import HTTPAdapter

    pinned = requests_pool_kwargs(target)

    class PinnedAdapter(HTTPAdapter):
        def init_poolmanager(
            self, connections: int, maxsize: int, block: bool = False, **kwargs: Any
        ) -> None:
            kwargs.update(pinned)
            super().init_poolmanager(connections, maxsize, block, **kwargs)

        def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
            from requests.exceptions import SSLError

            try:
                return super().send(request, *args, **kwargs)
            except SSLError as exc:
                mismatch = _assert_hostname_error(exc)
                if mismatch is None:
                    raise
                raise SSLError(mismatch, request=request) from exc

    return PinnedAdapter()


def _assert_hostname_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """Return urllib3's own hostname verdict as the stdlib error, or None.

    With `assert_hostname`, urllib3 matches the name in Python and raises its own
    CertificateError, a ValueError without a verify code. It is the same check that
    OpenSSL reports as X509_V_ERR_HOSTNAME_MISMATCH (62), so it is given that code.
    The message names the matcher that decided.
    """
    from urllib3.util.ssl_match_hostname import CertificateError

    for item in iter_exception_chain(exc):
        if isinstance(item, CertificateError):
            message = f"urllib3 assert_hostname: {item}"
            error = ssl.SSLCertVerificationError(1, message)
            error.verify_code = X509_V_ERR_HOSTNAME_MISMATCH
            error.verify_message = message
            return error
    return None


def make_aiohttp_resolver(target: Target) -> Any:
    """Return an aiohttp resolver that resolves the target's host to its address.

    aiohttp then connects there and still uses the URL's host for SNI and for the
    hostname check, as with curl --resolve.
    """
    from aiohttp import ThreadedResolver
    from aiohttp.abc import AbstractResolver, ResolveResult

    class PinnedResolver(AbstractResolver):
        async def resolve(
            self,
            host: str,
            port: int = 0,
            family: socket.AddressFamily = socket.AF_INET,
        ) -> list[ResolveResult]:
            # aiohttp's own resolver looks the address up (numeric, no DNS; a name
            # from --connect-to goes to DNS), and the answer keeps the host's name.
            found = await ThreadedResolver().resolve(
                target.connect_host, target.connect_port, family
            )
            return [ResolveResult(**{**item, "hostname": host}) for item in found]

        async def close(self) -> None:
            return None

    return PinnedResolver()


def httpx_request_options(target: Target) -> tuple[str, dict[str, str], dict[str, Any]]:
    """Return the URL, headers and extensions that send httpx to the address.

    httpcore connects to the URL's host and passes the `sni_hostname` extension to
    the handshake as server_hostname, so SNI and the hostname check use the name.
    """
    if not is_pinned(target):
        return target.url, {}, {}
    return (
        address_url(target),
        {"Host": host_header(target)},
        {"sni_hostname": target.host},
    )


def aiohttp_request_options(target: Target) -> tuple[str, dict[str, Any], Any]:
    """Return the URL, extra request arguments and resolver (or None) for aiohttp.

    aiohttp calls its resolver only for names, so an IP-literal host pinned with
    --connect-to goes by URL instead, with `server_hostname` keeping the check on
    the host.
    """
    if not is_pinned(target):
        return target.url, {}, None
    if target.is_ip:
        options = {
            "server_hostname": target.host,
            "headers": {"Host": host_header(target)},
        }
        return address_url(target), options, None
    return target.url, {}, make_aiohttp_resolver(target)


def aiohttp_reproduce_lines(target: Target) -> tuple[list[str], str, str]:
    """Return resolver class lines, the session arguments and the get() arguments."""
    url, options, resolver = aiohttp_request_options(target)
    extra = "".join(f", {name}={value!r}" for name, value in options.items())
    if resolver is None:
        return [], "", f"{url!r}{extra}"
    family = "AF_INET6" if ":" in target.connect_host else "AF_INET"
    lines = [
        "from aiohttp.abc import AbstractResolver",
        "class Pin(AbstractResolver):",
        "    async def resolve(self, host, port=0, family=socket.AF_INET):",
        f"        return [dict(hostname=host, host={target.connect_host!r}, "
        f"port={target.connect_port}, family=socket.{family}, proto=0, "
        "flags=socket.AI_NUMERICHOST)]",
        "    async def close(self): pass",
    ]
    return lines, "connector=aiohttp.TCPConnector(resolver=Pin())", f"{url!r}"


def describe_address(target: Target) -> str | None:
    """Return where the connection goes, such as `127.0.0.2` or `[::1]:8443`."""
    if not is_pinned(target):
        return None
    where = bracket(target.connect_host)
    if target.address_port is not None:
        where += f":{target.connect_port}"
    return where


def describe_sni(target: Target) -> str | None:
    """Return `no SNI` or `SNI NAME` when --no-sni or --sni changed it, else None."""
    if not has_custom_sni(target):
        return None
    return f"SNI {target.server_name}" if target.server_name else "no SNI"


def describe_pin(target: Target) -> str | None:
    """Return a row label such as `127.0.0.2 · no SNI`, or None for a plain target."""
    parts = [describe_address(target), describe_sni(target)]
    return " · ".join(part for part in parts if part) or None


def options_from_args(
    *,
    resolve: Sequence[str],
    connect_to: Sequence[str],
    sni: str | None,
    no_sni: bool,
    each_address: bool | None,
) -> PinOptions:
    """Parse the address and SNI options of the command line."""
    if sni is not None and no_sni:
        raise UsageError("--sni and --no-sni exclude each other; give one")
    return PinOptions(
        resolve=tuple(parse_resolve(text) for text in resolve),
        connect_to=tuple(parse_connect_to(text) for text in connect_to),
        sni=parse_sni(sni) if sni is not None else None,
        send_sni=not no_sni,
        each_address=each_address,
    )


def unavailable_result(
    stack: str, target: Target, why: str, *, trust: str | None, reproduce: str | None
) -> ProbeResult:
    """Return the `unavailable` verdict of a stack that cannot honour the options."""
    return ProbeResult(
        stack=stack,
        ok=False,
        reason=Reason.UNAVAILABLE,
        detail=why,
        trust=trust,
        reproduce=reproduce,
        address=target.address,
    )


def add_address_options(parser: argparse.ArgumentParser) -> None:
    """Add --each-address, --resolve, --connect-to, --sni and --no-sni."""
    group = parser.add_argument_group(
        "addresses and SNI",
        "Where connections go and which name the ClientHello carries. Every stack "
        "still verifies the certificate against the target's host name.",
    )
    group.add_argument(
        "--each-address",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="probe every A/AAAA address of a name on its own row; by default every "
        "address is probed and addresses with the same chain and verdicts share a "
        "row; --no-each-address lets each stack resolve the name itself",
    )
    group.add_argument(
        "--resolve",
        action="append",
        default=[],
        metavar="HOST:PORT:ADDR[,ADDR…]",
        help="connect to these addresses for HOST:PORT instead of asking DNS, as "
        "curl --resolve (IPv6 in brackets; repeatable)",
    )
    group.add_argument(
        "--connect-to",
        action="append",
        default=[],
        metavar="HOST:PORT:CONNECT_HOST:CONNECT_PORT",
        help="connect to CONNECT_HOST:CONNECT_PORT for HOST:PORT, as curl "
        "--connect-to (an empty field matches any or keeps the original; repeatable)",
    )
    group.add_argument(
        "--sni",
        metavar="NAME",
        help="send NAME in SNI instead of the host; verification still checks the "
        "host. Stacks that cannot send another name say 'unavailable'",
    )
    group.add_argument(
        "--no-sni",
        action="store_true",
        help="send no SNI, to see a server's default certificate; verification "
        "still checks the host. Stacks that cannot omit SNI say 'unavailable'",
    )


def options_from_namespace(args: argparse.Namespace) -> PinOptions:
    """Return the address and SNI options parsed from the command line."""
    return options_from_args(
        resolve=args.resolve,
        connect_to=args.connect_to,
        sni=args.sni,
        no_sni=args.no_sni,
        each_address=args.each_address,
    )
