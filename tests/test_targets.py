"""Target parsing: accepted forms, rejected input, and a property-based check."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from comparer.errors import UsageError
from comparer.targets import TargetError, parse_target, parse_targets, read_targets_file


@pytest.mark.parametrize(
    ("raw", "host", "port", "path"),
    [
        ("example.test", "example.test", 443, "/"),
        ("example.test:8443", "example.test", 8443, "/"),
        ("https://example.test", "example.test", 443, "/"),
        ("https://example.test:8443/a/b?x=1", "example.test", 8443, "/a/b?x=1"),
        ("HTTPS://Example.TEST/", "example.test", 443, "/"),
        ("[::1]:8443", "::1", 8443, "/"),
        ("::1", "::1", 443, "/"),
        ("127.0.0.1", "127.0.0.1", 443, "/"),
        ("127.0.0.1:1", "127.0.0.1", 1, "/"),
        ("localhost:65535", "localhost", 65535, "/"),
        ("  localhost:8443  ", "localhost", 8443, "/"),
        ("example.test.", "example.test.", 443, "/"),
        ("bücher.example", "xn--bcher-kva.example", 443, "/"),
        ("_svc.example.test", "_svc.example.test", 443, "/"),
        ("example.test/path", "example.test", 443, "/path"),
    ],
)
def test_parse_accepts(raw: str, host: str, port: int, path: str) -> None:
    target = parse_target(raw)
    assert target.host == host
    assert target.port == port
    assert target.path == path


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("-proxy", "starts with '-'"),
        ("--help", "starts with '-'"),
        ("host:0", "not in 1-65535"),
        ("host:65536", "not in 1-65535"),
        ("host:http", "not a number"),
        ("host:", "not a number"),
        ("a b", "whitespace"),
        ("host\n", None),
        ("http://example.test", "not https"),
        ("ftp://example.test", "not https"),
        ("https://user:pw@example.test", "credentials"),
        ("$(touch /tmp/x)", "whitespace"),
        ("$(id)", "bad host name label"),
        ("a|b", "bad host name label"),
        ("a;b", "bad host name label"),
        ("`id`", "bad host name label"),
        ("x" * 64 + ".test", "bad host name label"),
        ("[::1", "missing ']'"),
        ("[::1]x", "unexpected"),
        ("1:2:3:zz", "not an IP address"),
        ("-.example", "starts with '-'"),
        ("bad-.example", "bad host name label"),
        ("a..b", "bad host name label"),
    ],
)
def test_parse_rejects(raw: str, fragment: str | None) -> None:
    if fragment is None:
        # Surrounding whitespace is stripped, so "host\n" is valid.
        assert parse_target(raw).host == "host"
        return
    with pytest.raises(TargetError) as info:
        parse_target(raw)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_error_names_the_value() -> None:
    with pytest.raises(TargetError, match="'host:99999'"):
        parse_target("host:99999")


def test_duplicates_probed_once() -> None:
    targets, errors = parse_targets(
        ["localhost:443", "localhost", "https://localhost/", "LOCALHOST:443", "x:1"]
    )
    assert [t.raw for t in targets] == ["localhost:443", "x:1"]
    assert errors == []


def test_parse_targets_keeps_errors_apart() -> None:
    targets, errors = parse_targets(["good.test", "bad:port", "other.test"])
    assert [t.host for t in targets] == ["good.test", "other.test"]
    assert errors[0][0] == "bad:port"


def test_targets_file_skips_comments(tmp_path: Path) -> None:
    path = tmp_path / "targets.txt"
    path.write_text(
        "\ufeff# a comment\n\nlocalhost:1  # trailing\n  https://x.test/#frag\r\n",
        encoding="utf-8",
    )
    assert read_targets_file(str(path)) == ["localhost:1", "https://x.test/#frag"]


def test_targets_file_missing(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not found"):
        read_targets_file(str(tmp_path / "nope.txt"))


def test_targets_file_binary(tmp_path: Path) -> None:
    path = tmp_path / "bin"
    path.write_bytes(b"\x00\x01\x02localhost")
    with pytest.raises(UsageError, match="binary"):
        read_targets_file(str(path))


def test_targets_file_directory(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="directory"):
        read_targets_file(str(tmp_path))


def test_targets_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1"
    path.write_bytes("héllo\n".encode("latin-1"))
    with pytest.raises(UsageError, match="UTF-8"):
        read_targets_file(str(path))


_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)


@given(
    labels=st.lists(_label, min_size=1, max_size=4),
    port=st.integers(min_value=1, max_value=65535),
    form=st.sampled_from(["{h}:{p}", "https://{h}:{p}/", "https://{h}:{p}"]),
)
def test_valid_names_round_trip(labels: list[str], port: int, form: str) -> None:
    # An all-digit name such as "127.1" is rejected as a malformed IPv4 address.
    assume(not all(label.isdigit() for label in labels))
    host = ".".join(labels)
    target = parse_target(form.format(h=host, p=port))
    assert target.host == host
    assert target.port == port
    assert parse_target(target.netloc).key == target.key


@given(st.text(max_size=80))
def test_any_text_parses_or_fails_cleanly(text: str) -> None:
    try:
        target = parse_target(text)
    except TargetError as exc:
        assert str(exc).startswith("invalid")
        return
    assert not target.host.startswith("-")
    assert 1 <= target.port <= 65535
    assert all(ch.isprintable() and not ch.isspace() for ch in target.host)


# --- bad input beyond the basic forms ---------------------------------------------


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("localhost:²", "'²' is not a number"),
        ("localhost:١٢٣", "is not a number"),
        ("localhost:-1", "'-1' is not a number"),
        ("localhost:+443", "'+443' is not a number"),
        ("https://[::1", "Invalid IPv6 URL"),
        ("https://[::1/", "Invalid IPv6 URL"),
        ("example。test", "bad host name label"),
        ("h@evil.test", "bad host name label"),
        ("h:443@evil:1", "not an IP address"),
        ("xn--", "bad host name label"),
        ("é" * 60 + ".test", "bad host name label"),
        (".".join(["a" * 63] * 4) + ".test", "longer than 253"),
        ("https://h/pa\tth", "whitespace"),
        ("https://h/a\x00b", "control"),
        ("h\x1b[31m", "control"),
    ],
)
def test_parse_rejects_hostile(raw: str, fragment: str) -> None:
    with pytest.raises(TargetError) as info:
        parse_target(raw)
    message = str(info.value)
    assert fragment in message
    assert repr(raw.strip()) in message or repr(raw) in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("raw", "host"),
    [
        ("a" * 63 + ".test", "a" * 63 + ".test"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("☃.example", "xn--n3h.example"),
        # IDNA 2003 maps fullwidth letters to ASCII (NFKC), as the stdlib does.
        ("ｌｏｃａｌｈｏｓｔ", "localhost"),
        ("localhost.", "localhost."),
        ("LOCALHOST.", "localhost."),
    ],
)
def test_parse_accepts_unicode_and_dots(raw: str, host: str) -> None:
    assert parse_target(raw).host == host


def test_shell_metacharacters_stay_in_path() -> None:
    # A path is data for the HTTP request, so anything printable is allowed there.
    target = parse_target("https://example.test/$(id);`id`|&<>'\"")
    assert target.host == "example.test"
    assert target.path == "/$(id);`id`|&<>'\""


def test_targets_file_io_error() -> None:
    # Reading /proc/self/mem at offset 0 fails with EIO, even for root.
    with pytest.raises(UsageError, match="cannot read targets file") as info:
        read_targets_file("/proc/self/mem")
    assert "'/proc/self/mem'" in str(info.value)


@pytest.mark.skipif(
    os.geteuid() == 0, reason="root reads a file whatever its mode bits say"
)
def test_targets_file_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "secret.txt"
    path.write_text("localhost\n")
    path.chmod(0)
    with pytest.raises(UsageError, match="Permission denied"):
        read_targets_file(str(path))


def test_targets_file_inside_a_file(tmp_path: Path) -> None:
    path = tmp_path / "file.txt"
    path.write_text("localhost\n")
    with pytest.raises(UsageError, match="Not a directory"):
        read_targets_file(str(path / "child.txt"))


def test_targets_file_too_large(tmp_path: Path) -> None:
    path = tmp_path / "large.txt"
    line = b"localhost\n"
    path.write_bytes(line * (16 * 1024 * 1024 // len(line) + 1))
    with pytest.raises(UsageError, match="larger than 16 MiB"):
        read_targets_file(str(path))


def test_targets_file_at_limit(tmp_path: Path) -> None:
    path = tmp_path / "limit.txt"
    line = b"localhost\n"
    path.write_bytes(line * (16 * 1024 * 1024 // len(line)))
    assert read_targets_file(str(path))[0] == "localhost"


@pytest.mark.parametrize("raw", ["127.1", "999.1.1.1", "1.2.3", "0:1"])
def test_malformed_ipv4_rejected(raw: str) -> None:
    with pytest.raises(TargetError, match="not a valid IPv4 address"):
        parse_target(raw)
