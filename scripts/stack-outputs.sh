#!/usr/bin/env bash
# What the stack serves before this deploy, read so that nothing fails open (issue 21):
#
#   STACK, PULUMI_BACKEND_URL   as every Pulumi job has them
#
# Writes to $GITHUB_OUTPUT (or stdout):
#   url=             the live service (empty: the stack has never been deployed)
#   image=           the digest it runs (<repo>@sha256:...): what the guardrail rolls back to
#   ingress_group=   where a job admits its runner to reach the url (scripts/runner_access.py)
#   first_deploy=    true only when the stack has no `url` output; the promotion gate then passes
#                    `--first-deploy` (model/gate.py), and only then may an unreachable service pass
#
# A failing `pulumi stack output` (backend unreachable, no permission, a corrupt state) stops the
# job: it is never read as "no live service". A new stack is created empty first (`select
# --create`), so its outputs are `{}`, which is what a first deploy looks like
# (pulumi/pulumi pkg/cmd/pulumi/stack/stack_output.go: no outputs print as `{}`, a failed read
# returns its error). It is created with the stack file's own `secretsprovider` (the bootstrap's KMS
# key): without the flag a DIY backend's new stack gets a passphrase manager
# (pkg/backend/diy/backend.go DefaultSecretManager), which a CI job has no passphrase for.
set -euo pipefail

: "${STACK:?}" "${PULUMI_BACKEND_URL:?}"
out=${GITHUB_OUTPUT:-/dev/stdout}

pulumi login "$PULUMI_BACKEND_URL" >&2
provider=$(sed -n 's/^secretsprovider: *//p' "Pulumi.${STACK}.yaml" 2>/dev/null || true)
pulumi stack select --create ${provider:+--secrets-provider "$provider"} "$STACK" >&2
outputs=$(pulumi stack output --json --stack "$STACK")
field() { jq -er --arg key "$1" '.[$key] // "" | strings' <<<"$outputs"; }
url=$(field url)
image=$(field image)
ingress_group=$(field ingress_group)
if [[ -z "$url" ]]; then first_deploy=true; else first_deploy=false; fi
{
  echo "url=$url"
  echo "image=$image"
  echo "ingress_group=$ingress_group"
  echo "first_deploy=$first_deploy"
} >>"$out"
echo "stack-outputs: ${STACK}: url='${url}' image='${image}' first_deploy=${first_deploy}" >&2
