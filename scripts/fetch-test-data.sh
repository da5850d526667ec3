#!/usr/bin/env bash
# Download the old certifi wheels that tests/test_bundle.py audits into
# .cache/test-data/. Safe to run again: a wheel already there is kept.
#
# Usage: scripts/fetch-test-data.sh [PYTHON]
# PYTHON defaults to the project's .venv, then python3 on PATH.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="$root/.cache/test-data"
python="${1:-}"
if [[ -z "$python" ]]; then
    if [[ -x "$root/.venv/bin/python" ]]; then
        python="$root/.venv/bin/python"
    else
        python="python3"
    fi
fi

# These two releases still contain a root that expired soon after: AddTrust
# External CA Root (2020-05-30) and DST Root CA X3 (2021-09-30).
versions=(2020.4.5.1 2021.5.30)

mkdir -p "$cache"
# The downloads stay out of git without touching the repository's .gitignore.
if [[ ! -f "$root/.cache/.gitignore" ]]; then
    printf '*\n' >"$root/.cache/.gitignore"
fi
for version in "${versions[@]}"; do
    if compgen -G "$cache/certifi-$version-*.whl" >/dev/null; then
        echo "fetch-test-data: certifi $version already in $cache"
        continue
    fi
    "$python" -m pip download --quiet --disable-pip-version-check --no-deps \
        --only-binary=:all: --dest "$cache" "certifi==$version"
    echo "fetch-test-data: downloaded certifi $version to $cache"
done
