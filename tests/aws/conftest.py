"""A deployment's environment, as the CDK sets it, over moto in this process: the handlers are
invoked with AWS-shaped events (tests/aws/events.py) instead of through the local gateway."""
from __future__ import annotations

import json
import uuid

import pytest

from tests.aws.events import API_HOST, REGION, STAGE

# What the stack's outputs look like: the REST stage, the WebSocket stage, CloudFront.
PUBLIC_URL = f"https://{API_HOST}/{STAGE}/"
WEBSOCKET_URL = f"wss://wsapi12345.execute-api.{REGION}.amazonaws.com/{STAGE}"
WEB_URL = "https://d1234abcd.cloudfront.net"


@pytest.fixture
def deployed(monkeypatch, fake_providers):
    """Settings as the CDK writes them (DynamoDB, KMS, the OAuth secret in Secrets Manager),
    the AWS services on moto, the OAuth providers as local fakes. Yields the environment."""
    import boto3
    from cloudstrype.metadata import engine, schema
    from cloudstrype.metadata.dynamodb import DynamoEngine
    from cloudstrype.settings import Settings, reset_settings_cache
    from moto import mock_aws

    from tests.fakes import CLIENT_ID, CLIENT_SECRET

    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name in Settings.env_names().values():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    # The fake providers speak plain HTTP on loopback; oauthlib insists on HTTPS otherwise.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    with mock_aws():
        key_id = boto3.client("kms").create_key()["KeyMetadata"]["KeyId"]
        overrides, secrets = {}, {}
        env = {"CLOUDSTRYPE_METADATA_ENGINE": "dynamodb", "CLOUDSTRYPE_KMS_KEY_ID": key_id,
               "CLOUDSTRYPE_PUBLIC_URL": PUBLIC_URL, "CLOUDSTRYPE_WEBSOCKET_URL": WEBSOCKET_URL,
               "CLOUDSTRYPE_WEB_URL": WEB_URL, "CLOUDSTRYPE_LOCAL_STORAGE_ENABLED": "false"}
        for name, fake in fake_providers.items():
            overrides.update(fake.url_overrides())
            env[f"CLOUDSTRYPE_{name.upper()}_CLIENT_ID"] = CLIENT_ID
            secrets[f"CLOUDSTRYPE_{name.upper()}_CLIENT_SECRET"] = CLIENT_SECRET
        env["CLOUDSTRYPE_PROVIDER_URL_OVERRIDES"] = json.dumps(overrides)
        # A name of its own: a session-wide moto (the metadata suites') outlives this block.
        env["CLOUDSTRYPE_OAUTH_SECRETS_ARN"] = boto3.client("secretsmanager").create_secret(
            Name=f"cloudstrype-oauth-{uuid.uuid4().hex[:8]}",
            SecretString=json.dumps(secrets))["ARN"]
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        reset_settings_cache()
        engine.set_engine(None)
        DynamoEngine(prefix=Settings.from_env().table_prefix, region=REGION).create_tables(
            schema.all_tables())
        try:
            yield env
        finally:
            engine.set_engine(None)
            reset_settings_cache()
