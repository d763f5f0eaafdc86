"""What stands in for AWS under `cloudstrype serve`: the embedded default, real and durable.

- metadata: the SQLite engine on `<data-dir>/metadata.db` (the process's one engine);
- identity: the local identity service (users, groups, refresh tokens in that database,
  Cognito-compatible RS256 tokens signed with a key generated for this install);
- keys: a master key file in place of KMS;
- staging: a directory whose expiring signed URLs the gateway serves, in place of S3.

Secrets live in `<data-dir>/secrets/`, readable by the server's user alone.
"""
from __future__ import annotations

import os
from pathlib import Path

METADATA_FILE = "metadata.db"
# Names this installation (the issuer of its tokens): a restore must keep it, or every token
# given out before is refused.
INSTALL_ID_FILE = "install-id"
SECRETS_DIR = "secrets"
MASTER_KEY_FILE = "master.key"
# Held by the server while it runs (and by a restore): one of them at a time.
LOCK_FILE = ".lock"


# What a folder holds once a Cloudstrype server (this version, an older one, or the
# aws-emulated mode) has used it; a folder of other files is not taken for a data directory.
LEGACY_STATE = "aws-state.pickle"
RESOURCES_FILE = "resources.json"
DATA_DIR_MARKS = (METADATA_FILE, INSTALL_ID_FILE, SECRETS_DIR, LOCK_FILE, LEGACY_STATE,
                  RESOURCES_FILE)


def foreign_folder(path: Path) -> bool:
    """Whether `path` is a folder of other files: not empty, and nothing of Cloudstrype's in it."""
    return path.is_dir() and not any((path / mark).exists() for mark in DATA_DIR_MARKS) and \
        any(path.iterdir())


class SecretsMissing(Exception):
    """The database needs a secret the data directory does not hold; said without a traceback."""


class LocalServices:
    def __init__(self, data_dir: Path, public_url: str, ws_management_url: str,
                 own_url: str | None = None):
        """`public_url`: where users reach the server; `own_url`: where it reaches itself (the
        same unless a proxy is in front)."""
        self.data_dir = data_dir
        self.public_url = public_url
        self.own_url = own_url or public_url
        self.ws_management_url = ws_management_url
        self.engine = None

    @property
    def metadata_path(self) -> Path:
        return self.data_dir / METADATA_FILE

    def secrets_dir(self) -> Path:
        path = self.data_dir / SECRETS_DIR
        path.mkdir(mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)
        return path

    def settings(self) -> dict[str, str]:
        """The settings the handlers run with: the same names the CDK sets in AWS."""
        secrets = self.secrets_dir()
        return {
            "region": "us-east-1",          # what boto3 and chalice expect to find; unused
            "metadata_engine": "sqlite",
            "identity_provider": "local",
            "identity_key_path": str(secrets / "identity-key.pem"),
            # Stable for this install, whatever address it is served on next time.
            "token_issuer": f"urn:cloudstrype:local:{self._install_id()}",
            # No e-mail to deliver a confirmation code from one machine.
            "auto_confirm_users": "true",
            "metadata_path": str(self.metadata_path),
            "key_protector": "local",
            "master_key_path": str(secrets / MASTER_KEY_FILE),
            "staging_dir": str(self.data_dir / "staging"),
            "ws_management_url": self.ws_management_url,
            "public_url": self.public_url,
            # The server reads its own key set from itself, not through the proxy in front.
            "jwks_url": f"{self.own_url.rstrip('/')}/.well-known/jwks.json",
            "local_storage_enabled": "true",
            "local_storage_root": str(self.data_dir / "storages"),
        }

    def _install_id(self) -> str:
        path = self.data_dir / INSTALL_ID_FILE
        if not path.exists():
            import uuid
            path.write_text(uuid.uuid4().hex + "\n")
        return path.read_text().strip()

    def start(self) -> None:
        """Open the metadata database as its owner and bring its tables up to date."""
        # The handlers reach WebSocket connections through boto3's API Gateway management
        # client, here pointed at the gateway's loopback listener: it signs requests, so it gets
        # stand-in credentials, never a developer's real ones.
        os.environ.update(AWS_ACCESS_KEY_ID="local", AWS_SECRET_ACCESS_KEY="local")
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            os.environ.pop(name, None)
        from cloudstrype.metadata import schema
        from cloudstrype.metadata.engine import set_engine
        from cloudstrype.metadata.sqlite import SqliteEngine

        self.engine = SqliteEngine(str(self.metadata_path), primary=True)
        self.engine.create_tables(schema.all_tables())
        try:
            check_master_key(self.engine, self.data_dir / SECRETS_DIR / MASTER_KEY_FILE)
        except SecretsMissing:
            self.engine.close()
            self.engine = None
            raise
        set_engine(self.engine)

    def stop(self) -> None:
        from cloudstrype.metadata.engine import set_engine
        if self.engine is not None:
            set_engine(None)
            self.engine.close()
            self.engine = None


def check_master_key(engine, master_key: Path) -> None:
    """Refuse a database whose users' keys were wrapped by a master key that is not there: a
    new one would be made at the first use, which opens none of them (every download and
    storage then fails), and the old one, restored later, would have to win a race with it."""
    from cloudstrype.keys.store import UserKeyStore
    if not master_key.exists() and UserKeyStore(engine).holds_keys():
        raise SecretsMissing(
            f"{master_key} is missing, and the database holds users' keys that only it opens. "
            f"Put back the secrets/ folder of the backup this database came from (cloudstrype "
            f"restore copies both); without it no stored file can be read.")


def fsync_directory(directory: Path) -> None:
    """Make the renames and deletions in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def export_settings(decided: dict[str, str]) -> None:
    """Put decided settings (by field name) into this process's environment."""
    from cloudstrype.settings import Settings, reset_settings_cache
    names = Settings.env_names()
    os.environ.update({names[name]: value for name, value in decided.items()})
    reset_settings_cache()
