"""Every setting of a deployment, declared once.

The Lambda functions read them from their environment, the CDK stack writes the same names into
each function's environment, and the local stack exports them before loading the handlers.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass, field


def _env(name: str, default: str = "", *, secret: bool = False):
    return field(default=default, metadata={"env": name, "secret": secret})


@dataclass(frozen=True)
class Settings:
    region: str = _env("AWS_REGION", "us-east-1")
    # Prefix of every DynamoDB table name, so several stacks can share an account.
    table_prefix: str = _env("CLOUDSTRYPE_TABLE_PREFIX", "cloudstrype-")
    # Where metadata lives: "dynamodb" (what the CDK sets) or "sqlite" (what `serve` sets), with
    # the SQLite database file.
    metadata_engine: str = _env("CLOUDSTRYPE_METADATA_ENGINE", "dynamodb")
    metadata_path: str = _env("CLOUDSTRYPE_METADATA_PATH", "")

    # Auth: the user pool and how its tokens are checked. The JWKS URL and the issuer are separate
    # settings (Cognito's JWKS URL is derived from the pool, the local gateway serves its own).
    user_pool_id: str = _env("CLOUDSTRYPE_USER_POOL_ID")
    user_pool_client_id: str = _env("CLOUDSTRYPE_USER_POOL_CLIENT_ID")
    jwks_url: str = _env("CLOUDSTRYPE_JWKS_URL")
    token_issuer: str = _env("CLOUDSTRYPE_TOKEN_ISSUER")
    # Who issues identities: "cognito" (what the CDK sets) or "local" (the identity service of
    # `serve`, on the metadata store), with the local service's RSA signing key (created 0600 on
    # first use; the local gateway serves its public half at /.well-known/jwks.json).
    identity_provider: str = _env("CLOUDSTRYPE_IDENTITY_PROVIDER", "cognito")
    identity_key_path: str = _env("CLOUDSTRYPE_IDENTITY_KEY_PATH")
    # Locally there is no e-mail to receive Cognito's code, so new users are confirmed at once.
    auto_confirm_users: str = _env("CLOUDSTRYPE_AUTO_CONFIRM_USERS", "false")

    kms_key_id: str = _env("CLOUDSTRYPE_KMS_KEY_ID")
    # What protects the users' keys: "kms" (AWS KMS, the key above) or "local" (a master key
    # file, readable by the server alone, at master_key_path; what `serve` sets).
    key_protector: str = _env("CLOUDSTRYPE_KEY_PROTECTOR", "kms")
    master_key_path: str = _env("CLOUDSTRYPE_MASTER_KEY_PATH")
    staging_bucket: str = _env("CLOUDSTRYPE_STAGING_BUCKET")
    # `serve`: stage members' share bytes in this directory instead (URLs on public_url, signed,
    # served by the local gateway). Set, it wins over staging_bucket.
    staging_dir: str = _env("CLOUDSTRYPE_STAGING_DIR")
    # Endpoint of the API Gateway management API that reaches WebSocket connections.
    ws_management_url: str = _env("CLOUDSTRYPE_WS_MANAGEMENT_URL")
    # Public base URL of the REST API (used to build OAuth redirect URLs).
    public_url: str = _env("CLOUDSTRYPE_PUBLIC_URL", "http://127.0.0.1:8080")
    # wss:// URL of the members' WebSocket API, told to members by GET /api/config (the CDK sets
    # the stage URL). Empty: the local gateway's /ws beside public_url.
    websocket_url: str = _env("CLOUDSTRYPE_WEBSOCKET_URL")
    # Where the web UI is served (the CDK sets the CloudFront URL): OAuth connect returns the
    # browser there. Empty: public_url (the local stack serves the UI and the API together).
    web_url: str = _env("CLOUDSTRYPE_WEB_URL")

    # The `local` storage type (a directory on the server) is for the local stack only.
    local_storage_enabled: str = _env("CLOUDSTRYPE_LOCAL_STORAGE_ENABLED", "false")
    # A local storage must be a folder inside a root the operator names: local_storage_root
    # (`serve`: <data-dir>/storages; where a relative path goes) or one of local_storage_roots
    # (absolute directories, separated by os.pathsep). None set: no local storage at all.
    local_storage_root: str = _env("CLOUDSTRYPE_LOCAL_STORAGE_ROOT")
    local_storage_roots: str = _env("CLOUDSTRYPE_LOCAL_STORAGE_ROOTS")
    # User-given endpoints (an s3 storage's endpoint_url) and the providers' APIs may not reach
    # loopback, private, link-local, multicast, reserved or metadata addresses unless listed
    # here: comma-separated hosts, IP addresses or CIDRs, each optionally with ":port"
    # (IPv6 in brackets), e.g. "minio.internal:9000,10.1.2.0/24".
    outbound_allow: str = _env("CLOUDSTRYPE_OUTBOUND_ALLOW")

    # OAuth applications of the cloud providers. Base URLs are settings so tests can point the
    # clients at local servers speaking each provider's API.
    dropbox_client_id: str = _env("CLOUDSTRYPE_DROPBOX_CLIENT_ID")
    dropbox_client_secret: str = _env("CLOUDSTRYPE_DROPBOX_CLIENT_SECRET", secret=True)
    gdrive_client_id: str = _env("CLOUDSTRYPE_GDRIVE_CLIENT_ID")
    gdrive_client_secret: str = _env("CLOUDSTRYPE_GDRIVE_CLIENT_SECRET", secret=True)
    onedrive_client_id: str = _env("CLOUDSTRYPE_ONEDRIVE_CLIENT_ID")
    onedrive_client_secret: str = _env("CLOUDSTRYPE_ONEDRIVE_CLIENT_SECRET", secret=True)
    box_client_id: str = _env("CLOUDSTRYPE_BOX_CLIENT_ID")
    box_client_secret: str = _env("CLOUDSTRYPE_BOX_CLIENT_SECRET", secret=True)
    provider_url_overrides: str = _env("CLOUDSTRYPE_PROVIDER_URL_OVERRIDES")
    # Deployed, the client secrets above live in one Secrets Manager secret (a JSON object keyed
    # by their environment names), never in the functions' environment.
    oauth_secrets_arn: str = _env("CLOUDSTRYPE_OAUTH_SECRETS_ARN")

    # How long an unfinished upload session may wait for its parts; afterwards the scheduled
    # sweep frees the chunks of the parts it received.
    upload_ttl_seconds: str = _env("CLOUDSTRYPE_UPLOAD_TTL_SECONDS", str(7 * 24 * 3600))
    # Per user: how many upload sessions may be open at once, and the largest file a session may
    # declare (1 TiB; at most 2 TiB, so a session's list of parts fits one response).
    max_open_uploads: str = _env("CLOUDSTRYPE_MAX_OPEN_UPLOADS", "100")
    max_file_bytes: str = _env("CLOUDSTRYPE_MAX_FILE_BYTES", str(1024 ** 4))
    # Per user: the bytes of data they may store (files, every version, parts of open sessions,
    # raw chunks and blobs); 0 is unlimited.
    quota_bytes: str = _env("CLOUDSTRYPE_QUOTA_BYTES", "0")

    # The local gateway (`serve` runs every function in one process): worker threads, how many
    # requests one caller (a token's user, else an address) may have in flight, and sign-in
    # attempts per client address (register, and failed logins and confirmations): a burst,
    # then one more every refill_seconds.
    gateway_workers: str = _env("CLOUDSTRYPE_GATEWAY_WORKERS", "64")
    gateway_max_in_flight_per_caller: str = _env("CLOUDSTRYPE_GATEWAY_MAX_IN_FLIGHT_PER_CALLER",
                                                 "8")
    sign_in_burst_per_address: str = _env("CLOUDSTRYPE_SIGN_IN_BURST_PER_ADDRESS", "50")
    sign_in_refill_seconds: str = _env("CLOUDSTRYPE_SIGN_IN_REFILL_SECONDS", "1")

    # Public link routes (no account): requests per minute per link, and per client address
    # over all links (wrong passwords and unknown links included).
    link_requests_per_minute: str = _env("CLOUDSTRYPE_LINK_REQUESTS_PER_MINUTE", "120")
    link_requests_per_minute_per_address: str = _env(
        "CLOUDSTRYPE_LINK_REQUESTS_PER_MINUTE_PER_ADDRESS", "300")

    # Any value: logs include a stack trace for unexpected errors when set to "true".
    debug: str = _env("CLOUDSTRYPE_DEBUG", "false")

    @classmethod
    def env_names(cls) -> dict[str, str]:
        """Field name -> environment variable name."""
        return {f.name: f.metadata["env"] for f in dataclasses.fields(cls)}

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Settings":
        environ = os.environ if environ is None else environ
        values = {}
        for f in dataclasses.fields(cls):
            if f.metadata["env"] in environ:
                values[f.name] = environ[f.metadata["env"]]
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        return {f.metadata["env"]: getattr(self, f.name) for f in dataclasses.fields(self)}

    def flag(self, name: str) -> bool:
        return str(getattr(self, name)).lower() in ("1", "true", "yes", "on")

    def websocket_endpoint(self) -> str:
        if self.websocket_url:
            return self.websocket_url
        scheme, _, rest = self.public_url.rstrip("/").partition("://")
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws"

    def web_origin(self) -> str:
        return (self.web_url or self.public_url).rstrip("/")


def _with_secrets_manager(settings: Settings) -> Settings:
    if not settings.oauth_secrets_arn:
        return settings
    import json

    import boto3
    secret = boto3.client("secretsmanager", region_name=settings.region).get_secret_value(
        SecretId=settings.oauth_secrets_arn)
    values = json.loads(secret.get("SecretString") or "{}")
    filled = {}
    for f in dataclasses.fields(Settings):
        # Only secret fields, and only when the environment left them empty.
        if f.metadata["secret"] and not getattr(settings, f.name) and \
                isinstance(values.get(f.metadata["env"]), str):
            filled[f.name] = values[f.metadata["env"]]
    return dataclasses.replace(settings, **filled)


@functools.cache
def get_settings() -> Settings:
    """The settings, read once per process (a Lambda container)."""
    return _with_secrets_manager(Settings.from_env())


def reset_settings_cache() -> None:
    """For the local stack and tests, after they change the environment."""
    get_settings.cache_clear()
