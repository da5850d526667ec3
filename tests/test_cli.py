"""The command line as a user runs it: exit codes, errors, table and JSON output."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cli_run import clean_env

from comparer.lab import Lab


def comparer(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "comparer", *args],
        capture_output=True,
        text=True,
        env=env or clean_env(),
        input=stdin,
        timeout=120,
    )


def check_json(
    *args: str, env: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    done = comparer("check", "--json", *args, env=env)
    return done.returncode, json.loads(done.stdout)


def test_all_verified_exits_zero(lab: Lab) -> None:
    code, document = check_json(
        "--ca-file", str(lab.ca_bundle), lab.scenario("good").target
    )
    assert code == 0
    assert document["targets"][0]["agree"] is True


def test_failure_exits_one(lab: Lab) -> None:
    code, _ = check_json(
        "--ca-file", str(lab.ca_bundle), lab.scenario("expired-leaf").target
    )
    assert code == 1


def test_disagreement_exits_one(lab: Lab) -> None:
    code, document = check_json(
        "--ca-file", str(lab.ca_bundle), lab.scenario("cn-only").target
    )
    assert code == 1
    assert document["targets"][0]["agree"] is False


def test_json_contract(lab: Lab) -> None:
    code, document = check_json(
        "--ca-file",
        str(lab.ca_bundle),
        "--stacks",
        "requests,stdlib",
        lab.scenario("good").target,
        lab.scenario("expired-leaf").target,
    )
    assert document["schema"] == 1
    assert [s["name"] for s in document["stacks"]] == ["requests", "stdlib"]
    for stack in document["stacks"]:
        assert {"name", "where", "version", "trust"} <= stack.keys()
        assert stack["where"] == "host"
    assert len(document["targets"]) == 2
    for target in document["targets"]:
        assert {"target", "host", "port", "agree", "results"} <= target.keys()
        assert target["host"] == "localhost"
        for result in target["results"]:
            assert {
                "stack",
                "where",
                "ok",
                "reason",
                "detail",
                "tls_version",
                "elapsed_ms",
                "reproduce",
                "trust",
            } <= result.keys()
            assert isinstance(result["elapsed_ms"], float)
    expired = document["targets"][1]["results"]
    assert [r["reason"] for r in expired] == ["expired", "expired"]
    assert document["summary"]["targets"] == 2


def test_json_is_the_only_stdout(lab: Lab) -> None:
    done = comparer(
        "check", "--json", "--ca-file", str(lab.ca_bundle), lab.scenario("good").target
    )
    json.loads(done.stdout)
    assert done.stdout.lstrip().startswith("{")


def test_table_marks_disagreement_first(lab: Lab) -> None:
    good = lab.scenario("good").target
    cn_only = lab.scenario("cn-only").target
    done = comparer("check", "--ca-file", str(lab.ca_bundle), good, cn_only)
    lines = done.stdout.splitlines()
    rows = [line for line in lines if "localhost:" in line and "│" in line]
    assert cn_only in rows[0]
    assert "≠" in rows[0]
    assert any(
        line.startswith("≠ " + cn_only) and "requests (hostname-mismatch)" in line
        for line in lines
    )
    assert "2 targets, 1 disagreement, 0 failed in every stack" in done.stdout


COLOR_CODE = re.compile(r"\x1b\[[0-9;]*?(?:3[0-8]|9[0-7])(?:;[0-9;]*)?m")


def test_no_color_removes_colors(lab: Lab) -> None:
    target = lab.scenario("expired-leaf").target
    args = ("check", "--ca-file", str(lab.ca_bundle), target)
    coloured = comparer(*args, env=clean_env(FORCE_COLOR="1"))
    plain = comparer(*args, env=clean_env(NO_COLOR="1", FORCE_COLOR="1"))
    assert COLOR_CODE.search(coloured.stdout)
    assert not COLOR_CODE.search(plain.stdout)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["check"], "no targets given"),
        (["check", "--", "-proxy"], "'-proxy'"),
        (["check", "host:99999"], "'host:99999'"),
        (["check", "--stacks", "nope", "localhost"], "unknown stack 'nope'"),
        (["check", "--stacks", ",", "localhost"], "invalid --stacks"),
        (["check", "--ca-file", "/nonexistent.pem", "localhost"], "CA file not found"),
        (["check", "--timeout", "0", "localhost"], "--timeout"),
        (["check", "--concurrency", "x", "localhost"], "--concurrency"),
        (["check", "-f", "/nonexistent.txt"], "targets file not found"),
    ],
)
def test_usage_errors_exit_two(args: list[str], fragment: str) -> None:
    done = comparer(*args)
    assert done.returncode == 2
    assert fragment in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_ca_file_without_certificates(tmp_path: Path) -> None:
    path = tmp_path / "empty.pem"
    path.write_text("not a certificate\n")
    done = comparer("check", "--ca-file", str(path), "localhost")
    assert done.returncode == 2
    assert "contains no PEM certificate" in done.stderr


def test_bad_file_line_becomes_error_row(lab: Lab, tmp_path: Path) -> None:
    targets = tmp_path / "targets.txt"
    targets.write_text(f"# lab\n{lab.scenario('good').target}\nbad:port:x\n-evil\n")
    code, document = check_json("--ca-file", str(lab.ca_bundle), "-f", str(targets))
    assert code == 2
    rows = {t["target"]: t for t in document["targets"]}
    assert rows["bad:port:x"]["error"].startswith("line 3: ")
    assert rows["-evil"]["error"].startswith("line 4: ")
    assert rows["-evil"]["error"]
    assert rows[lab.scenario("good").target]["results"][0]["ok"] is True


def test_targets_from_stdin(lab: Lab) -> None:
    done = comparer(
        "check",
        "--json",
        "--ca-file",
        str(lab.ca_bundle),
        "-f",
        "-",
        stdin=lab.scenario("good").target + "\n",
    )
    assert done.returncode == 0
    assert len(json.loads(done.stdout)["targets"]) == 1


def test_shell_metacharacters_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    done = comparer(
        "check", f"$(touch {marker})", f"`touch {marker}`", f";touch {marker}"
    )
    assert done.returncode == 2
    assert not marker.exists()


def test_env_changes_requests_trust(lab: Lab) -> None:
    target = lab.scenario("good").target
    env = clean_env(REQUESTS_CA_BUNDLE=str(lab.ca_bundle))
    code, document = check_json("--stacks", "requests,httpx", target, env=env)
    results = {r["stack"]: r for r in document["targets"][0]["results"]}
    assert results["requests"]["ok"] is True
    assert "REQUESTS_CA_BUNDLE" in results["requests"]["trust"]
    # httpx ignores REQUESTS_CA_BUNDLE and keeps certifi.
    assert results["httpx"]["reason"] == "unknown-issuer"
    assert "certifi" in results["httpx"]["trust"]
    assert code == 1


def test_ssl_cert_file_reaches_aiohttp(lab: Lab) -> None:
    target = lab.scenario("good").target
    env = clean_env(SSL_CERT_FILE=str(lab.ca_bundle))
    _, document = check_json(
        "--stacks", "aiohttp,stdlib,httpx,requests,openssl", target, env=env
    )
    results = {r["stack"]: r for r in document["targets"][0]["results"]}
    for stack in ("aiohttp", "stdlib", "httpx", "openssl"):
        assert results[stack]["ok"] is True, stack
    assert results["requests"]["reason"] == "unknown-issuer"


def test_help_documents_exit_status() -> None:
    done = comparer("check", "--help")
    assert "exit status" in done.stdout
    assert "2 bad usage" in done.stdout


def test_demo_shows_real_disagreement() -> None:
    done = comparer("demo", "--json", "--timeout", "5")
    assert done.returncode == 1, done.stderr
    document = json.loads(done.stdout)
    rows = {t.get("label"): t for t in document["targets"]}
    internal = next(
        t for label, t in rows.items() if label and label.startswith("internal-root")
    )
    results = {r["stack"]: r for r in internal["results"]}
    assert internal["agree"] is False
    assert results["requests"]["reason"] == "unknown-issuer"
    assert "certifi" in results["requests"]["trust"]
    for stack in ("openssl", "stdlib", "httpx", "aiohttp"):
        assert results[stack]["ok"] is True, stack
    assert rows["good"]["agree"] is True
    assert document["summary"]["disagreements"] >= 2


# --- bad input: one line on stderr naming the value, exit 2 -----------------------


def last_error_line(stderr: str) -> str:
    """Return the error line that argparse or comparer printed last."""
    return stderr.rstrip("\n").splitlines()[-1]


@pytest.mark.parametrize(
    ("args", "value"),
    [
        (["check", ""], "''"),
        (["check", "  "], "'  '"),
        (["check", "localhost:²"], "'²'"),
        (["check", "localhost:70000"], "70000"),
        (["check", "https://[::1"], "'https://[::1'"),
        (["check", "a" * 64 + ".test"], "a" * 64),
        (["check", "bad_label-.test"], "'bad_label-'"),
        (["check", "--", "-proxy"], "'-proxy'"),
        (["check", "-proxy"], "-proxy"),
        (["check", "--", "--ca-file=/etc/passwd"], "'--ca-file=/etc/passwd'"),
        (["check", "$(id)"], "'$(id)'"),
        (["check", "--ca-file=-CAfile", "localhost"], "./-CAfile"),
        (["check", "--timeout", "nan", "localhost"], "'nan'"),
        (["check", "--timeout", "-1", "localhost"], "'-1'"),
        (["check", "--concurrency", "0", "localhost"], "'0'"),
        (["check", "--stacks", "openssl,curl", "localhost"], "'curl'"),
        (["check", "--sni", "a.test", "--no-sni", "localhost"], "--no-sni"),
    ],
)
def test_bad_argument_named_on_one_line(args: list[str], value: str) -> None:
    done = comparer(*args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    line = last_error_line(done.stderr)
    assert line.startswith("comparer")
    assert "error: " in line
    assert value in line


def test_ca_file_is_directory(tmp_path: Path) -> None:
    done = comparer("check", "--ca-file", str(tmp_path), "localhost")
    assert done.returncode == 2
    assert repr(str(tmp_path)) in last_error_line(done.stderr)


def test_ca_file_binary(tmp_path: Path) -> None:
    path = tmp_path / "random.bin"
    path.write_bytes(bytes(range(256)) * 4)
    done = comparer("check", "--ca-file", str(path), "localhost")
    assert done.returncode == 2
    assert "contains no PEM certificate" in last_error_line(done.stderr)


def test_ca_file_broken_pem(tmp_path: Path) -> None:
    path = tmp_path / "broken.pem"
    path.write_text(
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n"
        "-----END CERTIFICATE-----\n"
    )
    done = comparer("check", "--ca-file", str(path), "localhost")
    assert done.returncode == 2
    line = last_error_line(done.stderr)
    assert line.startswith("comparer: error: CA file ")
    assert repr(str(path)) in line
    assert "Traceback" not in done.stderr


def test_ca_file_named_like_option(lab: Lab, tmp_path: Path) -> None:
    # A file called -CAfile is usable as ./-CAfile, and reaches s_client as an
    # absolute path, never as an option.
    (tmp_path / "-CAfile").write_bytes(lab.ca_bundle.read_bytes())
    done = subprocess.run(
        [sys.executable, "-m", "comparer", "check", "--json"]
        + ["--ca-file", "./-CAfile", lab.scenario("good").target],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["settings"]["ca_file"] == str(tmp_path / "-CAfile")
    openssl = next(
        r for r in document["targets"][0]["results"] if r["stack"] == "openssl"
    )
    assert f"-CAfile {tmp_path}/-CAfile" in openssl["reproduce"]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"\x00\x01localhost\n", "binary"),
        ("héllo\n".encode("latin-1"), "not UTF-8"),
    ],
)
def test_bad_targets_file_exits_two(
    tmp_path: Path, content: bytes, fragment: str
) -> None:
    path = tmp_path / "targets.txt"
    path.write_bytes(content)
    done = comparer("check", "-f", str(path))
    assert done.returncode == 2
    line = last_error_line(done.stderr)
    assert fragment in line
    assert repr(str(path)) in line
    assert done.stdout == ""


def test_unreadable_targets_file_exits_two() -> None:
    # /proc/self/mem fails with EIO on read, which root cannot override.
    done = comparer("check", "-f", "/proc/self/mem")
    assert done.returncode == 2
    assert "cannot read targets file '/proc/self/mem'" in last_error_line(done.stderr)


def test_hostile_file_lines_become_error_rows(lab: Lab, tmp_path: Path) -> None:
    good = lab.scenario("good").target
    bad = [
        "localhost:²",
        "https://[::1",
        "$(touch pwned)",
        "-CAfile",
        "a" * 64 + ".test",
        "http://localhost",
        "example。test",
    ]
    targets = tmp_path / "targets.txt"
    targets.write_text("\n".join([bad[0], good, *bad[1:], good]) + "\n")

    done = subprocess.run(
        [sys.executable, "-m", "comparer", "check", "--json"]
        + ["--ca-file", str(lab.ca_bundle), "-f", str(targets)],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr

    rows = {t["target"]: t for t in json.loads(done.stdout)["targets"]}
    assert set(rows) == {good, *bad}
    for raw in bad:
        assert re.match(r"line \d+: invalid", rows[raw]["error"]), raw
        assert rows[raw]["results"] == [], raw
    assert all(r["ok"] for r in rows[good]["results"])
    assert len(rows[good]["results"]) == 5
    assert not (tmp_path / "pwned").exists()


def test_reproduce_carries_trust_variables(lab: Lab) -> None:
    target = lab.scenario("good").target
    env = clean_env(SSL_CERT_FILE=str(lab.ca_bundle))
    _, document = check_json("--stacks", "stdlib,requests", target, env=env)
    results = {r["stack"]: r for r in document["targets"][0]["results"]}
    assert results["stdlib"]["reproduce"].startswith(f"SSL_CERT_FILE={lab.ca_bundle} ")
    # requests ignores SSL_CERT_FILE, so its command must not pretend otherwise.
    assert "SSL_CERT_FILE" not in results["requests"]["reproduce"]
    # The line is meant for a person's shell, so the test runs it through one.
    replay = subprocess.run(  # noqa: S602
        results["stdlib"]["reproduce"],
        shell=True,
        env=clean_env(),  # noqa: S602
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert replay.returncode == 0, replay.stderr
    assert "TLSv1" in replay.stdout


def test_image_options_need_an_image() -> None:
    done = comparer("check", "--pull", "never", "localhost")
    assert done.returncode == 2
    assert "--pull needs --image IMAGE" in done.stderr


@pytest.mark.parametrize("columns", ["80", "100"])
def test_narrow_table_keeps_every_column(lab: Lab, columns: str) -> None:
    cn_only = lab.scenario("cn-only").target
    done = comparer(
        "check",
        "--ca-file",
        str(lab.ca_bundle),
        cn_only,
        env=clean_env(COLUMNS=columns),
    )
    lines = done.stdout.splitlines()
    header = next(line for line in lines if "target" in line)
    for stack in ("openssl", "stdlib", "requests", "httpx", "aiohttp"):
        assert stack in header
    row = next(line for line in lines if cn_only in line)
    assert "≠" in row
    assert all(len(line) <= int(columns) for line in lines[: lines.index(row) + 3])


def test_bad_image_reference_stops_early() -> None:
    done = comparer("check", "localhost:1", "--image=-x")
    assert done.returncode == 2
    assert "image reference '-x'" in done.stderr
