#!/bin/sh
# Build the container images that the image tests and benchmarks probe, once: an
# image whose tag already exists is skipped. Each image is a `debootstrap
# --variant=minbase` root file system imported with `docker import`.
#
#   comparer-test/bullseye:1   OpenSSL 1.1.1, python3.9, python2.7, python3-requests
#   comparer-test/bookworm:1   OpenSSL 3.0, python3.11, python3-requests, python3-httpx
#   comparer-test/trixie:1     OpenSSL 3.5, python3.13
#   comparer-test/nopython:1   OpenSSL 3.0 command line only, no Python at all
#
# Every image has ca-certificates. The Debian mirror is read from this machine's apt
# sources, so the script fetches from wherever apt on the host already does.
#
# Usage: docker/build-test-images.sh [NAME...]   (default: all four)
# Environment: ENGINE (docker or podman, default docker), WORK_DIR (scratch space).
set -eu

ENGINE=${ENGINE:-docker}
TAG_VERSION=1
WORK_DIR=${WORK_DIR:-/var/tmp/comparer-images}

log() {
    echo "build-test-images: $*" >&2
}

# Print the first Debian archive URI in the host's apt sources (deb822 `.sources`
# files first, then one-line `.list` files), skipping security and third-party repos.
find_mirror() {
    for file in /etc/apt/sources.list.d/*.sources; do
        [ -f "$file" ] || continue
        uri=$(awk '
            /^[[:space:]]*$/ { if (uris != "" && suites !~ /-security/ && keyring ~ /debian-archive/) { print uris; exit } uris = ""; suites = ""; keyring = ""; next }
            /^URIs:/ { uris = $2 }
            /^Suites:/ { suites = $0 }
            /^Signed-By:/ { keyring = $0 }
            END { if (uris != "" && suites !~ /-security/ && keyring ~ /debian-archive/) print uris }
        ' "$file" | head -n 1)
        if [ -n "$uri" ]; then
            echo "$uri"
            return 0
        fi
    done
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$file" ] || continue
        uri=$(awk '$1 == "deb" && $0 !~ /security/ && $0 ~ /debian/ {
            for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit }
        }' "$file")
        if [ -n "$uri" ]; then
            echo "$uri"
            return 0
        fi
    done
    return 1
}

image_exists() {
    "$ENGINE" image inspect "$1" >/dev/null 2>&1
}

# build_image NAME SUITE PACKAGES: debootstrap SUITE with PACKAGES into a scratch
# directory, strip package caches, and import the tree as comparer-test/NAME.
build_image() {
    name=$1
    suite=$2
    packages=$3
    tag="comparer-test/$name:$TAG_VERSION"
    if image_exists "$tag"; then
        log "$tag exists, skipped"
        return 0
    fi

    root="$WORK_DIR/$name"
    rm -rf "$root"
    mkdir -p "$root"
    started=$(date +%s)
    log "$tag: debootstrap $suite with $packages"
    debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$MIRROR" \
        >"$WORK_DIR/$name.log" 2>&1 || {
        log "$tag: debootstrap failed; last lines of $WORK_DIR/$name.log:"
        tail -n 20 "$WORK_DIR/$name.log" >&2
        return 1
    }

    # Package caches are only needed to install more, which the probes never do.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | "$ENGINE" import - "$tag" >/dev/null
    rm -rf "$root"
    finished=$(date +%s)
    size=$("$ENGINE" image inspect --format '{{.Size}}' "$tag")
    log "$tag: built in $((finished - started))s, $((size / 1048576)) MiB"
}

build_named() {
    case $1 in
    bullseye)
        build_image bullseye bullseye \
            ca-certificates,openssl,python3-minimal,python3,python2.7,python3-requests
        ;;
    bookworm)
        build_image bookworm bookworm \
            ca-certificates,openssl,python3-minimal,python3,python3-requests,python3-httpx
        ;;
    trixie)
        build_image trixie trixie ca-certificates,openssl,python3-minimal,python3
        ;;
    nopython)
        build_image nopython bookworm ca-certificates,openssl
        ;;
    *)
        log "unknown image name '$1'; choose from bullseye bookworm trixie nopython"
        return 2
        ;;
    esac
}

if ! command -v debootstrap >/dev/null 2>&1; then
    log "debootstrap not found; run scripts/start-docker.sh or apt-get install debootstrap"
    exit 1
fi
MIRROR=$(find_mirror) || {
    log "no Debian mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d"
    exit 1
}
mkdir -p "$WORK_DIR"
log "mirror from apt sources: $MIRROR"

if [ "$#" -eq 0 ]; then
    set -- bullseye bookworm trixie nopython
fi
for name in "$@"; do
    build_named "$name"
done
