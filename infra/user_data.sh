#!/bin/bash
# Boot script for the app server; a template rendered by infra/user_data.py (render_user_data),
# which fills each placeholder with a shell-quoted value. Runs as root from cloud-init on EC2, and
# unchanged on any host with Docker (the deploy rehearsal). Safe to run again: when the container
# already runs this exact image digest, nothing is touched.
set -euo pipefail

IMAGE=@@IMAGE@@                    # registry/repo@sha256:<digest>, never a tag
REGISTRY=@@REGISTRY@@              # the registry host in IMAGE
REGION=@@REGION@@                  # AWS region, for the ECR login
ECR_LOGIN=@@ECR_LOGIN@@            # 1: log in to ECR with the instance role; 0: registry needs no login
HOST_PORT=@@HOST_PORT@@            # the port the public reaches
CONTAINER_PORT=@@CONTAINER_PORT@@  # the port the app listens on inside the container (env PORT)
CONTAINER_NAME=@@CONTAINER_NAME@@
LOG_DRIVER=@@LOG_DRIVER@@
LOG_OPTS=(@@LOG_OPTS@@)            # key=value pairs for --log-opt
RETRY_DELAY="${RETRY_DELAY:-5}"    # seconds between attempts; the network may lag the boot
# Seconds Docker waits after SIGTERM before SIGKILL (stop, reboot, replacement): longer than the
# service's 20 s graceful timeout, so draining requests are never cut off (Docker's default is 10).
STOP_TIMEOUT=30

log() { echo "user-data: $*" >&2; }

# Run a command until it succeeds, at most 12 times: the Elastic IP, the instance role's
# credentials and the Docker daemon can each still be settling when cloud-init gets here.
retry() {
    local attempt=1
    until "$@"; do
        if ((attempt >= 12)); then
            log "giving up after ${attempt} attempts: $*"
            return 1
        fi
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
    dnf install -y docker
    # enable: the daemon, and with it the --restart policy below, comes back after a reboot.
    systemctl enable --now docker
    retry docker info >/dev/null
}

running_image() {
    docker inspect --format '{{.State.Running}} {{.Config.Image}}' "${CONTAINER_NAME}" 2>/dev/null || true
}

ecr_login() {
    aws ecr get-login-password --region "${REGION}" |
        docker login --username AWS --password-stdin "${REGISTRY}"
}

main() {
    ensure_docker
    if [[ "$(running_image)" == "true ${IMAGE}" ]]; then
        log "${CONTAINER_NAME} already runs ${IMAGE}; nothing to do"
        return 0
    fi
    if [[ "${ECR_LOGIN}" == "1" ]]; then
        retry ecr_login
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
    docker run --detach --name "${CONTAINER_NAME}" --restart unless-stopped \
        --stop-timeout "${STOP_TIMEOUT}" --publish "${HOST_PORT}:${CONTAINER_PORT}" --env "PORT=${CONTAINER_PORT}" \
        "${log_args[@]}" "${IMAGE}"
    log "started ${CONTAINER_NAME} from ${IMAGE} on port ${HOST_PORT}"
}

main "$@"
