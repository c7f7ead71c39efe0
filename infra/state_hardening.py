"""How the Pulumi state bucket is hardened, in one place for the bootstrap and the Pulumi component.

The bootstrap (boto3) creates the bucket before Pulumi can run; the program then imports it. An
import succeeds only when the program's inputs match what exists, so both read these definitions.
No Pulumi import here: the bootstrap runs before Pulumi is set up.
"""

from __future__ import annotations

import json
from typing import Any

# The state bucket holds every stack's state, so its tags name no stack.
STATE_BUCKET_TAGS: dict[str, str] = {
    "project": "cali-housing",
    "managed-by": "pulumi",
    "purpose": "pulumi-state",
}

SSE_ALGORITHM = "AES256"  # SSE-S3: no key to manage or pay for, and state is already access-controlled.
OBJECT_OWNERSHIP = "BucketOwnerEnforced"  # ACLs off: access is decided by IAM and the bucket policy only.
LIFECYCLE_RULE_ID = "expire-noncurrent-state"
ABORT_MULTIPART_DAYS = 7
PUBLIC_ACCESS_BLOCK: dict[str, bool] = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


def tls_only_policy(bucket: str) -> dict[str, Any]:
    """The bucket policy: deny every request that does not arrive over TLS.

    Args:
        bucket: The bucket name.

    Returns:
        The policy document as a dict (json.dumps it for the API).
    """
    arn = f"arn:aws:s3:::{bucket}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [arn, f"{arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


def tls_only_policy_json(bucket: str) -> str:
    """`tls_only_policy` serialised the same way by both callers (stable key order)."""
    return json.dumps(tls_only_policy(bucket), sort_keys=True)
