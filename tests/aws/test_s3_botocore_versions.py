"""S3 storages on whichever botocore the Lambda runtime brings: the layer ships none, and
versions before 1.36 (1.31 for the endpoint option) refuse the newer options by name."""
from __future__ import annotations

import collections

import boto3
import pytest
from botocore.config import Config
from cloudstrype.backends import s3 as s3_module
from moto import mock_aws

NEWER = ("ignore_configured_endpoint_urls", "request_checksum_calculation",
         "response_checksum_validation")


class OlderConfig(Config):
    """botocore's Config as releases before those options were added: it refuses any keyword
    missing from OPTION_DEFAULTS with TypeError, exactly as they do."""
    OPTION_DEFAULTS = collections.OrderedDict(
        (name, value) for name, value in Config.OPTION_DEFAULTS.items() if name not in NEWER)
    # The botocore running this test reads them from any client config: unset, as if absent.
    ignore_configured_endpoint_urls = request_checksum_calculation = None
    response_checksum_validation = None


@pytest.fixture
def bucket(monkeypatch):
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="shares")
        yield "shares"


def test_the_simulated_older_botocore_refuses_the_newer_options():
    with pytest.raises(TypeError, match="request_checksum_calculation"):
        OlderConfig(request_checksum_calculation="when_required")


def test_an_s3_storage_works_on_an_older_botocore(bucket, monkeypatch):
    monkeypatch.setattr(s3_module, "Config", OlderConfig)
    backend = s3_module.S3Backend(None, "us-east-1", bucket, "key", "secret")
    backend.put("share-1", b"kept on an older SDK")
    assert backend.get("share-1") == b"kept on an older SDK"
    assert backend.exists("share-1")


def test_on_a_newer_botocore_checksums_are_sent_only_when_required(bucket):
    backend = s3_module.S3Backend(None, "us-east-1", bucket, "key", "secret")
    config = backend._client.meta.config
    assert config.request_checksum_calculation == "when_required"
    assert config.response_checksum_validation == "when_required"
    backend.put("share-2", b"x")
    assert backend.get("share-2") == b"x"
