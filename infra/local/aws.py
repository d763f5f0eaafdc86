"""AWS emulated on one machine, for tests of the AWS adapters: moto's server in this process.

`CLOUDSTRYPE_SERVE_MODE=aws-emulated cloudstrype serve` runs the same handlers against DynamoDB,
Cognito, KMS and S3 as moto emulates them, so the AWS path is proven end to end over HTTP. It is
a test tool (moto is a development dependency) and keeps nothing: the embedded default is the
durable `local` mode (infra/local/services.py).
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

from infra.local import moto_speedups

log = logging.getLogger("cloudstrype.local")

REGION = "us-east-1"
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local-secret"}


class MotoServer:
    """moto's server on a thread of this process, state in memory only."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self.port = port or free_port(host)
        self._server = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        try:
            from moto.server import DomainDispatcherApplication, create_backend_app
        except ImportError:
            raise RuntimeError("The aws-emulated mode needs moto, a test tool: "
                               "pip install -e '.[dev]'.") from None
        from werkzeug.serving import WSGIRequestHandler, make_server

        moto_app = DomainDispatcherApplication(create_backend_app)
        moto_speedups.install()
        lock = threading.Lock()

        def one_at_a_time(environ, start_response):
            # moto checks a condition and writes without a lock of its own: two racing
            # conditional writes could both succeed, which DynamoDB never allows.
            with lock:
                return list(moto_app(environ, start_response))

        class Quiet(WSGIRequestHandler):
            protocol_version = "HTTP/1.1"       # boto3 keeps its connections

            def log_request(self, *args, **kwargs):
                pass

        self._server = make_server(self.host, self.port, one_at_a_time, threaded=True,
                                   request_handler=Quiet)
        threading.Thread(target=self._server.serve_forever, name="moto", daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def configure_process_for_local_aws(endpoint: str) -> None:
    """Point every boto3 client of this process at the local moto server."""
    os.environ.update(LOCAL_CREDENTIALS)
    os.environ["AWS_DEFAULT_REGION"] = REGION
    os.environ["AWS_REGION"] = REGION
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    # Never pick up a developer's real AWS profile or instance credentials.
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)


@dataclass
class LocalResources:
    user_pool_id: str
    user_pool_client_id: str
    kms_key_id: str
    staging_bucket: str
    web_bucket: str

    def to_json(self) -> dict:
        return self.__dict__.copy()


STAGING_BUCKET = "cloudstrype-local-staging"
WEB_BUCKET = "cloudstrype-local-web"
KMS_ALIAS = "alias/cloudstrype-local"


def ensure_resources(resources_file: Path) -> LocalResources:
    """Create the pool, client, group, key, buckets and tables."""
    import boto3
    from botocore.exceptions import ClientError
    from cloudstrype.auth import pool

    cognito = boto3.client("cognito-idp")
    known = json.loads(resources_file.read_text()) if resources_file.exists() else {}
    pool_id = known.get("user_pool_id")
    existing_pools = {p["Id"] for p in cognito.list_user_pools(MaxResults=60)["UserPools"]}
    if pool_id not in existing_pools:
        pool_id = cognito.create_user_pool(
            PoolName=pool.POOL_NAME,
            Policies={"PasswordPolicy": pool.PASSWORD_POLICY},
            AutoVerifiedAttributes=["email"],
            UsernameConfiguration={"CaseSensitive": False},
        )["UserPool"]["Id"]
        known = {}
    client_id = known.get("user_pool_client_id")
    clients = {c["ClientId"] for c in cognito.list_user_pool_clients(
        UserPoolId=pool_id, MaxResults=60)["UserPoolClients"]}
    if client_id not in clients:
        client_id = cognito.create_user_pool_client(
            UserPoolId=pool_id, ClientName=pool.CLIENT_NAME, GenerateSecret=False,
            ExplicitAuthFlows=pool.CLIENT_AUTH_FLOWS)["UserPoolClient"]["ClientId"]
    try:
        cognito.create_group(UserPoolId=pool_id, GroupName=pool.ADMIN_GROUP,
                             Description="May manage users and groups")
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "GroupExistsException":
            raise

    kms = boto3.client("kms")
    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
    key_id = aliases.get(KMS_ALIAS)
    if not key_id:
        key_id = kms.create_key(Description="Cloudstrype user keys (local)")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName=KMS_ALIAS, TargetKeyId=key_id)

    s3 = boto3.client("s3")
    existing_buckets = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for bucket in (STAGING_BUCKET, WEB_BUCKET):
        if bucket not in existing_buckets:
            s3.create_bucket(Bucket=bucket)

    from cloudstrype.metadata import schema
    from cloudstrype.metadata.dynamodb import DynamoEngine
    from cloudstrype.settings import get_settings
    DynamoEngine(prefix=get_settings().table_prefix, region=REGION).create_tables(
        schema.all_tables())

    resources = LocalResources(pool_id, client_id, key_id, STAGING_BUCKET, WEB_BUCKET)
    resources_file.write_text(json.dumps(resources.to_json(), indent=2))
    return resources


def settings(resources: LocalResources, moto_endpoint: str, public_url: str,
             ws_management_url: str, local_storage_root: str) -> dict[str, str]:
    """The settings (by field name) the handlers run with: AWS's services, emulated."""
    pool_id = resources.user_pool_id
    return dict(
        region=REGION,
        metadata_engine="dynamodb",
        identity_provider="cognito",
        key_protector="kms",
        user_pool_id=pool_id,
        user_pool_client_id=resources.user_pool_client_id,
        # moto serves the key set; the tokens it signs name AWS's issuer.
        jwks_url=f"{moto_endpoint}/{pool_id}/.well-known/jwks.json",
        token_issuer=f"https://cognito-idp.{REGION}.amazonaws.com/{pool_id}",
        auto_confirm_users="true",
        kms_key_id=resources.kms_key_id,
        staging_bucket=resources.staging_bucket,
        ws_management_url=ws_management_url,
        public_url=public_url,
        local_storage_enabled="true",
        local_storage_root=local_storage_root,
    )
