"""The smoke test's temporary ingress rule, against a moto EC2: added for one /32 and port, always removable.

What only AWS proves: that the deploy identity may call AuthorizeSecurityGroupIngress and
RevokeSecurityGroupIngress on the stack's group.
"""

from __future__ import annotations

import importlib.util
import ipaddress

import boto3
import pytest

from tests.infra.conftest import ROOT, MotoServer

_spec = importlib.util.spec_from_file_location("runner_access", ROOT / "scripts" / "runner_access.py")
runner_access = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(runner_access)


@pytest.fixture
def ec2(aws_stand_in: MotoServer, monkeypatch: pytest.MonkeyPatch):
    """An EC2 client on a fresh moto account."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_stand_in.url)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return boto3.client("ec2", region_name="us-east-1")


@pytest.fixture
def group(ec2) -> str:
    """An app security group with the stack's own rule (from the office network)."""
    vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    group_id = ec2.create_security_group(GroupName="cali-sg", Description="app", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=group_id,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "198.51.100.0/24"}]}
        ],
    )
    return group_id


def ingress(ec2, group_id: str) -> list[tuple[int, str]]:
    rules = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [group_id]}])
    return sorted((r["FromPort"], r["CidrIpv4"]) for r in rules["SecurityGroupRules"] if not r["IsEgress"])


def test_open_admits_the_runner_on_the_urls_port_and_close_removes_only_that(ec2, group: str) -> None:
    runner_access.open_access(ec2, group, runner_access.port_of("http://203.0.113.10:8081"), "192.0.2.7/32")
    assert ingress(ec2, group) == [(80, "198.51.100.0/24"), (8081, "192.0.2.7/32")]
    assert runner_access.close_access(ec2, group) == 1
    assert ingress(ec2, group) == [(80, "198.51.100.0/24")]  # the stack's own rule is untouched


def test_open_first_removes_a_rule_a_cancelled_run_left_behind(ec2, group: str) -> None:
    runner_access.open_access(ec2, group, 80, "192.0.2.7/32")
    runner_access.open_access(ec2, group, 80, "192.0.2.8/32")  # the next run, from another runner
    assert ingress(ec2, group) == [(80, "192.0.2.8/32"), (80, "198.51.100.0/24")]


def test_close_with_nothing_to_remove_is_not_an_error(ec2, group: str) -> None:
    assert runner_access.close_access(ec2, group) == 0


@pytest.mark.parametrize(
    ("url", "port"),
    [("http://203.0.113.10", 80), ("https://api.example.com", 443), ("http://203.0.113.10:8081/x", 8081)],
)
def test_the_admitted_port_is_the_urls(url: str, port: int) -> None:
    assert runner_access.port_of(url) == port


@pytest.mark.parametrize("answer", ["203.0.113.7\n", " 203.0.113.7 "])
def test_the_runner_address_is_one_ipv4_host(answer: str) -> None:
    assert runner_access.runner_cidr(lambda: answer) == "203.0.113.7/32"


@pytest.mark.parametrize("answer", ["", "0.0.0.0/0", "<html>", "2001:db8::1"])
def test_anything_but_one_ipv4_address_is_refused(answer: str) -> None:
    with pytest.raises(ipaddress.AddressValueError):
        runner_access.runner_cidr(lambda: answer)
