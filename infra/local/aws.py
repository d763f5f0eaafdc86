"""AWS on one machine: moto's server in this process, its state kept in the data directory.

moto keeps everything in memory. To survive a restart we pickle its backends to
`<data-dir>/aws-state.pickle` — after writes and on shutdown — and load them at start. A
read/write lock keeps a snapshot from seeing a request half-applied. Pickling takes longer as the
data grows, so snapshots are spaced to cost at most 1/SNAPSHOT_SHARE of the time: a clean stop
(Ctrl-C, SIGTERM) always saves everything; a killed process loses the writes since the last
snapshot (at least one second's, more on a big data set).
"""
from __future__ import annotations

import contextlib
import copyreg
import json
import logging
import os
import pickle
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("cloudstrype.local")

# The services the stack uses; their moto backends are what a snapshot holds.
PERSISTED_BACKENDS = ("cognitoidp", "dynamodb", "s3", "kms")
REGION = "us-east-1"
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local-secret"}
STATE_FILE = "aws-state.pickle"
SNAPSHOT_INTERVAL = 1.0
SNAPSHOT_SHARE = 20
# DynamoDB transactions run alone (exclusive lock): moto applies their items one by one.
_TRANSACTION_TARGET = "DynamoDB_20120810.TransactWriteItems"


def _load_private_key(pem: bytes):
    from cryptography.hazmat.primitives import serialization
    return serialization.load_pem_private_key(pem, password=None)


def _reduce_private_key(key):
    from cryptography.hazmat.primitives import serialization
    return _load_private_key, (key.private_bytes(serialization.Encoding.PEM,
                                                 serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()),)


def _register_key_pickling() -> None:
    """moto's KMS and Cognito hold cryptography key objects, which do not pickle by default."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    reduce = _reduce_private_key
    copyreg.pickle(type(rsa.generate_private_key(65537, 1024)), reduce)
    copyreg.pickle(type(ec.generate_private_key(ec.SECP256R1())), reduce)


class _ReadWriteLock:
    """Many readers or one writer; a waiting writer goes first, so a busy server cannot starve
    snapshots."""

    def __init__(self):
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextlib.contextmanager
    def shared(self):
        with self._cond:
            while self._writing or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self):
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writing or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class MotoServer:
    """moto's WSGI app on a werkzeug server thread, with write tracking and snapshots."""

    def __init__(self, data_dir: Path, host: str = "127.0.0.1", port: int = 0):
        self.data_dir = data_dir
        self.host = host
        self.port = port or free_port(host)
        self._lock = _ReadWriteLock()
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._server = None
        self._threads: list[threading.Thread] = []

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def state_path(self) -> Path:
        return self.data_dir / STATE_FILE

    def start(self) -> None:
        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import WSGIRequestHandler, make_server

        from infra.local import moto_speed

        moto_speed.apply()
        _register_key_pickling()
        self.restore()
        moto_app = DomainDispatcherApplication(create_backend_app)

        def tracked(environ, start_response):
            writes = environ.get("REQUEST_METHOD") not in ("GET", "HEAD", "OPTIONS")
            alone = environ.get("HTTP_X_AMZ_TARGET") == _TRANSACTION_TARGET
            with (self._lock.exclusive() if alone else self._lock.shared()):
                # Read the whole answer under the lock: moto builds it lazily.
                body = list(moto_app(environ, start_response))
            if writes:
                self._dirty.set()
            return body

        class KeepAlive(WSGIRequestHandler):
            # HTTP/1.1: boto3 keeps its connections, instead of a new socket and server thread
            # for every call.
            protocol_version = "HTTP/1.1"

            def log_request(self, *args, **kwargs):     # the gateway logs the API calls
                pass

        self._server = make_server(self.host, self.port, tracked, threaded=True,
                                   request_handler=KeepAlive)
        serve = threading.Thread(target=self._server.serve_forever, name="moto", daemon=True)
        saver = threading.Thread(target=self._save_loop, name="moto-snapshots", daemon=True)
        self._threads = [serve, saver]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
        for thread in self._threads:
            thread.join(timeout=5)
        self.snapshot()

    def mark_dirty(self) -> None:
        self._dirty.set()

    def _save_loop(self) -> None:
        pause = SNAPSHOT_INTERVAL
        while not self._stopping.is_set():
            if self._dirty.wait(timeout=0.5) and not self._stopping.is_set():
                self._stopping.wait(pause)
                if self._stopping.is_set():
                    return      # stop() saves the final state
                started = time.monotonic()
                try:
                    self.snapshot()
                except Exception:
                    log.exception("could not save the local AWS state")
                pause = max(SNAPSHOT_INTERVAL, SNAPSHOT_SHARE * (time.monotonic() - started))

    def snapshot(self) -> None:
        from moto.backends import get_backend

        self._dirty.clear()
        with self._lock.exclusive():
            blob = pickle.dumps({name: dict(get_backend(name)) for name in PERSISTED_BACKENDS},
                                protocol=pickle.HIGHEST_PROTOCOL)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Atomic replace, so a crash mid-write leaves the previous snapshot intact.
        fd, tmp = tempfile.mkstemp(dir=self.data_dir, prefix=".aws-state.")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(blob)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.state_path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def restore(self) -> bool:
        from moto.backends import get_backend

        if not self.state_path.exists():
            return False
        with self.state_path.open("rb") as state_file:
            state = pickle.load(state_file)
        for name, accounts in state.items():
            backend = get_backend(name)
            backend.clear()
            backend.update(accounts)
        return True


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


class StaleDataError(Exception):
    """The data directory was written by a version with another table layout."""


def ensure_resources(resources_file: Path) -> LocalResources:
    """Create the pool, client, group, key, buckets and tables unless they exist (idempotent)."""
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

    from cloudstrype import db
    dynamodb = boto3.client("dynamodb")
    for model in db.all_tables():
        if model.exists():
            keys = dynamodb.describe_table(TableName=model.Meta.table_name)["Table"]["KeySchema"]
            wanted = model._get_schema()["key_schema"]
            if sorted((k["AttributeName"], k["KeyType"]) for k in keys) != \
                    sorted((k["AttributeName"], k["KeyType"]) for k in wanted):
                raise StaleDataError(
                    f"The table {model.Meta.table_name} in this data directory has the key layout "
                    f"of an older Cloudstrype. Start with a new --data-dir (or move the old one "
                    f"away); this version cannot read it.")
        else:
            model.create_table(billing_mode="PAY_PER_REQUEST", wait=True)
            ttl = getattr(model.Meta, "ttl_attribute", None)
            if ttl:
                boto3.client("dynamodb").update_time_to_live(
                    TableName=model.Meta.table_name,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl})

    resources = LocalResources(pool_id, client_id, key_id, STAGING_BUCKET, WEB_BUCKET)
    resources_file.write_text(json.dumps(resources.to_json(), indent=2))
    return resources


def settings_env(resources: LocalResources, moto_endpoint: str, public_url: str,
                 ws_management_url: str, local_storage_root: str) -> dict[str, str]:
    """The environment the handlers run with locally: the same names the CDK stack sets."""
    from cloudstrype.settings import Settings

    pool_id = resources.user_pool_id
    decided = dict(
        region=REGION,
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
    # Only what the local stack decides; every other setting (OAuth apps, provider overrides,
    # upload TTL, ...) stays as the environment configures it, else its default.
    names = Settings.env_names()
    return {names[field]: value for field, value in decided.items()}
