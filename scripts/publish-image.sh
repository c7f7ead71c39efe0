#!/usr/bin/env bash
# Push the tested image to a stack's ECR repository under its content tag, once, and say which build
# that tag names. Run by the deploy workflow (.github/workflows/deploy.yml) after its environment's
# approval, before its one ordinary `pulumi up`.
#
#   STACK         the stack (prod, staging)
#   LOCAL_IMAGE   the image the docker group passed on (loaded by scripts/load-tested-image.sh)
#   TAG           its content tag (python -m infra.release, the function the program calls)
#   AWS_REGION    the stack's region
#
# 1. The repository is the one the account setup made for this stack (account/bootstrap.py, `make
#    bootstrap`), which the program adopts. Nothing here creates it: no `pulumi up --target`, which
#    fails on a stack whose state lacks the parent component ("untargeted create"), and no
#    ecr:CreateRepository for the deploy role. A missing repository stops the job with what to run.
# 2. A tag already in ECR is never pushed again (tags are immutable, and it names the same content):
#    the image there is pulled and ITS identity reported, since for content built before, the
#    revision is the commit that first built it.
# Writes repository=, revision=, model_version=, pushed= to $GITHUB_OUTPUT (or stdout).
set -euo pipefail

: "${STACK:?}" "${LOCAL_IMAGE:?}" "${TAG:?}" "${AWS_REGION:?}"
out=${GITHUB_OUTPUT:-/dev/stdout}
names=$(python -m infra.release --stack "$STACK")
name() { sed -n "s/^$1=//p" <<<"$names"; }
repo_name=$(name repository)

if ! repository=$(aws ecr describe-repositories --region "$AWS_REGION" --repository-names "$repo_name" \
  --query 'repositories[0].repositoryUri' --output text 2>&1); then
  echo "::error title=no image repository::ECR has no repository ${repo_name} for stack ${STACK} in ${AWS_REGION} (${repository})." \
    "The one-time account setup makes it: run 'make bootstrap GITHUB_REPO=OWNER/REPO' (python -m account.bootstrap," \
    "with administrator credentials; docs/deploy.md section 1), then re-run this job." >&2
  exit 1
fi
registry=${repository%%/*}
aws ecr get-login-password --region "$AWS_REGION" | docker login --username AWS --password-stdin "$registry"

if aws ecr describe-images --region "$AWS_REGION" --repository-name "$repo_name" \
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
