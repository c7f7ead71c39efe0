#!/usr/bin/env bash
# Load the image the image job built and tested (release-image.tar.gz, its artifact) and refuse to go
# on unless its id, the digest of its config and so of every layer, is the one the docker group
# passed on (TESTED_ID). What is pushed next is therefore exactly what was tested.
set -euo pipefail

: "${TESTED_ID:?}" "${RELEASE_IMAGE:?}"
gunzip -c release-image.tar.gz | docker load --quiet
loaded=$(docker image inspect --format '{{.Id}}' "$RELEASE_IMAGE")
if [[ "$loaded" != "$TESTED_ID" ]]; then
  echo "::error title=not the tested image::loaded ${loaded}, the docker group tested ${TESTED_ID}"
  exit 1
fi
echo "load: ${RELEASE_IMAGE} is ${loaded}, the image the docker group tested"
