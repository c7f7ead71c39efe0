"""The fleet's front door: an Application Load Balancer, its target group and listeners, and the domain."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import pulumi
import pulumi_aws as aws

from infra.logs import ACCESS_LOG_PREFIX
from infra.tags import named
from service.timeouts import LOAD_BALANCER_IDLE_TIMEOUT_S

# TLS 1.3 and 1.2 only, forward secrecy only: AWS's recommended policy for HTTPS listeners.
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
# The app answers 200 here only once the model is loaded (GET /health answers before that).
HEALTH_CHECK_PATH = "/ready"
# A listener nobody can reach (the balancer's security group admits 80 and 443 only) that keeps the
# target group in use: AWS health-checks only the targets of a target group a listener forwards to
# (TargetHealth reason Target.NotInUse otherwise), and a new Auto Scaling group's create waits until
# its instances are healthy there (min_elb_capacity), before the serving listeners switch to it.
HEALTH_LISTENER_PORT = 8008


@dataclass
class HttpsArgs:
    """The domain to serve HTTPS on.

    Attributes:
        domain: The DNS name, e.g. api.example.com.
        zone_id: The Route 53 hosted zone that holds it.
        certificate_arn: An issued ACM certificate for it.
    """

    domain: str
    zone_id: pulumi.Input[str]
    certificate_arn: pulumi.Input[str]


@dataclass
class LoadBalancerArgs:
    """Arguments for LoadBalancer.

    Attributes:
        vpc_id: The VPC of the targets.
        subnet_ids: Public subnets in at least two availability zones.
        security_group_id: The load balancer's security group.
        app_port: The port the instances serve on.
        https: The domain, certificate and zone; None serves plain HTTP on the load balancer's name.
        tags: Tags for every taggable resource.
        access_log_bucket: The bucket the balancer writes access logs to; None: no access logs.
        access_log_dependencies: What must exist before logging is switched on (the bucket policy:
            ELB checks it can write when access logs are enabled).
    """

    vpc_id: pulumi.Input[str]
    subnet_ids: list[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    app_port: int
    https: HttpsArgs | None
    tags: dict[str, str]
    access_log_bucket: pulumi.Input[str] | None = None
    access_log_dependencies: list[pulumi.Resource] = field(default_factory=list)


def forward(target_group_arn: pulumi.Input[str]) -> list[dict[str, object]]:
    """A listener's default action: send every request to the fleet."""
    return [{"type": "forward", "target_group_arn": target_group_arn}]


# HTTP only ever answers with a permanent redirect to the same URL over HTTPS.
REDIRECT_TO_HTTPS = [
    {
        "type": "redirect",
        "redirect": {"protocol": "HTTPS", "port": "443", "status_code": "HTTP_301"},
    }
]


class LoadBalancer(pulumi.ComponentResource):
    """Internet-facing ALB, a target group checked on /ready, its health listener and alias record.

    The serving listeners come from `serve`, once the instances exist.
    """

    def __init__(self, name: str, args: LoadBalancerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cali:aws:LoadBalancer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        tags = partial(named, args.tags, name)

        self.balancer = aws.lb.LoadBalancer(
            f"{name}-alb",
            load_balancer_type="application",
            internal=False,
            subnets=args.subnet_ids,
            security_groups=[args.security_group_id],
            # Malformed headers are dropped at the edge instead of reaching gunicorn.
            drop_invalid_header_fields=True,
            # Explicit, and below gunicorn's keep-alive (service/timeouts.py derives one from the
            # other): the balancer closes idle connections before the app does, so never sends a
            # request on one the app has closed (the 502s of issue 14).
            idle_timeout=LOAD_BALANCER_IDLE_TIMEOUT_S,
            access_logs=None
            if args.access_log_bucket is None
            else {"bucket": args.access_log_bucket, "prefix": ACCESS_LOG_PREFIX, "enabled": True},
            tags=tags("alb"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.access_log_dependencies),
        )
        self.target_group = aws.lb.TargetGroup(
            f"{name}-tg",
            port=args.app_port,
            protocol="HTTP",
            target_type="instance",
            vpc_id=args.vpc_id,
            # Requests take milliseconds; AWS's default 300 s drain would slow every instance refresh.
            deregistration_delay=30,
            health_check={
                "path": HEALTH_CHECK_PATH,
                "port": "traffic-port",
                "protocol": "HTTP",
                "matcher": "200",
                "interval": 10,
                "timeout": 5,
                "healthy_threshold": 2,
                "unhealthy_threshold": 3,
            },
            tags=tags("tg"),
            opts=child,
        )
        self._name, self._tags, self._https = name, tags, args.https
        # Switches to a new target group as soon as it exists; only health checks pass through it.
        self.health_listener = aws.lb.Listener(
            f"{name}-health",
            load_balancer_arn=self.balancer.arn,
            port=HEALTH_LISTENER_PORT,
            protocol="HTTP",
            default_actions=forward(self.target_group.arn),
            tags=tags("health"),
            opts=child,
        )
        https = args.https
        if https is None:
            self.url: pulumi.Output[str] = pulumi.Output.concat("http://", self.balancer.dns_name)
        else:
            aws.route53.Record(
                f"{name}-alias",
                zone_id=https.zone_id,
                name=https.domain,
                type="A",
                # An alias, not a CNAME: free to query, allowed at a zone apex, follows the ALB's addresses.
                aliases=[
                    {
                        "name": self.balancer.dns_name,
                        "zone_id": self.balancer.zone_id,
                        "evaluate_target_health": True,
                    }
                ],
                opts=child,
            )
            self.url = pulumi.Output.from_input(f"https://{https.domain}")
        self.dns_name: pulumi.Output[str] = self.balancer.dns_name
        self.target_group_arn: pulumi.Output[str] = self.target_group.arn
        # What CloudWatch's ALBRequestCountPerTarget metric is labelled with: "app/.../targetgroup/...".
        self.request_count_label: pulumi.Output[str] = pulumi.Output.concat(
            self.balancer.arn_suffix, "/", self.target_group.arn_suffix
        )
        self.register_outputs(
            {"url": self.url, "dns_name": self.dns_name, "target_group_arn": self.target_group_arn}
        )

    def serve(self, after: list[pulumi.Resource]) -> None:
        """The serving listeners: HTTP (or HTTPS plus a redirect), forwarding to the target group.

        Declared apart from the balancer so that they can wait for the instances: a changed target
        group (appPort) is a new one, and the listeners must not switch to it before the new Auto
        Scaling group's create has returned with healthy instances in it; until then the old group
        keeps serving through the old target group.

        Args:
            after: What the listeners' update waits for (the fleet's Auto Scaling group).
        """
        opts = pulumi.ResourceOptions(parent=self, depends_on=after)
        https, tags, name = self._https, self._tags, self._name
        aws.lb.Listener(
            f"{name}-http",
            load_balancer_arn=self.balancer.arn,
            port=80,
            protocol="HTTP",
            default_actions=REDIRECT_TO_HTTPS if https else forward(self.target_group.arn),
            tags=tags("http"),
            opts=opts,
        )
        if https is not None:
            aws.lb.Listener(
                f"{name}-https",
                load_balancer_arn=self.balancer.arn,
                port=443,
                protocol="HTTPS",
                ssl_policy=TLS_POLICY,
                certificate_arn=https.certificate_arn,
                default_actions=forward(self.target_group.arn),
                tags=tags("https"),
                opts=opts,
            )
