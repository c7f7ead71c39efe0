"""Admit the machine running CI to the service for one smoke test, then withdraw it.

    python scripts/runner_access.py open  --group sg-0abc --url http://203.0.113.10
    python scripts/runner_access.py close --group sg-0abc

Why a temporary rule rather than running the smoke test through SSM on the instance: the smoke test
must take the path users take (the Elastic IP or the load balancer, through the security group),
which a check on the instance's loopback never crosses; the readiness gate (infra/readiness.py)
already asks the instance itself. With `allowedCidrs` narrowed, a GitHub-hosted runner's address is
not admitted, so the pipeline adds one /32 rule for the port in the URL, tagged by its description,
and removes every rule with that description afterwards, also when the smoke test failed (the
workflow step runs `if: always()`). `open` first removes any such rule a cancelled run left behind.

The runner's address comes from https://checkip.amazonaws.com (AWS's own "what is my IP").
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
import urllib.parse
import urllib.request
from typing import Any

DESCRIPTION = "cali-housing CI smoke test (temporary)"
CHECKIP_URL = "https://checkip.amazonaws.com"


def port_of(url: str) -> int:
    """The TCP port a URL reaches (explicit, else 80 for http and 443 for https)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    return parts.port or (443 if parts.scheme == "https" else 80)


def runner_cidr(fetch: Any = None) -> str:
    """This machine's public IPv4 address as a /32."""
    if fetch is None:

        def fetch() -> str:
            with urllib.request.urlopen(CHECKIP_URL, timeout=10) as response:
                return response.read(64).decode()

    address = ipaddress.IPv4Address(fetch().strip())  # raises on anything but one IPv4 address
    return f"{address}/32"


def temporary_rules(ec2: Any, group_id: str) -> list[str]:
    """Ids of the ingress rules this script added to the group."""
    paginator = ec2.get_paginator("describe_security_group_rules")
    pages = paginator.paginate(Filters=[{"Name": "group-id", "Values": [group_id]}])
    return [
        rule["SecurityGroupRuleId"]
        for page in pages
        for rule in page["SecurityGroupRules"]
        if not rule.get("IsEgress") and rule.get("Description") == DESCRIPTION
    ]


def close_access(ec2: Any, group_id: str) -> int:
    """Remove every rule this script added; returns how many."""
    rules = temporary_rules(ec2, group_id)
    if rules:
        ec2.revoke_security_group_ingress(GroupId=group_id, SecurityGroupRuleIds=rules)
    return len(rules)


def open_access(ec2: Any, group_id: str, port: int, cidr: str) -> None:
    """Admit `cidr` to `port` with a rule `close_access` will find (stale ones removed first)."""
    close_access(ec2, group_id)
    ec2.authorize_security_group_ingress(
        GroupId=group_id,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": port,
                "ToPort": port,
                "IpRanges": [{"CidrIp": cidr, "Description": DESCRIPTION}],
            }
        ],
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point; exit 2 on bad arguments, 1 when AWS refuses."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("open", "close"))
    parser.add_argument("--group", required=True, help="the security group in front of the URL")
    parser.add_argument("--url", help="open: the URL the smoke test will reach (its port is admitted)")
    args = parser.parse_args(argv)
    ec2 = boto3.client("ec2")
    try:
        if args.action == "open":
            if not args.url:
                parser.error("open needs --url")
            port, cidr = port_of(args.url), runner_cidr()
            open_access(ec2, args.group, port, cidr)
            print(f"runner_access: admitted {cidr} to tcp/{port} on {args.group}")
        else:
            print(
                f"runner_access: removed {close_access(ec2, args.group)} temporary rule(s) from {args.group}"
            )
    except ValueError as err:
        print(f"runner_access: {err}", file=sys.stderr)
        return 2
    except (BotoCoreError, ClientError) as err:
        print(f"runner_access: AWS refused: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
