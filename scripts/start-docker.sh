#!/bin/sh
# Start a Docker engine on this machine. The script installs Debian's docker.io and
# debootstrap when missing, then starts dockerd in the background unless `docker info`
# already succeeds. Running it again changes nothing while the engine is up.
#
# The daemon runs without a bridge and without iptables rules because comparer's
# containers use only `--network host` (loopback targets) or `--network none`.
set -eu

LOG_FILE=${DOCKERD_LOG:-/var/log/comparer-dockerd.log}
WAIT_SECONDS=${DOCKERD_WAIT_SECONDS:-60}

log() {
    echo "start-docker: $*" >&2
}

engine_is_up() {
    docker info >/dev/null 2>&1
}

install_missing() {
    missing=""
    command -v dockerd >/dev/null 2>&1 || missing="$missing docker.io"
    command -v debootstrap >/dev/null 2>&1 || missing="$missing debootstrap"
    # docker.io brings its own client; a newer client elsewhere on PATH is kept.
    command -v docker >/dev/null 2>&1 || missing="$missing docker.io"
    if [ -z "$missing" ]; then
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        log "missing:$missing; run this script as root so it can apt-get install them"
        exit 1
    fi
    log "installing:$missing"
    apt-get update -qq
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >&2
}

start_daemon() {
    log "starting dockerd (log: $LOG_FILE)"
    nohup dockerd --bridge=none --iptables=false >>"$LOG_FILE" 2>&1 &
    waited=0
    until engine_is_up; do
        if [ "$waited" -ge "$WAIT_SECONDS" ]; then
            log "dockerd not ready after ${WAIT_SECONDS}s; see $LOG_FILE"
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    log "dockerd ready after ${waited}s"
}

install_missing
if engine_is_up; then
    log "an engine is already running"
else
    start_daemon
fi
docker version --format 'client {{.Client.Version}} (API {{.Client.APIVersion}}), server {{.Server.Version}} (API {{.Server.APIVersion}})' >&2
