"""Every kind of storage, how it is configured, and how to open one from its stored config.

    KINDS["s3"].fields            # what to ask the user for, and which fields are secret
    cleaned = validate_config("s3", user_input)    # ConfigError (a ValueError) naming the field
    backend = open_backend("s3", cleaned)
    probe(backend)                # write, read back and delete a small object

OAuth kinds keep a single field, `token`, which the server fills from the authorization-code
flow (see oauth.py); `on_token_refreshed` receives each new token so it can be saved.

The kinds of this package are declared here; a kind defined elsewhere (the array's `member`)
registers itself with `register` from its own package, so this package imports none. Nothing
heavy is imported until it is needed (boto3 and requests are a large part of a cold start): a
driver when a storage of its kind is first opened, oauth.py when the kinds are first read.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import re
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..errors import shown
from ..limits import MAX_BYTE_COUNT
from ..settings import get_settings
from .base import Backend, BackendError, Usage

if TYPE_CHECKING:
    from .http import RetryPolicy
    from .oauth import TokenCallback


class ConfigError(ValueError):
    """A storage config the caller must fix; `field` names the offending field (or None)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ConfigField:
    name: str
    label: str
    required: bool = True
    secret: bool = False     # never shown back to the user or logged
    help: str = ""


@dataclass(frozen=True)
class StorageKind:
    kind: str
    label: str
    # "oauth": connected through the provider's consent page; "keys": the user enters access
    # keys; "local": a directory on the server (local stack only); "member": an array member,
    # which joins by connecting (never added through the API).
    auth: str
    fields: tuple[ConfigField, ...]

    def describe(self) -> dict:
        """A JSON-ready description for the API's list of storage kinds."""
        return asdict(self)


_CAPACITY = ConfigField(
    "capacity", "Capacity in bytes", required=False,
    help="How much of this storage Cloudstrype may fill; empty for no limit of its own.",
)
_TOKEN = ConfigField(
    "token", "OAuth token", secret=True,
    help="Filled in by the server when the user connects the account.",
)

@dataclass(frozen=True)
class Target:
    """The storage a backend is opened for. Drivers that reach a storage through the server's
    own records (an array member; an OAuth storage's token as stored now) need it; the others
    ignore it."""
    owner: str = ""
    storage_id: str = ""
    name: str = ""
    # The storage's OAuth token as its record holds it now (None: gone): another process may
    # have refreshed it since this backend was opened, and Box retires the refresh token it
    # used at once.
    stored_token: Callable[[], dict | None] | None = field(default=None, compare=False)


# opener(cleaned config, target, on_token_refreshed, retry) -> Backend
Opener = Callable[[dict, Target, "TokenCallback | None", "RetryPolicy | None"], Backend]
Validator = Callable[[str, dict], dict]
# Kinds a user adds through the API; the others (an array member) join on their own.
ADDABLE = ("local", "keys", "oauth")


@dataclass(frozen=True)
class _Entry:
    info: StorageKind
    opener: Opener
    validate: Validator | None = field(default=None)


_REGISTERED: dict[str, _Entry] = {}
_KINDS: dict[str, StorageKind] = {}
_lock = threading.RLock()
_oauth_declared = False


class _Kinds(Mapping):
    """Every registered kind, a live read-only view: kinds registered later (the array's
    `member`) appear here too, also for modules that imported KINDS before."""

    def __getitem__(self, kind: str) -> StorageKind:
        _declare_oauth()
        return _KINDS[kind]

    def __iter__(self):
        _declare_oauth()
        return iter(dict(_KINDS))

    def __len__(self) -> int:
        _declare_oauth()
        return len(_KINDS)

    def __repr__(self) -> str:
        return f"KINDS({dict(self)!r})"


KINDS: Mapping[str, StorageKind] = _Kinds()


# Kinds whose drivers live in another package, loaded on first use: every function (each its own
# Lambda in AWS) can open them, and this package still imports none of them.
_ELSEWHERE = {"member": "cloudstrype.array.backend"}


def _load(kind: str) -> None:
    _declare_oauth()
    if kind not in _KINDS and kind in _ELSEWHERE:
        importlib.import_module(_ELSEWHERE[kind])


def register(info: StorageKind, opener: Opener, validate: Validator | None = None) -> None:
    """Make a kind of storage known: how it is described, validated and opened. `validate`
    defaults to checking the declared fields. Registering a kind again replaces it."""
    with _lock:
        _REGISTERED[info.kind] = _Entry(info, opener, validate)
        _KINDS[info.kind] = info


def _declare_oauth() -> None:
    """Register the OAuth kinds, declared by providers.PROVIDERS, on the registry's first use
    (their openers import oauth.py, which brings requests and oauthlib, when a storage of theirs
    is opened)."""
    global _oauth_declared
    if _oauth_declared:
        return
    with _lock:
        if _oauth_declared:
            return
        from .providers import PROVIDERS
        # In the order they always had: after the built-in kinds, before those registered since
        # (the array's `member`); a kind registered under a provider's name keeps its entry.
        since = {kind: (_REGISTERED.pop(kind), _KINDS.pop(kind))
                 for kind in list(_KINDS) if kind not in _BUILT_IN}
        for name, provider in PROVIDERS.items():
            if name not in since:
                register(StorageKind(name, provider.label, "oauth", (_TOKEN,)),
                         _oauth_opener(name), _validate_token)
        for kind, (entry, info) in since.items():
            _REGISTERED[kind], _KINDS[kind] = entry, info
        _oauth_declared = True


# The openers import their drivers on first use: a function that never opens an S3 bucket (most
# of them, most of the time) does not pay for boto3 or requests on its cold start.
def _open_local(cleaned: dict, target: Target, on_token_refreshed, retry) -> Backend:
    from .local import LocalBackend
    # A storage's folder is checked to be still its own (its marker) before every use.
    return LocalBackend(cleaned["path"], capacity_bytes=cleaned["capacity"],
                        storage_id=target.storage_id or None)


def _open_s3(cleaned: dict, target: Target, on_token_refreshed, retry) -> Backend:
    from .s3 import S3Backend
    return S3Backend(
        endpoint_url=cleaned["endpoint_url"], region=cleaned["region"],
        bucket=cleaned["bucket"], access_key=cleaned["access_key"],
        secret_key=cleaned["secret_key"], prefix=cleaned["prefix"],
        capacity_bytes=cleaned["capacity"],
    )


def _oauth_backend_class(kind: str) -> Callable[..., Backend]:
    # They share requests and oauthlib: opening one costs what opening all of them does.
    from .box import BoxBackend
    from .dropbox import DropboxBackend
    from .gdrive import GoogleDriveBackend
    from .onedrive import OneDriveBackend
    return {"dropbox": DropboxBackend, "gdrive": GoogleDriveBackend,
            "onedrive": OneDriveBackend, "box": BoxBackend}[kind]


def _oauth_opener(kind: str) -> Opener:
    def opener(cleaned: dict, target: Target, on_token_refreshed, retry) -> Backend:
        from .oauth import make_session
        from .pacing import pacer_for
        session = make_session(kind, cleaned["token"], on_token_refreshed,
                               stored_token=target.stored_token)
        # One pacer per storage in this process, whichever backend object writes to it.
        return _oauth_backend_class(kind)(session, retry=retry,
                                          pacer=pacer_for(kind, target.storage_id))
    return opener


# The most bytes a capacity may be.
MAX_CAPACITY = MAX_BYTE_COUNT
# What botocore accepts as a region: not all digits, no hyphen at either end.
_REGION = re.compile(r"(?![0-9]+$)[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?")
# Lenient on purpose: S3-compatible services differ in what bucket names they accept.
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,254}")


def _validate_local(kind: str, config: dict) -> dict:
    return {"path": _directory(config["path"]), "capacity": _capacity(kind, config)}


def _validate_s3(kind: str, config: dict) -> dict:
    return {
        "endpoint_url": _endpoint_url(config.get("endpoint_url")),
        "region": _region(config.get("region")),
        "bucket": _text(kind, "bucket", config["bucket"], _BUCKET,
                        "2 to 255 letters, digits, '.', '-' or '_', starting with a letter "
                        "or digit"),
        # They go into the request's signed headers: printable, no spaces or line breaks
        # (one held CR LF and the probe's error echoed the whole signed header).
        "access_key": _text(kind, "access_key", config["access_key"], _CREDENTIAL,
                            "1 to 256 printable ASCII characters, no spaces"),
        "secret_key": _text(kind, "secret_key", config["secret_key"], _CREDENTIAL,
                            "1 to 256 printable ASCII characters, no spaces", secret=True),
        "prefix": _prefix(config.get("prefix")),
        "capacity": _capacity(kind, config),
    }


def _validate_token(kind: str, config: dict) -> dict:
    token = config["token"]
    if not isinstance(token, dict) or not isinstance(token.get("access_token"), str) \
            or not token["access_token"]:
        raise ConfigError(f"{kind}: token must be an OAuth token object with an access_token",
                          field="token")
    return {"token": dict(token)}


register(StorageKind("local", "Directory on the server", "local", (
    ConfigField("path", "Directory", help="A folder on the server: a relative path is under "
                "its data directory's storages/, an absolute one must be inside a storage root "
                "the operator named."),
    _CAPACITY,
)), _open_local, _validate_local)
register(StorageKind("s3", "S3-compatible bucket", "keys", (
    ConfigField("endpoint_url", "Endpoint URL", required=False,
                help="e.g. https://s3.eu-central-003.backblazeb2.com; empty for AWS S3."),
    ConfigField("region", "Region", required=False, help="e.g. us-east-1 (the default)."),
    ConfigField("bucket", "Bucket"),
    ConfigField("access_key", "Access key id"),
    ConfigField("secret_key", "Secret access key", secret=True),
    ConfigField("prefix", "Key prefix", required=False,
                help="Store shares under this prefix, e.g. cloudstrype/; empty for none."),
    _CAPACITY,
)), _open_s3, _validate_s3)
_BUILT_IN = ("local", "s3")


def available_kinds() -> list[StorageKind]:
    """The kinds a user can add on this deployment: OAuth providers with a client id
    configured, and `local` only where the setting allows it."""
    from .oauth import PROVIDERS
    settings = get_settings()
    kinds = []
    for info in KINDS.values():
        if info.auth not in ADDABLE:
            continue
        if info.kind == "local" and not settings.flag("local_storage_enabled"):
            continue
        if info.auth == "oauth" and not PROVIDERS[info.kind].configured:
            continue
        kinds.append(info)
    return kinds


def validate_config(kind: str, config: dict) -> dict:
    """The config with every field checked and normalized, or ConfigError saying what to fix."""
    _declare_oauth()
    entry = _REGISTERED.get(kind)
    if entry is None:
        raise ConfigError(f"unknown storage kind {kind!r}; expected one of {sorted(KINDS)}",
                          field="kind")
    if not isinstance(config, dict):
        raise ConfigError(f"{kind}: the configuration must be an object of fields")
    info = entry.info
    known = {f.name for f in info.fields}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ConfigError(
            f"{kind}: unknown field {unknown[0]!r}; the fields are {sorted(known)}",
            field=unknown[0],
        )
    for f in info.fields:
        if f.required and _blank(config.get(f.name)):
            raise ConfigError(f"{kind}: {f.name} ({f.label}) is required", field=f.name)
    if entry.validate is not None:
        return entry.validate(kind, config)
    return {name: value for name, value in config.items() if not _blank(value)}


def open_backend(kind: str, config: dict, on_token_refreshed: TokenCallback | None = None,
                 *, retry: RetryPolicy | None = None, target: Target | None = None) -> Backend:
    """A backend for a storage of `kind` with `config` (validated here). `retry` tunes the
    HTTP providers' retries; tests pass tiny delays. `target` names the storage."""
    _load(kind)
    cleaned = validate_config(kind, config)
    return _REGISTERED[kind].opener(cleaned, target or Target(), on_token_refreshed, retry)


def probe(backend: Backend) -> Usage:
    """Prove the storage works: write a small random object, read it back, delete it, and
    read the usage. Raises the backend's own error type with a message saying which step
    failed; returns the usage so the caller can show it."""
    key = f"cloudstrype-probe-{secrets.token_hex(8)}"
    data = secrets.token_bytes(64)
    _probe_step("writing a test object", lambda: backend.put(key, data))
    try:
        read_back = _probe_step("reading the test object back", lambda: backend.get(key))
        if read_back != data:
            raise BackendError("storage check failed: the test object read back differs from "
                               "what was written")
    except BaseException:
        with contextlib.suppress(BackendError):   # tidy up, but report the first failure
            backend.delete(key)
        raise
    _probe_step("deleting the test object", lambda: backend.delete(key))
    return _probe_step("reading the storage's usage", backend.usage)


def _probe_step(description: str, step: Callable):
    try:
        return step()
    except BackendError as exc:
        raise type(exc)(f"storage check failed while {description}: {exc}") from exc


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


_CREDENTIAL = re.compile(r"[\x21-\x7e]{1,256}")


def _text(kind: str, name: str, value, pattern: re.Pattern | None = None, rule: str = "",
          secret: bool = False) -> str:
    """`secret`: a refusal does not repeat the value."""
    if not isinstance(value, str):
        raise ConfigError(f"{kind}: {name} must be text", field=name)
    value = value.strip()
    if pattern is not None and not pattern.fullmatch(value):
        shown = "" if secret else f" {value!r}"
        raise ConfigError(f"{kind}: {name}{shown} is not valid: {rule}", field=name)
    return value


def _directory(value) -> str:
    path = _text("local", "path", value)
    if not os.path.isabs(path):
        raise ConfigError(f"local: path must be an absolute directory path, got {path!r}",
                          field="path")
    return os.path.normpath(path)


def _capacity(kind: str, config: dict) -> int | None:
    value = config.get("capacity")
    if _blank(value):
        return None
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)          # JSON has one number type: 1024.0 is the integer 1024
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_CAPACITY:
        raise ConfigError(f"{kind}: capacity must be a whole number of bytes from 1 to "
                          f"{MAX_CAPACITY} (1 EiB), got {shown(repr(value), 40)}", field="capacity")
    return value


def _endpoint_url(value) -> str | None:
    if _blank(value):
        return None
    url = _text("s3", "endpoint_url", value)
    parts = urlsplit(url)
    if "@" in parts.netloc:
        # Never echoed: it would hold a password, shown in every listing of the storage.
        raise ConfigError("s3: endpoint_url must not hold a user name or password "
                          "(user:password@host); the keys go in access_key and secret_key",
                          field="endpoint_url")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"s3: endpoint_url {url!r} has a port out of 0-65535 (or not a "
                          f"number)", field="endpoint_url") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"s3: endpoint_url must be an http(s) URL such as "
                          f"https://s3.example.com, got {url!r}", field="endpoint_url")
    # One spelling for one place (a port of 044035 is 44035, HTTPS:// is https://), so two
    # storages on one bucket can be told apart from two buckets (storages.service).
    scheme, host = parts.scheme.lower(), parts.hostname
    host = f"[{host}]" if ":" in host else host
    default = 443 if scheme == "https" else 80
    shown_port = f":{port}" if port is not None and port != default else ""
    return f"{scheme}://{host}{shown_port}{parts.path}".rstrip("/")


def _region(value) -> str:
    if _blank(value):
        return "us-east-1"
    return _text("s3", "region", value, _REGION, "use a region name such as us-east-1")


def _prefix(value) -> str:
    if _blank(value):
        return ""
    prefix = _text("s3", "prefix", value).strip("/")
    if len(prefix) > 500 or any(ord(c) < 32 for c in prefix) or ".." in prefix.split("/"):
        raise ConfigError("s3: prefix must be a short path without control characters or '..'",
                          field="prefix")
    return prefix + "/" if prefix else ""
