"""The domain's TLS certificate: issued by ACM, validated by a DNS record in the stack's hosted zone."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.tags import named


@dataclass
class TlsCertificateArgs:
    """Arguments for TlsCertificate.

    Attributes:
        domain: The name the certificate is for, e.g. api.example.com.
        hosted_zone: The Route 53 public hosted zone holding it, e.g. example.com.
        tags: Tags for the certificate.
    """

    domain: str
    hosted_zone: str
    tags: dict[str, str]


class TlsCertificate(pulumi.ComponentResource):
    """ACM certificate, its validation record, and the wait for it to be issued."""

    def __init__(
        self, name: str, args: TlsCertificateArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("cali:aws:TlsCertificate", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # Looked up, not created: the zone (and the registrar's delegation to it) outlives any stack.
        zone = aws.route53.get_zone_output(name=args.hosted_zone, private_zone=False)
        certificate = aws.acm.Certificate(
            f"{name}-cert",
            domain_name=args.domain,
            # DNS, not email: renewal is then automatic for as long as the record below exists.
            validation_method="DNS",
            tags=named(args.tags, name, "cert"),
            opts=child,
        )
        # One name, so one validation option; the record's fields are values, the record is not
        # created inside an apply.
        option = certificate.domain_validation_options.apply(lambda options: options[0])
        record = aws.route53.Record(
            f"{name}-cert-dns",
            zone_id=zone.zone_id,
            name=option.apply(lambda o: o.resource_record_name),
            type=option.apply(lambda o: o.resource_record_type),
            records=[option.apply(lambda o: o.resource_record_value)],
            ttl=300,
            # ACM asks for the same record for every certificate of this name in the account, so a
            # replaced certificate (or one left by an earlier stack) finds it already there.
            allow_overwrite=True,
            opts=child,
        )
        validation = aws.acm.CertificateValidation(
            f"{name}-cert-validation",
            certificate_arn=certificate.arn,
            validation_record_fqdns=[record.fqdn],
            opts=child,
        )
        # The validation's ARN, not the certificate's: an HTTPS listener then waits for "issued".
        self.certificate_arn: pulumi.Output[str] = validation.certificate_arn
        self.zone_id: pulumi.Output[str] = zone.zone_id
        self.register_outputs({"certificate_arn": self.certificate_arn, "zone_id": self.zone_id})
