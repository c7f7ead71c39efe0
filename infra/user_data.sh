#!/bin/bash
# Boot script for the app server; a template rendered by infra/user_data.py (render_user_data),
# which fills each placeholder with a shell-quoted value. Runs as root from cloud-init on EC2, and
# unchanged on any host with Docker (the deploy rehearsal). Safe to run again: when the container
# already runs this exact image digest, nothing is touched.
set -euo pipefail

IMAGE=@@IMAGE@@                    # registry/repo@sha256:<digest>, never a tag
REGISTRY=@@REGISTRY@@              # the registry host in IMAGE
ECR_LOGIN=@@ECR_LOGIN@@            # 1: pull from ECR through the credential helper; 0: registry needs no login
HOST_PORT=@@HOST_PORT@@            # the port the public reaches
CONTAINER_PORT=@@CONTAINER_PORT@@  # the port the app listens on inside the container (env PORT)
CONTAINER_NAME=@@CONTAINER_NAME@@
LOG_DRIVER=@@LOG_DRIVER@@
LOG_OPTS=(@@LOG_OPTS@@)            # key=value pairs for --log-opt
RETRY_DELAY="${RETRY_DELAY:-5}"    # seconds between attempts; the network may lag the boot
RETRY_ATTEMPTS=12                  # with the delay: a minute of trying before a step gives up
# Docker's client config for root: cloud-init may run without HOME.
DOCKER_CONFIG="${DOCKER_CONFIG:-${HOME:-/root}/.docker}"
export DOCKER_CONFIG
# Seconds Docker waits after SIGTERM before SIGKILL (stop, reboot, replacement): longer than the
# service's 20 s graceful timeout, so draining requests are never cut off (Docker's default is 10).
STOP_TIMEOUT=30

log() { echo "user-data: $*" >&2; }

# Run a command until it succeeds, at most RETRY_ATTEMPTS times, logging each failed attempt: the
# network, the dnf mirrors, the instance role's credentials and the Docker daemon can each still be
# settling when cloud-init gets here, and one transient failure must not leave a dead server.
retry() {
    local attempt=1
    until "$@"; do
        if ((attempt >= RETRY_ATTEMPTS)); then
            log "giving up after ${attempt} attempts: $*"
            return 1
        fi
        log "attempt ${attempt}/${RETRY_ATTEMPTS} failed, retrying in ${RETRY_DELAY}s: $*"
        attempt=$((attempt + 1))
        sleep "${RETRY_DELAY}"
    done
}

ensure_docker() {
    if docker info >/dev/null 2>&1; then
        log "docker is already running"
        return 0
    fi
    log "installing docker"
    retry dnf install -y docker
    # enable: the daemon, and with it the --restart policy below, comes back after a reboot.
    retry systemctl enable --now docker
    retry docker info >/dev/null
}

# ECR through Amazon's credential helper (an Amazon Linux 2023 package): Docker asks it for a token
# on each pull, it gets one with the instance role, and nothing is written to disk; `docker login`
# would have left the token in config.json in plain text for twelve hours.
ensure_ecr_helper() {
    if ! command -v docker-credential-ecr-login >/dev/null 2>&1; then
        log "installing amazon-ecr-credential-helper"
        retry dnf install -y amazon-ecr-credential-helper
    fi
    mkdir -p "${DOCKER_CONFIG}"
    printf '{"credHelpers": {"%s": "ecr-login"}}\n' "${REGISTRY}" >"${DOCKER_CONFIG}/config.json"
    chmod 600 "${DOCKER_CONFIG}/config.json"
    log "docker pulls from ${REGISTRY} through the ECR credential helper"
}

running_image() {
    docker inspect --format '{{.State.Running}} {{.Config.Image}}' "${CONTAINER_NAME}" 2>/dev/null || true
}

# A failed `docker run` may leave a created container behind; each attempt starts from none.
start_container() {
    if docker inspect "${CONTAINER_NAME}" >/dev/null 2>&1; then
        docker rm --force "${CONTAINER_NAME}"
    fi
    docker run --detach --name "${CONTAINER_NAME}" --restart unless-stopped \
        --stop-timeout "${STOP_TIMEOUT}" --publish "${HOST_PORT}:${CONTAINER_PORT}" --env "PORT=${CONTAINER_PORT}" --env EMF=1 \
        "$@" "${IMAGE}"
}

main() {
    ensure_docker
    if [[ "$(running_image)" == "true ${IMAGE}" ]]; then
        log "${CONTAINER_NAME} already runs ${IMAGE}; nothing to do"
        return 0
    fi
    if [[ "${ECR_LOGIN}" == "1" ]]; then
        ensure_ecr_helper
    fi
    retry docker pull "${IMAGE}"
    if docker inspect "${CONTAINER_NAME}" >/dev/null 2>&1; then
        log "replacing the old ${CONTAINER_NAME}"
        # stop first: SIGTERM lets gunicorn finish in-flight requests before the container goes
        docker stop --time "${STOP_TIMEOUT}" "${CONTAINER_NAME}"
        docker rm "${CONTAINER_NAME}"
    fi
    local log_args=(--log-driver "${LOG_DRIVER}")
    local opt
    for opt in "${LOG_OPTS[@]}"; do
        log_args+=(--log-opt "${opt}")
    done
    # unless-stopped: Docker restarts it after a crash or a reboot, but not after a deliberate stop.
    retry start_container "${log_args[@]}"
    log "started ${CONTAINER_NAME} from ${IMAGE} on port ${HOST_PORT}"
}

main "$@"
