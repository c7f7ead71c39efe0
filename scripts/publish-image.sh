#!/usr/bin/env bash
# Push the tested image to a stack's ECR repository under its content tag, once, and say which build
# that tag names. Run by pipeline.yml's deploy jobs, after their environment's approval.
#
#   STACK         the stack (prod, staging)
#   LOCAL_IMAGE   the image the docker group passed on (loaded by scripts/load-tested-image.sh)
#   TAG           its content tag (python -m infra.release, the function the program calls)
#   AWS_REGION, PULUMI_BACKEND_URL   as every Pulumi job has them
#
# 1. The stack's two ECR repositories are created if this is its first deploy (a targeted `up`
#    of just those resources), since the image must be there before the program looks for it.
# 2. A tag already in ECR is never pushed again (tags are immutable, and it names the same content):
#    the image there is pulled and ITS identity reported, since for content built before, the
#    revision is the commit that first built it.
# Writes repository=, revision=, model_version=, pushed= to $GITHUB_OUTPUT (or stdout).
set -euo pipefail

: "${STACK:?}" "${LOCAL_IMAGE:?}" "${TAG:?}" "${AWS_REGION:?}" "${PULUMI_BACKEND_URL:?}"
out=${GITHUB_OUTPUT:-/dev/stdout}
names=$(python -m infra.release --stack "$STACK")
name() { sed -n "s/^$1=//p" <<<"$names"; }

pulumi login "$PULUMI_BACKEND_URL"
pulumi stack select --create "$STACK"
urn="urn:pulumi:${STACK}::cali-housing::cali:aws:Registry\$aws:ecr/repository:Repository"
pulumi up --stack "$STACK" --yes --skip-preview --target "${urn}::cali-repo" --target "${urn}::cali-cache-repo"

account=$(aws sts get-caller-identity --query Account --output text)
registry="${account}.dkr.ecr.${AWS_REGION}.amazonaws.com"
repository="${registry}/$(name repository)"
aws ecr get-login-password --region "$AWS_REGION" | docker login --username AWS --password-stdin "$registry"

if aws ecr describe-images --region "$AWS_REGION" --repository-name "$(name repository)" \
  --image-ids "imageTag=$TAG" >/dev/null 2>&1; then
  echo "publish: $repository:$TAG is already in ECR (same content): deploying it, pushing nothing"
  docker pull --quiet "$repository:$TAG" >/dev/null
  image="$repository:$TAG"
  pushed=false
else
  docker tag "$LOCAL_IMAGE" "$repository:$TAG"
  docker push --quiet "$repository:$TAG"
  image="$LOCAL_IMAGE"
  pushed=true
fi

label() {
  docker image inspect --format "{{ index .Config.Labels \"$1\" }}" "$image"
}
{
  echo "repository=$repository"
  echo "revision=$(label "$(name revision_label)")"
  echo "model_version=$(label "$(name model_version_label)")"
  echo "pushed=$pushed"
} >>"$out"
