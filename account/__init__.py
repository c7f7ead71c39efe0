"""The one-time account setup: what must exist before `pulumi up` can run, made with boto3.

`python -m account.bootstrap` (or `make bootstrap`) makes the state bucket, the secrets key and, for
CI, GitHub's OIDC provider and the CI roles, whose policies `account.permissions` derives from the
program in `infra/`; `account.calls` and `account.authz` check those policies offline against every
call a deploy makes, by IAM's evaluation logic and AWS's Service Authorization Reference.
Data flows one way: this package reads facts the program declares
(`infra.state_hardening`, `infra.tags`, the names in `infra.release`); the program never imports this package.
No Pulumi import anywhere here: it runs before Pulumi is set up.
"""
