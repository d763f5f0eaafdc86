"""Settings: one declaration, read from the environment, secrets from Secrets Manager."""
import json

import boto3
from cloudstrype.settings import Settings, _with_secrets_manager
from moto import mock_aws


def test_every_field_has_a_distinct_environment_name():
    names = list(Settings.env_names().values())
    assert len(names) == len(set(names))
    assert all(n == "AWS_REGION" or n.startswith("CLOUDSTRYPE_") for n in names)


def test_from_env_and_to_env_round_trip():
    settings = Settings.from_env({"CLOUDSTRYPE_USER_POOL_ID": "pool-1",
                                  "CLOUDSTRYPE_LOCAL_STORAGE_ENABLED": "true"})
    assert settings.user_pool_id == "pool-1" and settings.flag("local_storage_enabled")
    assert Settings.from_env(settings.to_env()) == settings


@mock_aws
def test_oauth_client_secrets_come_from_secrets_manager():
    client = boto3.client("secretsmanager", region_name="us-east-1")
    arn = client.create_secret(Name="oauth", SecretString=json.dumps({
        "CLOUDSTRYPE_DROPBOX_CLIENT_SECRET": "from-the-secret", "placeholder": "x",
        "CLOUDSTRYPE_USER_POOL_ID": "not-a-secret-field"}))["ARN"]
    settings = _with_secrets_manager(Settings(oauth_secrets_arn=arn,
                                              box_client_secret="from-env"))
    assert settings.dropbox_client_secret == "from-the-secret"
    assert settings.box_client_secret == "from-env"          # the environment wins
    assert settings.user_pool_id == ""                       # only secret fields are filled
