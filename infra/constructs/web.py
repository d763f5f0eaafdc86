"""The web UI: a private bucket behind CloudFront (origin access control), the files of `web/`
and a `config.json` written at deploy time with the URLs and ids the page needs."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from cloudstrype.api.security_headers import web_ui_policy
from constructs import Construct

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
CONFIG_FILE = "config.json"


class WebSite(Construct):
    def __init__(self, scope: Construct, construct_id: str, *,
                 config: Mapping[str, Any], connect_sources: tuple[str, ...] = ()) -> None:
        """`connect_sources`: the origins the page calls (the REST API and the WebSocket), which
        its Content-Security-Policy allows."""
        super().__init__(scope, construct_id)
        self.bucket = s3.Bucket(
            self, "Bucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            # Kept on stack deletion like the other buckets (emptying it would take another
            # custom-resource function); its content is rebuilt from web/ on every deploy.
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.distribution = cloudfront.Distribution(
            self, "Distribution",
            comment="Cloudstrype web UI",
            default_root_object="index.html",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.S3BucketOrigin.with_origin_access_control(self.bucket),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                response_headers_policy=self._headers(connect_sources),
            ),
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
        )
        self.deployment = s3deploy.BucketDeployment(
            self, "Content",
            sources=[
                s3deploy.Source.asset(str(WEB_DIR), exclude=["**/.DS_Store"]),
                # Deploy-time values (API ids and the like) resolve when the file is written.
                s3deploy.Source.json_data(CONFIG_FILE, dict(config)),
            ],
            destination_bucket=self.bucket,
            distribution=self.distribution,
            distribution_paths=["/*"],
        )

    def _headers(self, connect_sources: tuple[str, ...]) -> cloudfront.ResponseHeadersPolicy:
        """The headers the local gateway sends with the web UI (cloudstrype.api.security_headers:
        tests/infra/test_resources.py holds the two the same), plus HSTS, which only a deployed
        (HTTPS) site can give."""
        return cloudfront.ResponseHeadersPolicy(
            self, "SecurityHeaders",
            comment="Cloudstrype web UI: CSP, nosniff, no framing, no referrer, HSTS",
            security_headers_behavior=cloudfront.ResponseSecurityHeadersBehavior(
                content_security_policy=cloudfront.ResponseHeadersContentSecurityPolicy(
                    content_security_policy=web_ui_policy(*connect_sources), override=True),
                content_type_options=cloudfront.ResponseHeadersContentTypeOptions(override=True),
                frame_options=cloudfront.ResponseHeadersFrameOptions(
                    frame_option=cloudfront.HeadersFrameOption.DENY, override=True),
                referrer_policy=cloudfront.ResponseHeadersReferrerPolicy(
                    referrer_policy=cloudfront.HeadersReferrerPolicy.NO_REFERRER, override=True),
                strict_transport_security=cloudfront.ResponseHeadersStrictTransportSecurity(
                    access_control_max_age=Duration.days(365), include_subdomains=True,
                    override=True)))

    @property
    def url(self) -> str:
        return f"https://{self.distribution.distribution_domain_name}"
