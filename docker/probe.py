"""Probe TLS targets with every client stack found in this Python, inside an image.

comparer copies this file into a container and runs it with each interpreter it finds
there, from Python 2.7 to 3.13, so it uses only the standard library and syntax that
all of them parse. The contract is the same as a test harness:

* stdin: one line of JSON, `{"targets": [{"host", "port", "path", "address", "key"}],
  "timeout": seconds, "ca_file": path or null}`; any later lines are ignored (the
  container entry script reads them when no Python exists). A target may also carry
  "address_port" (the port at the address), "sni" (the name to send instead of the
  host) and "send_sni" (false to send none). Verification always checks "host".
* stdout: one JSON object per line, first `{"facts": {...}}`, then one result per
  target and stack: `{"key", "stack", "ok", "reason", "verify_code", "detail",
  "tls_version", "elapsed_ms"}`.
* stderr: log lines. The exit status is non-zero only when the probe itself broke; a
  rejected certificate, a refused connection or a missing library is a result.

Options (fixed words, set by comparer, never by a user value):
  --no-openssl    skip the `openssl s_client` stack (another interpreter runs it)
  --stack NAME    run only the stack NAME (stdlib, requests, httpx, aiohttp, openssl)

The reason vocabulary and the verify-code table equal comparer/reasons.py on the host;
tests/test_images.py checks that they agree on every code.
"""

# ruff: noqa: UP004, UP010, UP024, UP025, UP031, SIM105, S603
# (this file must keep Python 2.7 syntax and idioms, and runs commands by argument list)

from __future__ import absolute_import, division, print_function

import base64
import errno
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time

PYTHON_VERSION = "%d.%d" % sys.version_info[:2]
STDLIB_STACK = "stdlib-py" + PYTHON_VERSION
STACK_CHOICES = ("stdlib", "requests", "httpx", "aiohttp", "openssl")
MAX_DETAIL = 500
MAX_WORKERS = 8

# --- reason vocabulary, kept equal to comparer/reasons.py -------------------------

# X509_V_ERR_* codes from OpenSSL's x509_vfy.h, the same in 1.1.1 and 3.x.
VERIFY_CODES = {
    0: "ok",
    2: "unknown-issuer",
    9: "not-yet-valid",
    10: "expired",
    18: "self-signed",
    # 19, a self-signed root in the chain that is not trusted, is an unknown issuer.
    19: "unknown-issuer",
    20: "unknown-issuer",
    21: "unknown-issuer",
    27: "unknown-issuer",
    28: "unknown-issuer",
    62: "hostname-mismatch",
    63: "hostname-mismatch",
    64: "hostname-mismatch",
    66: "weak-crypto",
    67: "weak-crypto",
    68: "weak-crypto",
}

# Codes about the certificate itself: malformed, wrong purpose, path length, and the
# RFC 5280 checks of X509_V_FLAG_X509_STRICT such as 85 (missing Authority Key Id).
CERTIFICATE_CODES = set([4, 5, 6, 7, 8, 11, 13, 14, 15, 16, 22, 24, 25, 26])
CERTIFICATE_CODES |= set(range(29, 33)) | set(range(34, 62)) | set(range(69, 100))

# OpenSSL SSL library reasons as `ssl.SSLError.reason` and the command line name them.
SSL_REASONS = {
    "UNSUPPORTED_PROTOCOL": "protocol",
    "TLSV1_ALERT_PROTOCOL_VERSION": "protocol",
    "NO_PROTOCOLS_AVAILABLE": "protocol",
    "WRONG_VERSION_NUMBER": "protocol",
    "UNKNOWN_PROTOCOL": "protocol",
    "PACKET_LENGTH_TOO_LONG": "protocol",
    "RECORD_LENGTH_MISMATCH": "protocol",
    "RECORD_LAYER_FAILURE": "protocol",
    "HTTP_REQUEST": "protocol",
    "EXCESSIVE_MESSAGE_SIZE": "protocol",
    "UNEXPECTED_EOF_WHILE_READING": "protocol",
    "UNEXPECTED_MESSAGE": "protocol",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "protocol",
    "SSLV3_ALERT_UNEXPECTED_MESSAGE": "protocol",
    "TLSV1_ALERT_DECODE_ERROR": "protocol",
    "TLSV1_ALERT_INTERNAL_ERROR": "protocol",
    "TLSV1_ALERT_ILLEGAL_PARAMETER": "protocol",
    "WRONG_SIGNATURE_TYPE": "protocol",
    "NO_SHARED_CIPHER": "protocol",
    "NO_CIPHERS_AVAILABLE": "protocol",
    "TLSV1_ALERT_INSUFFICIENT_SECURITY": "protocol",
    "LEGACY_SIGALG_DISALLOWED_OR_UNSUPPORTED": "protocol",
    "DH_KEY_TOO_SMALL": "weak-crypto",
    "EE_KEY_TOO_SMALL": "weak-crypto",
    "CA_KEY_TOO_SMALL": "weak-crypto",
    "CA_MD_TOO_WEAK": "weak-crypto",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "client-certificate",
    "SSLV3_ALERT_BAD_CERTIFICATE": "client-certificate",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "client-certificate",
    "CERTIFICATE_VERIFY_FAILED": "invalid-certificate",
}

CONNECT_ERRNOS = set(
    [
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ECONNABORTED,
        errno.EPIPE,
        errno.EADDRNOTAVAIL,
    ]
)


def reason_for_verify_code(code):
    """Return the reason for an OpenSSL X509_V_ERR_* verify code."""
    if code in VERIFY_CODES:
        return VERIFY_CODES[code]
    if code in CERTIFICATE_CODES:
        return "invalid-certificate"
    return "error"


def reason_for_ssl_error(name):
    """Return the reason for an OpenSSL SSL error name, or None when it is unknown."""
    if not name:
        return None
    return SSL_REASONS.get(name.upper().replace(" ", "_"))


# --- small helpers ------------------------------------------------------------------


def log(message, *args):
    """Write one log line to stderr."""
    sys.stderr.write("probe.py: " + (message % args if args else message) + "\n")
    sys.stderr.flush()


def to_text(value):
    """Return `value` as text, decoding bytes as UTF-8 with replacement."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    try:
        return "%s" % (value,)
    except UnicodeError:
        return repr(value)


def one_line(text):
    """Collapse whitespace and cut `text` to MAX_DETAIL characters."""
    return " ".join(to_text(text).split())[:MAX_DETAIL]


def describe_exception(exc):
    """Return a one-line message for an exception: its type and text."""
    text = one_line(exc)
    name = type(exc).__name__
    return (name + ": " + text)[:MAX_DETAIL] if text else name


def is_ip(host):
    """Return whether `host` is an IPv4 or IPv6 address literal."""
    for family in (socket.AF_INET, getattr(socket, "AF_INET6", None)):
        if family is None:
            continue
        try:
            socket.inet_pton(family, host)
            return True
        except (socket.error, ValueError, TypeError):
            continue
    return False


def netloc(host, port):
    """Return `host:port`, with an IPv6 literal in brackets."""
    return ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)


def result(target, stack, reason, detail="", verify_code=None, tls=None, ms=0.0):
    """Build one result line as a dict."""
    return {
        "key": target["key"],
        "stack": stack,
        "ok": reason == "ok",
        "reason": reason,
        "verify_code": verify_code,
        "detail": one_line(detail),
        "tls_version": tls,
        "elapsed_ms": round(ms, 1),
    }


# --- classifying exceptions ---------------------------------------------------------


def iter_exception_chain(exc):
    """Yield the exception and every exception it wraps, each once."""
    seen = set()
    pending = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [
            getattr(current, "__cause__", None),
            getattr(current, "__context__", None),
        ]
        # urllib3's MaxRetryError.reason, aiohttp's certificate_error and os_error.
        for attribute in ("reason", "certificate_error", "os_error", "_os_error"):
            linked.append(getattr(current, attribute, None))
        linked.extend(getattr(current, "args", ()))
        pending.extend(item for item in linked if isinstance(item, BaseException))


def _is_certificate_error(item):
    # The CertificateError of Python 2 and of urllib3 1.26 carries no verify code.
    return type(item).__name__ in ("CertificateError", "SSLCertVerificationError")


def classify_exception(exc):
    """Return (reason, verify_code, detail) for a client's exception."""
    chain = list(iter_exception_chain(exc))
    for item in chain:
        code = getattr(item, "verify_code", None)
        if isinstance(item, ssl.SSLError) and isinstance(code, int):
            message = getattr(item, "verify_message", None) or describe_exception(item)
            return reason_for_verify_code(code), code, message
    for item in chain:
        if _is_certificate_error(item):
            # Raised without a code by ssl.match_hostname (used by Python 2.7 and
            # urllib3 1.26) after a handshake that verified the chain.
            return "hostname-mismatch", None, describe_exception(item)
    for item in chain:
        if isinstance(item, ssl.SSLError):
            name = getattr(item, "reason", None) or ssl_reason_from_message(item)
            mapped = reason_for_ssl_error(name)
            if mapped is not None:
                # Python 2.7 reports CERTIFICATE_VERIFY_FAILED without the code.
                return mapped, None, describe_exception(item)
            if type(item).__name__ in ("SSLEOFError", "SSLZeroReturnError"):
                return "protocol", None, describe_exception(item)
    return generic_reason(chain), None, describe_exception(exc)


_SSL_MESSAGE = re.compile(r"\[SSL(?:: ([A-Z0-9_]+))?\] ([a-z0-9 ]+?) \(_ssl")


def ssl_reason_from_message(exc):
    """Return the OpenSSL reason name in an SSLError message, or None.

    Python leaves `reason` unset for OpenSSL reasons newer than its own table (it
    prints `[SSL] legacy sigalg disallowed or unsupported`), but the text is the
    reason string that the OpenSSL command line prints too.
    """
    match = _SSL_MESSAGE.search(to_text(exc))
    if match is None:
        return None
    return match.group(1) or match.group(2).upper().replace(" ", "_")


def generic_reason(chain):
    """Return timeout, connect or error for a chain without an SSL error."""
    for item in chain:
        name = type(item).__name__
        if isinstance(item, socket.timeout) or name == "TimeoutError":
            return "timeout"
        if "Timeout" in name:
            return "timeout"
        if isinstance(item, socket.gaierror):
            return "connect"
        if isinstance(item, (socket.error, OSError, IOError)):
            if getattr(item, "errno", None) in CONNECT_ERRNOS:
                return "connect"
            if name.endswith("ConnectionError") and name != "ConnectionError":
                return "connect"
    return "error"


# --- address pinning ----------------------------------------------------------------

_PINNED = {}
_real_getaddrinfo = socket.getaddrinfo


def _pinned_getaddrinfo(host, port, *args, **kwargs):
    # The HTTP clients resolve the host name themselves, so the lookup is redirected
    # to the pinned address and, for --connect-to, the pinned port.
    try:
        address, address_port = _PINNED.get((to_text(host), int(port or 0)))
    except (TypeError, ValueError):
        address, address_port = None, None
    return _real_getaddrinfo(address or host, address_port or port, *args, **kwargs)


def _pin(target):
    return (target.get("address"), target.get("address_port"))


def pin_rounds(targets):
    """Split targets into rounds in which each (host, port) has one address."""
    rounds = []
    for target in targets:
        name = (target["host"], int(target["port"]))
        for pins, members in rounds:
            if pins.get(name, _pin(target)) == _pin(target):
                pins[name] = _pin(target)
                members.append(target)
                break
        else:
            rounds.append(({name: _pin(target)}, [target]))
    return rounds


def connect_address(target):
    """Return (host, port) that the TCP connection goes to."""
    port = target.get("address_port") or target["port"]
    return target.get("address") or target["host"], int(port)


def server_name(target):
    """Return the SNI to send, or None for none (an IP host, or send_sni false)."""
    if not target.get("send_sni", True):
        return None
    if target.get("sni"):
        return target["sni"]
    return None if is_ip(target["host"]) else target["host"]


def sni_unavailable(target, stack):
    """Return a result for a Python stack asked for another SNI, or None."""
    default = None if is_ip(target["host"]) else target["host"]
    if server_name(target) == default:
        return None
    # Python's ssl sends server_hostname as SNI and verifies that same name.
    return result(
        target,
        stack,
        "unavailable",
        "--sni and --no-sni run only in openssl inside images; %s sends its "
        "server_hostname as SNI and verifies that same name" % stack,
    )


# --- TLS version of the HTTP clients -------------------------------------------------

# The HTTP clients release their connection before a probe can ask it for the
# negotiated version. So the probe records each TLS object as the client creates it.
# The records are per thread because each probe runs its client on one thread.
_HANDSHAKES = threading.local()


def reset_handshakes():
    """Forget the TLS objects recorded on this thread."""
    _HANDSHAKES.records = []


def last_tls_version():
    """Return the TLS version of the last connection made on this thread, or None."""
    for version, tls_object in reversed(getattr(_HANDSHAKES, "records", [])):
        if version is None:
            try:
                version = tls_object.version()
            except Exception:  # noqa: BLE001 - the version is informative only
                version = None
        if version:
            return version
    return None


def _record(tls_object, done):
    records = getattr(_HANDSHAKES, "records", None)
    if records is not None:
        version = (
            tls_object.version() if done and hasattr(tls_object, "version") else None
        )
        records.append((version, tls_object))
    return tls_object


def install_tls_recorder():
    """Wrap SSLContext.wrap_socket and wrap_bio so that probes can read the version."""
    context_class = getattr(ssl, "SSLContext", None)
    if context_class is None:
        return
    wrap_socket = context_class.wrap_socket

    def recording_wrap_socket(self, *args, **kwargs):
        tls = wrap_socket(self, *args, **kwargs)
        done = kwargs.get("do_handshake_on_connect", True) and _connected(tls)
        return _record(tls, done)

    context_class.wrap_socket = recording_wrap_socket
    wrap_bio = getattr(context_class, "wrap_bio", None)
    if wrap_bio is not None:

        def recording_wrap_bio(self, *args, **kwargs):
            # The handshake of an SSLObject happens later, so read the version then.
            return _record(wrap_bio(self, *args, **kwargs), False)

        context_class.wrap_bio = recording_wrap_bio


def _connected(tls):
    try:
        tls.getpeername()
    except (socket.error, OSError):
        return False
    return True


# --- stacks -------------------------------------------------------------------------


def probe_stdlib(target, settings):
    """Handshake with `ssl.create_default_context()` and return the result."""
    unavailable = sni_unavailable(target, STDLIB_STACK)
    if unavailable is not None:
        return unavailable
    started = time.time()
    sock = None
    try:
        context = ssl.create_default_context(cafile=settings["ca_file"])
        sock = socket.create_connection(connect_address(target), settings["timeout"])
        tls = context.wrap_socket(sock, server_hostname=target["host"])
        sock = tls
        version = tls.version() if hasattr(tls, "version") else None
        return result(target, STDLIB_STACK, "ok", "", None, version, _ms(started))
    except Exception as exc:  # noqa: BLE001 - every failure is a verdict
        reason, code, detail = classify_exception(exc)
        return result(target, STDLIB_STACK, reason, detail, code, None, _ms(started))
    finally:
        if sock is not None:
            sock.close()


def _ms(started):
    return (time.time() - started) * 1000.0


def _url(target):
    return "https://" + netloc(target["host"], int(target["port"])) + target["path"]


def probe_requests(target, settings):
    """GET the target with requests and return the result."""
    import requests

    unavailable = sni_unavailable(target, "requests")
    if unavailable is not None:
        return unavailable
    started = time.time()
    reset_handshakes()
    try:
        response = requests.get(
            _url(target),
            timeout=settings["timeout"],
            verify=settings["ca_file"] or True,
            allow_redirects=False,
        )
        response.close()
        version = last_tls_version()
        return result(target, "requests", "ok", "", None, version, _ms(started))
    except Exception as exc:  # noqa: BLE001 - every failure is a verdict
        reason, code, detail = classify_exception(exc)
        return result(target, "requests", reason, detail, code, None, _ms(started))


def probe_httpx(target, settings):
    """GET the target with httpx and return the result."""
    import httpx

    unavailable = sni_unavailable(target, "httpx")
    if unavailable is not None:
        return unavailable
    started = time.time()
    reset_handshakes()
    try:
        verify = settings["ca_file"] or True
        with httpx.Client(verify=verify, timeout=settings["timeout"]) as client:
            client.get(_url(target))
        version = last_tls_version()
        return result(target, "httpx", "ok", "", None, version, _ms(started))
    except Exception as exc:  # noqa: BLE001 - every failure is a verdict
        reason, code, detail = classify_exception(exc)
        return result(target, "httpx", reason, detail, code, None, _ms(started))


# Compiled only on Python 3.5+, because Python 2 cannot parse `async def`.
AIOHTTP_SOURCE = """
import asyncio

async def _aiohttp_get(url, ssl_option, timeout):
    import aiohttp
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        async with session.get(url, ssl=ssl_option, allow_redirects=False):
            pass

def aiohttp_get(url, ssl_option, timeout):
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(_aiohttp_get(url, ssl_option, timeout))
    finally:
        loop.close()
"""


def probe_aiohttp(target, settings):
    """GET the target with aiohttp on a private event loop and return the result."""
    unavailable = sni_unavailable(target, "aiohttp")
    if unavailable is not None:
        return unavailable
    namespace = {}
    exec(compile(AIOHTTP_SOURCE, "probe_aiohttp", "exec"), namespace)  # noqa: S102
    started = time.time()
    try:
        ssl_option = True
        if settings["ca_file"]:
            ssl_option = ssl.create_default_context(cafile=settings["ca_file"])
        reset_handshakes()
        namespace["aiohttp_get"](_url(target), ssl_option, settings["timeout"])
        version = last_tls_version()
        return result(target, "aiohttp", "ok", "", None, version, _ms(started))
    except Exception as exc:  # noqa: BLE001 - every failure is a verdict
        reason, code, detail = classify_exception(exc)
        return result(target, "aiohttp", reason, detail, code, None, _ms(started))


# --- openssl s_client ---------------------------------------------------------------


def find_openssl():
    """Return the path of the `openssl` command line, or None."""
    for directory in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep):
        path = os.path.join(directory or ".", "openssl")
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def openssl_version(binary):
    """Return the first line of `openssl version`, or None when it fails."""
    out = run_command([binary, "version"], 10)
    return out[1].strip().splitlines()[0] if out and out[1].strip() else None


def s_client_argv(binary, version, target, ca_file):
    """Return the `openssl s_client` argument list for one target."""
    host = target["host"]
    connect = netloc(*connect_address(target))
    argv = [binary, "s_client", "-connect", connect, "-verify_return_error"]
    sni = server_name(target)
    if sni is not None:
        argv += ["-servername", sni]
    elif not (version or "").startswith("OpenSSL 1.0"):
        # -noservername appeared in 1.1.1; 1.0.x sends SNI only when asked.
        argv += ["-noservername"]
    if is_ip(host):
        argv += ["-verify_ip", host]
    else:
        argv += ["-verify_hostname", host]
    if ca_file:
        argv += ["-CAfile", ca_file, "-no-CApath"]
        # -no-CAstore appeared with OpenSSL 3.0's store API; 1.1.1 rejects it.
        if not (version or "").startswith(("OpenSSL 1.", "LibreSSL")):
            argv += ["-no-CAstore"]
    return argv


def run_command(argv, timeout):
    """Run argv without a shell; return (exit status, output) or None if it failed."""
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    except (OSError, ValueError) as exc:
        log("could not run %s: %s", argv[0], exc)
        return None
    # Python 2's communicate() has no timeout, so a timer kills a stuck command.
    timer = threading.Timer(timeout, _kill, [process])
    timer.start()
    try:
        output = process.communicate(b"")[0]
    finally:
        timer.cancel()
    return process.returncode, to_text(output)


def _kill(process):
    try:
        process.kill()
    except OSError:
        pass


_VERIFY_ERROR = re.compile(r"verify error:num=(\d+):([^\n]*)")
_VERIFY_RETURN = re.compile(r"Verify return code: (\d+) \(([^)\n]*)\)")
_PROTOCOL_LINE = re.compile(r"(?:Protocol\s*:\s*|New, )(TLSv1(?:\.\d)?|SSLv3)")
_ERROR_REASON = re.compile(r"error:[0-9A-Fa-f]+:[^:\n]*:[^:\n]*:([^:\n]+)")
_CONNECT_FAILURE = re.compile(
    r"connect:errno=\d+|Connection refused|No route to host|Network is unreachable"
    r"|Name or service not known|nodename nor servname|BIO_lookup|connect\(\) failed"
)


def classify_s_client(status, output, timed_out=False):
    """Return (reason, verify_code, detail, tls_version) from s_client's output."""
    tls = _match_group(_PROTOCOL_LINE, output)
    if timed_out:
        return "timeout", None, "openssl s_client timed out", None
    errors = _VERIFY_ERROR.findall(output)
    if errors:
        code, message = int(errors[0][0]), errors[0][1].strip()
        return reason_for_verify_code(code), code, message, None
    returned = _VERIFY_RETURN.search(output)
    if status == 0 and returned and returned.group(1) == "0":
        return "ok", 0, "", tls
    if returned and returned.group(1) != "0":
        code = int(returned.group(1))
        return reason_for_verify_code(code), code, returned.group(2), None
    for name in _ERROR_REASON.findall(output):
        mapped = reason_for_ssl_error(name.strip())
        if mapped is not None:
            return mapped, None, name.strip(), None
    if _CONNECT_FAILURE.search(output):
        return "connect", None, _first_error_line(output), None
    if "CONNECTED(" in output:
        # TCP connected but no handshake completed and no known reason was printed.
        return "protocol", None, _first_error_line(output) or "handshake failed", None
    return "error", None, _first_error_line(output) or "exit status %s" % status, None


def _match_group(pattern, text):
    match = pattern.search(text)
    return match.group(1) if match else None


def _first_error_line(output):
    for line in output.splitlines():
        if "error" in line.lower() or "errno" in line:
            return line.strip()
    return ""


def probe_openssl(target, settings):
    """Handshake with `openssl s_client` and return the result."""
    binary, version = settings["openssl"], settings["openssl_version"]
    argv = s_client_argv(binary, version, target, settings["ca_file"])
    started = time.time()
    timeout = settings["timeout"]
    completed = run_command(argv, timeout)
    elapsed = _ms(started)
    if completed is None:
        return result(target, "openssl", "error", "could not run openssl", ms=elapsed)
    status, output = completed
    timed_out = status is not None and status < 0 and elapsed >= timeout * 1000
    reason, code, detail, tls = classify_s_client(status, output, timed_out)
    return result(target, "openssl", reason, detail, code, tls, elapsed)


# --- facts --------------------------------------------------------------------------


def read_text(path, limit=4 * 1024 * 1024):
    """Return the start of a text file, or None when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            return to_text(handle.read(limit))
    except (IOError, OSError):
        return None


def os_release():
    """Return the PRETTY_NAME, ID and VERSION_ID of /etc/os-release."""
    text = read_text("/etc/os-release") or read_text("/usr/lib/os-release") or ""
    facts = {}
    for line in text.splitlines():
        name, _, value = line.partition("=")
        if name in ("PRETTY_NAME", "ID", "VERSION_ID"):
            facts[name.lower()] = value.strip().strip("\"'")
    return facts


def module_version(name):
    """Return the version of an importable module, or None."""
    try:
        module = __import__(name)
    except Exception:  # noqa: BLE001 - a broken install counts as absent
        return None
    return to_text(getattr(module, "__version__", "unknown"))


def ca_certificates_version():
    """Return the ca-certificates version from the dpkg, apk or rpm database."""
    status = read_text("/var/lib/dpkg/status", 64 * 1024 * 1024)
    if status:
        for stanza in status.split("\n\n"):
            if re.search(r"^Package: ca-certificates$", stanza, re.M):
                match = re.search(r"^Version: (\S+)", stanza, re.M)
                if match:
                    return {"manager": "dpkg", "version": match.group(1)}
    installed = read_text("/lib/apk/db/installed", 64 * 1024 * 1024)
    if installed:
        for stanza in installed.split("\n\n"):
            if re.search(r"^P:ca-certificates$", stanza, re.M):
                match = re.search(r"^V:(\S+)", stanza, re.M)
                if match:
                    return {"manager": "apk", "version": match.group(1)}
    return rpm_ca_certificates_version()


RPM_DATABASES = ("/usr/lib/sysimage/rpm/rpmdb.sqlite", "/var/lib/rpm/rpmdb.sqlite")


def rpm_ca_certificates_version():
    """Return the ca-certificates version from an rpm sqlite database, or None."""
    # NOTE: older rpm releases keep a Berkeley DB that this does not read.
    for path in RPM_DATABASES:
        if not os.path.exists(path):
            continue
        try:
            import sqlite3

            uri = "file:%s?mode=ro&immutable=1" % path
            connection = sqlite3.connect(uri, uri=True)
            try:
                rows = connection.execute("SELECT blob FROM Packages").fetchall()
            finally:
                connection.close()
        except Exception as exc:  # noqa: BLE001 - the fact is optional
            log("could not read %s: %s", path, exc)
            return None
        for (blob,) in rows:
            tags = rpm_header_strings(bytes(blob), (1000, 1001, 1002))
            if tags.get(1000) == "ca-certificates":
                version = "%s-%s" % (tags.get(1001), tags.get(1002))
                return {"manager": "rpm", "version": version}
    return None


def rpm_header_strings(blob, tag_numbers):
    """Return the STRING tags in `tag_numbers` from an rpm header blob (no magic)."""
    import struct

    found = {}
    try:
        count, data_length = struct.unpack(">ii", blob[:8])
        data = blob[8 + 16 * count : 8 + 16 * count + data_length]
        for index in range(count):
            entry = blob[8 + 16 * index : 24 + 16 * index]
            tag, kind, offset, _ = struct.unpack(">iiii", entry)
            # Type 6 is STRING; the value ends at the first NUL byte.
            if tag in tag_numbers and kind == 6:
                end = data.index(b"\0", offset)
                found[tag] = to_text(data[offset:end])
    except (struct.error, ValueError):
        return found
    return found


_PEM_BLOCK = re.compile(
    r"-----BEGIN CERTIFICATE-----\s+([A-Za-z0-9+/=\s]+?)-----END CERTIFICATE-----"
)


def der_not_after(der):
    """Return notAfter of a DER certificate as `YYYY-MM-DD`, or None."""
    try:
        body = _der_children(der, 0)[0]  # Certificate SEQUENCE
        tbs = _der_children(der, body[1])[0]  # TBSCertificate SEQUENCE
        fields = _der_children(der, tbs[1])
        if fields[0][0] == 0xA0:  # explicit [0] version is optional
            fields = fields[1:]
        validity = fields[3]
        times = _der_children(der, validity[1], validity[2])
        tag, start, end = times[1]
        text = der[start:end].decode("ascii")
    except (IndexError, ValueError, UnicodeError):
        return None
    if tag == 0x17:  # UTCTime, YYMMDDHHMMSSZ, years 1950-2049
        year = int(text[:2])
        text = ("19" if year >= 50 else "20") + text
    return "%s-%s-%s" % (text[:4], text[4:6], text[6:8])


def _der_children(der, start, stop=None):
    """Return (tag, content start, content end) of each element in der[start:stop]."""
    stop = len(der) if stop is None else stop
    children = []
    position = start
    while position < stop:
        tag = bytearray(der[position : position + 1])[0]
        length = bytearray(der[position + 1 : position + 2])[0]
        position += 2
        if length & 0x80:
            size = length & 0x7F
            length = 0
            for byte in bytearray(der[position : position + size]):
                length = length * 256 + byte
            position += size
        children.append((tag, position, position + length))
        position += length
    return children


def describe_bundle(path):
    """Return the path, number of certificates and earliest notAfter of a PEM file."""
    text = read_text(path, 32 * 1024 * 1024)
    if text is None:
        return None
    dates = []
    blocks = _PEM_BLOCK.findall(text)
    for block in blocks:
        try:
            der = base64.b64decode("".join(block.split()))
        except (ValueError, TypeError):
            continue
        date = der_not_after(der)
        if date:
            dates.append(date)
    return {
        "path": path,
        "certificates": len(blocks),
        "earliest_not_after": min(dates) if dates else None,
    }


DEFAULT_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
)


def default_bundle(paths):
    """Return a description of the default CA bundle file, or None."""
    candidates = [paths.get("cafile"), paths.get("openssl_cafile")]
    candidates += list(DEFAULT_BUNDLES)
    for path in candidates:
        if path and os.path.isfile(path):
            return describe_bundle(os.path.realpath(path))
    return None


def verify_paths():
    """Return ssl.get_default_verify_paths() as a dict."""
    if not hasattr(ssl, "get_default_verify_paths"):
        return {}
    paths = ssl.get_default_verify_paths()
    names = ("cafile", "capath", "openssl_cafile_env", "openssl_cafile")
    names += ("openssl_capath_env", "openssl_capath")
    return dict((name, getattr(paths, name, None)) for name in names)


def count_hashed(directory):
    """Count the hashed certificate links (`1a2b3c4d.0`) in a directory, or None."""
    try:
        names = os.listdir(directory)
    except (OSError, TypeError):
        return None
    return sum(1 for name in names if re.match(r"^[0-9a-f]{8}\.\d+$", name))


def describe_trust(origin, path):
    """Return a trust description such as `default (/etc/ssl/certs, 140 roots)`."""
    if not path:
        return origin + " (none)"
    if os.path.isdir(path):
        count = count_hashed(path)
    else:
        bundle = describe_bundle(path)
        count = bundle["certificates"] if bundle else None
    if count is None:
        return "%s (%s, unreadable)" % (origin, path)
    return "%s (%s, %d %s)" % (origin, path, count, "root" if count == 1 else "roots")


def stdlib_trust(settings, paths):
    """Return the trust that ssl.create_default_context() loads."""
    if settings["ca_file"]:
        return describe_trust("--ca-file", settings["ca_file"])
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        if os.environ.get(name):
            return describe_trust(name, os.environ[name])
    return describe_trust("default", paths.get("cafile") or paths.get("capath"))


def requests_trust(settings):
    """Return the trust requests uses: REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE or certifi."""
    if settings["ca_file"]:
        return describe_trust("--ca-file", settings["ca_file"])
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        if os.environ.get(name):
            return describe_trust(name, os.environ[name])
    try:
        from requests.utils import DEFAULT_CA_BUNDLE_PATH
    except Exception:  # noqa: BLE001 - informative only
        return None
    return describe_trust("certifi", DEFAULT_CA_BUNDLE_PATH)


def httpx_trust(settings):
    """Return the trust httpx uses: SSL_CERT_FILE, SSL_CERT_DIR or certifi."""
    if settings["ca_file"]:
        return describe_trust("--ca-file", settings["ca_file"])
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        if os.environ.get(name):
            return describe_trust(name, os.environ[name])
    try:
        import certifi
    except Exception:  # noqa: BLE001 - informative only
        return None
    return describe_trust("certifi", certifi.where())


def openssl_trust(settings):
    """Return the trust `openssl s_client` loads without -CAfile: OPENSSLDIR."""
    if settings["ca_file"]:
        return describe_trust("--ca-file", settings["ca_file"])
    out = run_command([settings["openssl"], "version", "-d"], 10)
    match = re.search(r'OPENSSLDIR: "([^"]*)"', out[1]) if out else None
    if not match:
        return None
    cert_pem = os.path.join(match.group(1), "cert.pem")
    if os.path.exists(cert_pem):
        return describe_trust("default", os.path.realpath(cert_pem))
    return describe_trust("default", os.path.join(match.group(1), "certs"))


def collect_facts(settings, stacks):
    """Return the facts line: OS, Python, OpenSSL, libraries, trust and stacks."""
    paths = verify_paths()
    facts = {
        "interpreter": sys.executable,
        "python": sys.version.split()[0],
        "ssl": getattr(ssl, "OPENSSL_VERSION", None),
        "os": os_release(),
        "verify_paths": paths,
        "default_bundle": default_bundle(paths),
        "ca_certificates": ca_certificates_version(),
        "openssl_cli": settings["openssl_version"],
        "modules": dict(
            (name, module_version(name))
            for name in ("certifi", "requests", "urllib3", "httpx", "aiohttp")
        ),
    }
    versions = {
        STDLIB_STACK: facts["ssl"],
        "requests": facts["modules"]["requests"],
        "httpx": facts["modules"]["httpx"],
        "aiohttp": facts["modules"]["aiohttp"],
        "openssl": settings["openssl_version"],
    }
    trusts = {
        STDLIB_STACK: lambda: stdlib_trust(settings, paths),
        "requests": lambda: requests_trust(settings),
        "httpx": lambda: httpx_trust(settings),
        "aiohttp": lambda: stdlib_trust(settings, paths),
        "openssl": lambda: openssl_trust(settings),
    }
    facts["stacks"] = [
        {"name": name, "version": versions[name], "trust": trusts[name]()}
        for name, _ in stacks
    ]
    return facts


# --- main ---------------------------------------------------------------------------


def available_stacks(settings, only, with_openssl):
    """Return (name, function) for each stack that can run here."""
    stacks = []
    if hasattr(ssl, "create_default_context"):
        stacks.append((STDLIB_STACK, probe_stdlib))
    else:
        log("ssl.create_default_context is missing (Python < 2.7.9); stdlib skipped")
    if module_version("requests"):
        stacks.append(("requests", probe_requests))
    if module_version("httpx"):
        stacks.append(("httpx", probe_httpx))
    if sys.version_info >= (3, 5) and module_version("aiohttp"):
        stacks.append(("aiohttp", probe_aiohttp))
    if with_openssl and settings["openssl"]:
        stacks.append(("openssl", probe_openssl))
    if only:
        stacks = [item for item in stacks if item[0].split("-py")[0] == only]
    return stacks


def parse_args(argv):
    """Return (only, with_openssl) from the fixed command-line words."""
    only, with_openssl = None, True
    words = list(argv)
    while words:
        word = words.pop(0)
        if word == "--no-openssl":
            with_openssl = False
        elif word == "--stack" and words and words[0] in STACK_CHOICES:
            only = words.pop(0)
        else:
            raise SystemExit("probe.py: unknown argument %r" % word)
    return only, with_openssl


def read_request(stream):
    """Read and check the JSON request on the first line of `stream`."""
    request = json.loads(stream.readline() or "{}")
    targets = request.get("targets") or []
    for target in targets:
        for name in ("host", "port", "key"):
            if name not in target:
                raise ValueError("target %r has no %r" % (target, name))
        target.setdefault("path", "/")
        target.setdefault("address", None)
        target.setdefault("address_port", None)
        target.setdefault("sni", None)
        target.setdefault("send_sni", True)
        for name in ("host", "address", "sni"):
            # Each becomes an argument of s_client, never an option of it.
            if (target[name] or "").startswith("-"):
                raise ValueError("target %s %r starts with '-'" % (name, target[name]))
    ca_file = request.get("ca_file")
    if ca_file and not os.path.isfile(ca_file):
        raise ValueError("ca_file %r not found in the container" % ca_file)
    return targets, float(request.get("timeout") or 10.0), ca_file


class Output(object):
    """Thread-safe writer of JSON lines to stdout."""

    def __init__(self, stream):
        self.stream = stream
        self.lock = threading.Lock()

    def write(self, record):
        line = json.dumps(record, sort_keys=True)
        with self.lock:
            self.stream.write(line + "\n")
            self.stream.flush()


def run_tasks(tasks, settings, output):
    """Run (target, stack name, function) tasks on MAX_WORKERS threads."""
    lock = threading.Lock()
    pending = list(tasks)

    def worker():
        while True:
            with lock:
                if not pending:
                    return
                target, name, function = pending.pop(0)
            try:
                output.write(function(target, settings))
            except Exception as exc:  # noqa: BLE001 - a bug in one stack is a result
                log("stack %s failed on %s: %s", name, target["key"], exc)
                output.write(result(target, name, "error", describe_exception(exc)))

    threads = [threading.Thread(target=worker) for _ in range(MAX_WORKERS)]
    for thread in threads:
        thread.daemon = True
        thread.start()
    for thread in threads:
        thread.join()


def main(argv=None):
    """Run the probe; return the process exit status."""
    only, with_openssl = parse_args(sys.argv[1:] if argv is None else argv)
    targets, timeout, ca_file = read_request(sys.stdin)
    openssl = find_openssl()
    settings = {
        "timeout": timeout,
        "ca_file": ca_file,
        "openssl": openssl,
        "openssl_version": openssl_version(openssl) if openssl else None,
    }
    stacks = available_stacks(settings, only, with_openssl)
    output = Output(sys.stdout)
    output.write({"facts": collect_facts(settings, stacks)})

    socket.getaddrinfo = _pinned_getaddrinfo
    install_tls_recorder()
    for pins, members in pin_rounds(targets):
        _PINNED.clear()
        _PINNED.update(dict(item for item in pins.items() if item[1]))
        tasks = [(target, name, probe) for target in members for name, probe in stacks]
        run_tasks(tasks, settings, output)
    return 0


def run_main():
    """Run main() and turn a malformed request into one log line and status 2."""
    try:
        return main()
    except (ValueError, KeyError, TypeError) as exc:
        log("invalid request on stdin: %s", describe_exception(exc))
        return 2


if __name__ == "__main__":
    sys.exit(run_main())
