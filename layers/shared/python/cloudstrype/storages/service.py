"""A user's storages: what they are, their sealed credentials, their health and their space.

Non-secret settings (a bucket name, a directory) are stored as they are and shown to the owner;
secrets (keys, OAuth tokens) are sealed with the owner's key (`cloudstrype.vault`) and never leave
this module except into a backend client.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
import unicodedata
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

from cloudstrype import errors, vault
from cloudstrype.backends import outbound, registry
from cloudstrype.backends.base import Backend, BackendError
from cloudstrype.backends.local import MARKER, remove_temp_files
from cloudstrype.metadata.engine import MetadataError
from cloudstrype.settings import get_settings
from cloudstrype.storages import names
from cloudstrype.storages.names import NAME_MAX
from cloudstrype.storages.store import (
    ACTIVE,
    DRAINING,
    MEMBER_KIND,
    MEMBER_PREFIX,
    OFFLINE,
    Storage,
    StorageStore,
)

log = logging.getLogger("cloudstrype.storages")

# A storage that just failed is skipped by placement for this long.
DOWN_SECONDS = 60
# Provider-reported usage is measured again when it is this old, or sooner, once it is this old,
# when shares have been written or deleted there since (a user who just stored 20 MB is not
# shown "0 bytes used" for ten minutes; a bucket's measure lists every object, so not at every
# look either).
USAGE_MAX_AGE_SECONDS = 600
USAGE_CHANGED_MAX_AGE_SECONDS = 30

_store = StorageStore()


def _purpose(record: Storage) -> str:
    return f"storage:{record.storage_id}:secrets"


def is_oauth(kind: str) -> bool:
    info = registry.KINDS.get(kind)
    return info is not None and info.auth == "oauth"


def _split_config(kind: str, config: dict) -> tuple[dict, dict]:
    secret_names = {f.name for f in registry.KINDS[kind].fields if f.secret}
    public = {k: v for k, v in config.items() if k not in secret_names}
    secret = {k: v for k, v in config.items() if k in secret_names}
    return public, secret


def _full_config(record: Storage) -> dict:
    """What the backend is opened with: its kind's declared fields, secrets unsealed. (Labels
    kept for display, like an OAuth account's name, are not backend settings.)"""
    config = dict(record.settings or {})
    if record.sealed_secrets:
        config.update(json.loads(vault.open_sealed(record.owner, record.sealed_secrets,
                                                   _purpose(record))))
    fields = {f.name for f in registry.KINDS[record.kind].fields}
    return {name: value for name, value in config.items() if name in fields}


def _seal(record: Storage, secrets: dict) -> None:
    record.sealed_secrets = vault.seal(record.owner, json.dumps(secrets).encode(),
                                       _purpose(record)) if secrets else None


# Characters that turn the text around them (U+202E shows "gnp.exe" as "exe.png").
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                           "\u2066\u2067\u2068\u2069")


def _clean_name(name: str | None, fallback: str) -> str:
    name = (name or fallback).strip()               # "" or none: no name given
    if not name or len(name) > NAME_MAX or \
            any(unicodedata.category(c) in ("Cc", "Zl", "Zp") or c in _BIDI_CONTROLS
                for c in name) or \
            all(unicodedata.category(c) == "Cf" for c in name):
        raise errors.BadRequest(f"Storage name must be 1-{NAME_MAX} printable characters "
                                f"(no control characters, line breaks or direction marks, "
                                f"and not only invisible ones).",
                                code="invalid_name", details={"field": "name"})
    return name


def check_name_free(owner: str, name: str | None, fallback: str) -> None:
    """A user's storages have distinct names (the CLI, the web UI and error messages name them):
    a name the user chose that reads as another of their storages' is a 409. Checked when added;
    two adds racing with one name may both pass."""
    if not name:
        return                  # no name given: the default, numbered (unused_name)
    taken = names.taken_names(_store, owner)
    existing = taken.get(names.name_key(_clean_name(name, fallback)))
    if existing is not None:
        raise errors.Conflict(f"You have a storage named '{existing}' already; choose another "
                              f"name.", code="name_taken", details={"field": "name"})


def unused_name(owner: str, name: str, ignore: str | None = None) -> str:
    return names.unused_name(_store, owner, name, ignore)


def _new_storage(owner: str, kind: str, name: str | None) -> Storage:
    return Storage(owner, f"st-{uuid.uuid4().hex[:12]}", kind=kind,
                   name=_clean_name(name, kind), status=ACTIVE, created=int(time.time()))


def _save_new(record: Storage) -> Storage:
    if not _store.create(record):       # a random id taken: practically never
        raise errors.Conflict("A storage with this id exists already; try again.",
                              code="storage_exists")
    return record


def add_storage(owner: str, kind: str, name: str | None, config: dict) -> Storage:
    """Validate, probe with a real write/read/delete, then save. Nothing is saved on failure."""
    addable = [k for k, info in registry.KINDS.items() if info.auth in registry.ADDABLE]
    if kind not in addable:
        # The kinds offered here (GET /api/cloud/providers), not every kind there is.
        offered = sorted(info.kind for info in registry.available_kinds())
        raise errors.BadRequest(f"Unknown storage kind '{kind}'; choose one of "
                                f"{', '.join(offered)}.", code="invalid_kind",
                                details={"field": "kind"})
    if is_oauth(kind):
        raise errors.BadRequest(f"'{kind}' storages are connected through OAuth: open "
                                f"GET /api/cloud/oauth/{kind}/authorize.", code="use_oauth")
    if not isinstance(config, dict):
        raise errors.BadRequest("Field 'config' must be an object of fields.",
                                code="invalid_config", details={"field": "config"})
    known = sorted(f.name for f in registry.KINDS[kind].fields)
    unknown = sorted(set(config) - set(known))
    if unknown:
        # Named before anything else is asked of the config: a misspelt 'pth' was answered
        # "Field 'path' is required", which did not say what was wrong.
        raise errors.BadRequest(f"Unknown field '{unknown[0]}' in 'config'; a {kind} storage's "
                                f"fields are {', '.join(known)}.", code="invalid_config",
                                details={"field": f"config.{unknown[0]}"})
    if kind == "local":
        config = _local_config(config)
    try:
        cleaned = registry.validate_config(kind, config)
    except ValueError as exc:
        raise errors.BadRequest(str(exc), code="invalid_config") from None
    check_name_free(owner, name, kind)
    record = _new_storage(owner, kind, name)
    if not name:
        record.name = unused_name(owner, record.name)
    public, secrets = _split_config(kind, cleaned)
    record.settings = public
    _seal(record, secrets)
    if cleaned.get("endpoint_url"):
        _check_endpoint(cleaned["endpoint_url"])
    if kind == "s3":
        _refuse_overlapping_bucket(owner, cleaned)
    claimed = Path(cleaned["path"]) if kind == "local" else None
    made: list[Path] = []
    if claimed is not None:
        _refuse_recorded_folder(claimed)
        made = _make_directory(claimed)
        try:
            _claim_directory(claimed, record)
        except BaseException:
            _remove_made(made)
            raise
    try:
        backend = registry.open_backend(kind, cleaned, target=_target(record))
        try:
            registry.probe(backend)
            usage = backend.usage()
        except BackendError as exc:
            raise errors.BadRequest(f"The storage did not pass a write/read/delete check: "
                                    f"{exc}", code="probe_failed") from None
        record.capacity = usage.capacity
        record.provider_used = usage.used
        record.usage_checked = time.time()
        return _save_new(record)
    except BaseException:
        if claimed is not None:
            _release_directory(claimed)
            _remove_made(made)
        raise


def _bucket_place(settings: dict) -> tuple[str, str, str]:
    """(endpoint, bucket, key prefix) of an S3 storage; the endpoint "" for AWS (its bucket
    names are global, whatever the region)."""
    endpoint = (settings.get("endpoint_url") or "").strip().rstrip("/")
    return endpoint, settings.get("bucket") or "", settings.get("prefix") or ""


def _same_endpoint(first: str, second: str) -> bool:
    """Whether two endpoint URLs (as registry._endpoint_url spells them) reach one server: the
    same URL, or the same scheme, port and path on host names that share an address
    (`localhost` and `127.0.0.1`)."""
    if first == second:
        return True
    if not first or not second:
        return False                        # AWS's own endpoint and another
    a, b = urlsplit(first), urlsplit(second)
    if (a.scheme, a.port, a.path) != (b.scheme, b.port, b.path):
        return False
    return bool(_addresses(a.hostname) & _addresses(b.hostname))


def _addresses(host: str | None) -> set[str]:
    try:
        return {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (OSError, UnicodeError):
        return set()


def _refuse_overlapping_bucket(owner: str, config: dict) -> None:
    """A user's S3 storages do not share keys: one whose prefix holds another's (the same
    prefix, or one that begins the other, in one bucket) would count the other's shares as its
    own, and the two are one place, not two, for a chunk's copies. Checked when added; two
    adds racing may both pass."""
    endpoint, bucket, prefix = _bucket_place(config)
    for record in _store.list(owner):
        if record.kind != "s3":
            continue
        other_endpoint, other_bucket, other_prefix = _bucket_place(record.settings or {})
        if other_bucket == bucket and _same_endpoint(other_endpoint, endpoint) and (
                prefix.startswith(other_prefix) or other_prefix.startswith(prefix)):
            where, fix = (f"under prefix '{other_prefix}'", f"another bucket, or a prefix "
                          f"that neither begins nor is begun by '{other_prefix}'") \
                if other_prefix else ("in the whole bucket", "another bucket")
            raise errors.Conflict(
                f"Your storage '{record.name}' keeps its shares in bucket '{bucket}' {where} "
                f"already; a second storage there would be the same place for a chunk's "
                f"copies. Use {fix}.", code="storage_place_taken",
                details={"field": "prefix"})


def _check_endpoint(url: str) -> None:
    # Before anything is sent: the connections themselves are checked again (outbound).
    try:
        outbound.check_url(url)
    except outbound.OutboundRefused as exc:
        raise errors.BadRequest(f"endpoint_url: {exc}.", code="endpoint_not_allowed",
                                details={"field": "endpoint_url"}) from None
    except BackendError as exc:
        raise errors.BadRequest(f"endpoint_url: {exc}.", code="probe_failed",
                                details={"field": "endpoint_url"}) from None


def save_oauth_storage(owner: str, kind: str, name: str, token: dict,
                       account: dict) -> tuple[Storage, bool]:
    """The storage for a granted account -> (storage, whether it was connected already).

    One account is one storage: two storages on it would let placement put two copies of a
    chunk where one lost account (closed, or access revoked) takes both. So an account the
    user has connected already is reconnected instead: that storage gets the new token and
    its access error is forgotten (the way to mend a storage whose access was revoked), and
    keeps its name, its shares and its status."""
    settings = {"account_id": account.get("account_id"),
                "account_name": account.get("display_name")}
    existing = _connected_as(owner, kind, settings["account_id"])
    record = existing or _new_storage(owner, kind, name)
    if existing is None:
        record.name = unused_name(owner, record.name)
    record.settings = {**(record.settings or {}), **settings}
    _seal(record, {"token": token})
    _backend_cache.pop((owner, record.storage_id), None)
    backend = backend_for(record)
    try:
        registry.probe(backend)
        usage = backend.usage()
    except BackendError as exc:
        _backend_cache.pop((owner, record.storage_id), None)
        raise errors.BadRequest(f"The connected account did not pass a write/read/delete "
                                f"check: {exc}", code="probe_failed") from None
    if existing is not None:
        if not _store.reconnect(owner, record.storage_id, record.settings,
                                record.sealed_secrets):
            _backend_cache.pop((owner, record.storage_id), None)
            raise errors.Conflict(f"Storage '{record.name}' was removed while its account was "
                                  f"being connected again; connect it again.",
                                  code="storage_removed")
        _store.set_usage(owner, record.storage_id, used=usage.used, capacity=usage.capacity)
        return get_storage(owner, record.storage_id), True
    record.capacity, record.provider_used = usage.capacity, usage.used
    record.usage_checked = time.time()
    return _save_new(record), False


def _connected_as(owner: str, kind: str, account_id: str | None) -> Storage | None:
    """The owner's storage of this kind on this provider account, if any."""
    if not account_id:
        return None
    return next((record for record in _store.list(owner) if record.kind == kind and
                 (record.settings or {}).get("account_id") == account_id), None)


PATH_MAX = 1024


def _bad_path(message: str, code: str = "invalid_path") -> errors.BadRequest:
    return errors.BadRequest(message, code=code, details={"field": "path"})


def local_roots() -> list[Path]:
    """The folders local storages may live in, as the operator named them (real paths); the
    first is where a relative path goes."""
    settings = get_settings()
    named = [settings.local_storage_root, *settings.local_storage_roots.split(os.pathsep)]
    roots: list[Path] = []
    for root in (r.strip() for r in named):
        if root and os.path.isabs(root):
            real = Path(os.path.realpath(root))
            if real not in roots:
                roots.append(real)
    return roots


def _protected() -> tuple[list[Path], list[Path]]:
    """The server's own files (no storage may hold them) and folders (no storage may be in or
    around them), whatever the roots: its database and keys; its staging, code and Python."""
    settings = get_settings()
    files = [settings.metadata_path, settings.master_key_path, settings.identity_key_path]
    folders = [settings.staging_dir, sys.prefix]
    for name in ("cloudstrype", "functions", "infra", "cloudstrype_client"):
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__file__", None):
            # The package's own folder, not its import root: a checkout's root also holds the
            # default data directory (`make run`), whose storages/ is the default storage root.
            folders.append(str(Path(module.__file__).parent))
    return ([Path(os.path.realpath(p)) for p in files if p],
            [Path(os.path.realpath(p)) for p in folders if p])


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _local_config(config: dict) -> dict:
    if not get_settings().flag("local_storage_enabled"):
        raise errors.BadRequest("Local directory storages are turned off on this deployment.",
                                code="kind_disabled")
    path = config.get("path")
    if not isinstance(path, str) or not path.strip():
        raise _bad_path("Field 'path' (a directory) is required for a local storage.",
                        code="invalid_config")
    path = path.strip()
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise _bad_path("Field 'path' must not contain control characters.")
    if len(path) > PATH_MAX or any(len(part) > 255 for part in path.split("/")):
        raise _bad_path(f"Field 'path' must be at most {PATH_MAX} characters, each folder name "
                        f"at most 255.")
    roots = local_roots()
    where = ", ".join(str(r) for r in roots) or "none (the operator has named no roots)"
    if not roots:
        raise _bad_path(f"Local storages must be folders inside the storage roots: {where}.",
                        code="path_not_allowed")
    # Resolved as the server will open it: "..", and symlinks followed to where they lead.
    directory = Path(os.path.realpath(roots[0] / path))
    root = next((r for r in roots if _inside(directory, r)), None)
    if root is None or directory == root:
        raise _bad_path(f"{path} is not a folder inside the storage roots; choose a folder "
                        f"inside one of: {where}.", code="path_not_allowed")
    files, folders = _protected()
    if any(_inside(p, directory) for p in files + folders) or \
            any(_inside(directory, p) for p in folders):
        raise _bad_path(f"{path} holds or is part of the server's own files; choose another "
                        f"folder inside one of: {where}.", code="path_not_allowed")
    # One directory, one storage: not one inside another's either (deleting or draining the
    # outer one would take the inner one's shares; its `used` would count them).
    for ancestor in directory.parents:
        if not _inside(ancestor, root) or ancestor == root:
            break
        if (ancestor / MARKER).exists():
            raise errors.Conflict(f"{path} is inside the folder of another Cloudstrype storage; "
                                  f"give each storage its own folder, beside the others.",
                                  code="directory_in_use")
    return {**config, "path": str(directory)}


def _make_directory(directory: Path) -> list[Path]:
    """Create a local storage's folder; the folders this made, innermost first (removed again
    if the storage is not added)."""
    made = []
    for folder in [directory, *directory.parents]:
        if folder.exists():
            break
        made.append(folder)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _remove_made(made)
        raise _bad_path(f"Cannot use {directory}: {exc.strerror}.", code="invalid_config") \
            from None
    return made


def _remove_made(made: list[Path]) -> None:
    for folder in made:
        try:
            folder.rmdir()          # only if still empty
        except OSError:
            return


def _refuse_recorded_folder(directory: Path) -> None:
    """A folder that a storage's record names (anyone's) is that storage's, even when its marker
    is gone (the folder emptied, the disk not mounted): claiming it again would give two
    storages one folder. A scan of the storages table: adding a local storage is rare, and local
    storages exist only where the server runs on the machine."""
    for record in _store.every():
        if record.kind == "local" and record.settings.get("path") == str(directory):
            raise errors.Conflict(f"{directory} is the folder of another Cloudstrype storage; "
                                  f"give each storage its own folder.", code="directory_in_use")


def _claim_directory(directory: Path, record: Storage) -> None:
    """One directory, one storage (two on one disk would break "distinct backends"), decided
    by an exclusive create of the marker: of concurrent claims exactly one wins."""
    try:
        fd = os.open(directory / MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                     0o600)
    except FileNotFoundError:
        # Made by this claim, then removed by a claim of a folder around or inside it that
        # gave up: nothing is claimed; the same request again makes it anew.
        raise errors.Conflict(f"{directory} was removed by another claim while it was being "
                              f"claimed; try again.", code="concurrent_change") from None
    except FileExistsError:
        claimed_by = _marker_storage(directory)
        if claimed_by is not None and not any(r.storage_id == claimed_by
                                              for r in _store.every()):
            raise errors.Conflict(
                f"{directory} was the folder of a storage that has been removed "
                f"({claimed_by}); what is left in it is no longer used. Empty the folder "
                f"(its {MARKER} too) to use it again, or name another.",
                code="directory_in_use") from None
        raise errors.Conflict(f"{directory} is already a Cloudstrype storage; give each storage "
                              f"its own directory.", code="directory_in_use") from None
    except OSError as exc:
        raise _bad_path(f"Cannot use {directory}: {exc.strerror}.", code="invalid_config") \
            from None
    with os.fdopen(fd, "w") as marker:
        marker.write(json.dumps({"storage_id": record.storage_id}))
    # A folder with something in it is not new: its size would show as this storage's `used`.
    if any(entry.name != MARKER for entry in os.scandir(directory)):
        _release_directory(directory)
        raise errors.Conflict(f"{directory} is not empty; a local storage starts in an empty "
                              f"or new folder.", code="directory_not_empty")
    # Looked at again now that this claim is on disk: a folder above claimed since the check
    # before (_local_config) saw nothing there. Of an outer and an inner claim racing, the
    # outer sees the inner folder in its scan above, or the inner sees the outer's marker here.
    # (Up to the storage root, as that check: a marker left above it decides nothing.)
    roots = local_roots()
    above = []
    for ancestor in directory.parents:
        if ancestor in roots:
            break
        above.append(ancestor)
    if any((ancestor / MARKER).exists() for ancestor in above):
        _release_directory(directory)
        raise errors.Conflict(f"{directory} is inside the folder of another Cloudstrype "
                              f"storage; give each storage its own folder, beside the "
                              f"others.", code="directory_in_use")


def _marker_storage(directory: Path) -> str | None:
    """The storage id a folder's marker names (None if it cannot be read as one)."""
    try:
        fd = os.open(directory / MARKER, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd) as marker:
            found = json.loads(marker.read(1024)).get("storage_id")
    except (OSError, ValueError, AttributeError):
        return None
    return found if isinstance(found, str) else None


def _release_directory(directory: Path) -> None:
    """The folder is no storage's any more: its marker goes, and the temporary files of writes
    a stopped server left (the storage held no share, so none is a write under way that
    matters: placement sends none to a draining storage)."""
    remove_temp_files(directory)
    (directory / MARKER).unlink(missing_ok=True)


def list_storages(owner: str) -> list[Storage]:
    return _store.list(owner)


def get_storage(owner: str, storage_id: str) -> Storage:
    record = _store.get(owner, storage_id)
    if record is None:
        raise errors.NotFound(f"No storage {errors.shown(storage_id)}.", code="storage_not_found")
    return record


def delete_storage(owner: str, storage_id: str, shares_held: int) -> None:
    record = get_storage(owner, storage_id)
    if shares_held > 0 and record.status == DRAINING:
        raise errors.Conflict(f"Storage '{record.name}' is draining but still holds "
                              f"{errors.plural(shares_held, 'share')}: the drain has not moved "
                              f"them yet. Run it again to see why (POST /api/cloud/storages/"
                              f"{storage_id}/drain), or add a storage they can move to.",
                              code="storage_not_empty")
    if shares_held > 0:
        raise errors.Conflict(f"Storage '{record.name}' still holds "
                              f"{errors.plural(shares_held, 'share')}. Drain it first (POST "
                              f"/api/cloud/storages/{storage_id}/drain) to move them "
                              f"elsewhere.", code="storage_not_empty")
    _store.delete(owner, storage_id)
    if record.kind == "local" and record.settings.get("path"):
        _release_directory(Path(record.settings["path"]))
    _backend_cache.pop((owner, storage_id), None)


def start_draining(owner: str, storage_id: str) -> Storage:
    """The storage takes no new shares from now on; the drain (and the scrub) move its shares
    away. Idempotent."""
    record = get_storage(owner, storage_id)
    if record.status != DRAINING:
        if not _store.set_status(owner, storage_id, DRAINING):
            raise errors.NotFound(f"No storage {errors.shown(storage_id)}.",
                                  code="storage_not_found")
        record.status = DRAINING
    return record


def stop_draining(owner: str, storage_id: str, member_online: bool | None = None) -> Storage:
    """Undo a drain: the storage takes new shares again; the shares already moved stay where
    they went. Idempotent. An array member's storage is stopped through its member (the array
    service), which says whether it is connected: ACTIVE if so, else OFFLINE until it is."""
    record = get_storage(owner, storage_id)
    if record.kind == MEMBER_KIND and member_online is None:
        member_id = storage_id.removeprefix(MEMBER_PREFIX)
        raise errors.BadRequest(f"This storage is an array member's; stop its drain with DELETE "
                                f"/api/array/members/{member_id}/drain (cloudstrype storages "
                                f"undrain works too).", code="member_storage")
    if record.status != DRAINING:
        return record
    status = OFFLINE if record.kind == MEMBER_KIND and not member_online else ACTIVE
    if _store.set_status(owner, storage_id, status, expected=(DRAINING,)):
        record.status = status
        return record
    return get_storage(owner, storage_id)      # changed meanwhile: as it is now


def still_draining(owner: str, storage_id: str) -> bool:
    record = _store.get(owner, storage_id)
    return record is not None and record.status == DRAINING


def all_storages():
    """Every storage of every user (the scrub's checks walk them all)."""
    return _store.every()


def record_check(record: Storage, *, check_cursor: str | None, verify_cursor: str | None,
                 passed: bool, missing: int, corrupt: int) -> None:
    _store.record_check(record.owner, record.storage_id, check_cursor=check_cursor,
                        verify_cursor=verify_cursor, passed=passed, missing=missing,
                        corrupt=corrupt)


def clear_old_error(record: Storage, answered_since: float) -> None:
    """The storage answered everything asked of it since `answered_since`: an error recorded
    before then is history, no longer shown as its last problem."""
    if record.last_error:
        _store.clear_error(record.owner, record.storage_id, answered_since)


def draining_storages():
    """Every draining storage of every user: the scrub's work list (an index, not a scan)."""
    return _store.draining()


# -- backends for records, cached briefly --------------------------------------------------------

_backend_cache: dict[tuple[str, str], tuple[Backend, float]] = {}
_cache_lock = threading.Lock()
_BACKEND_CACHE_SECONDS = 300
# A storage's backend is opened by one thread at a time: eight first writes at once opened
# eight, each of whose sessions refreshed an expired token with the same refresh token, and
# Box took the first alone (7 of 8 writes: "reconnect the storage"). Striped by storage.
_OPENING_LOCKS = tuple(threading.Lock() for _ in range(64))


def _target(record: Storage) -> registry.Target:
    owner, storage_id = record.owner, record.storage_id

    def stored_token() -> dict | None:
        fresh = _store.get(owner, storage_id)
        if fresh is None or not fresh.sealed_secrets:
            return None
        token = json.loads(vault.open_sealed(fresh.owner, fresh.sealed_secrets,
                                             _purpose(fresh))).get("token")
        return token if isinstance(token, dict) else None

    return registry.Target(owner=owner, storage_id=storage_id, name=record.name,
                           stored_token=stored_token if is_oauth(record.kind) else None)


def backend_for(record: Storage) -> Backend:
    if record.kind not in registry.KINDS:
        # e.g. a member storage in a process that never loaded the array package
        raise BackendError(f"storage {record.name}: no driver for kind '{record.kind}' is "
                           f"loaded here")
    key = (record.owner, record.storage_id)
    with _cache_lock:
        cached = _backend_cache.get(key)
        if cached and cached[1] > time.monotonic():
            return cached[0]
    with _OPENING_LOCKS[hash(key) % len(_OPENING_LOCKS)]:
        with _cache_lock:
            cached = _backend_cache.get(key)
            if cached and cached[1] > time.monotonic():
                return cached[0]       # opened by the thread this one waited for
        backend = _open(record)
        with _cache_lock:
            _backend_cache[key] = (backend, time.monotonic() + _BACKEND_CACHE_SECONDS)
        return backend


def _open(record: Storage) -> Backend:
    def save_refreshed_token(token: dict) -> None:
        # Providers rotate refresh tokens: persist the new one or the storage is lost.
        fresh = _store.get(record.owner, record.storage_id)
        if fresh is None or not fresh.sealed_secrets:
            return
        secrets = json.loads(vault.open_sealed(fresh.owner, fresh.sealed_secrets,
                                               _purpose(fresh)))
        secrets["token"] = token
        _seal(fresh, secrets)
        _store.set_sealed_secrets(fresh.owner, fresh.storage_id, fresh.sealed_secrets)

    return registry.open_backend(record.kind, _full_config(record),
                                 on_token_refreshed=save_refreshed_token
                                 if is_oauth(record.kind) else None,
                                 target=_target(record))


def mark_down(record: Storage, reason: str) -> None:
    record.down_until = time.time() + DOWN_SECONDS
    record.last_error = reason[:500]
    try:
        _store.mark_down(record.owner, record.storage_id, record.down_until, reason)
    except Exception:  # health bookkeeping must never fail the request it is part of
        log.warning("could not record that storage %s is down", record.storage_id)


def count_shares(owner: str, storage_id: str, shares: int, size: int) -> None:
    _store.count_shares(owner, storage_id, shares, size)


# Counter writes of one chunk's storages, sent together.
_counting = ThreadPoolExecutor(max_workers=16, thread_name_prefix="share-counts")


def count_shares_async(owner: str, counts: dict[str, tuple[int, int]]) -> dict[str, Future]:
    """Start adding (shares, bytes) to each storage's counters; returns a future per storage.

    The writes are independent (each storage's counters alone; one that is gone is skipped),
    so they go out at once rather than one after another: on DynamoDB that is one round trip's
    wait, on SQLite writes that meet share one commit (its group commit)."""
    return {storage_id: _counting.submit(_store.count_shares, owner, storage_id, shares, size)
            for storage_id, (shares, size) in counts.items()}


def refresh_usage(record: Storage, force: bool = False) -> Storage:
    age = time.time() - (record.usage_checked or 0)
    changed = int(record.stored_bytes or 0) != int(record.usage_stored_bytes or 0)
    if not force and age < (USAGE_CHANGED_MAX_AGE_SECONDS if changed else USAGE_MAX_AGE_SECONDS):
        return record
    try:
        usage = backend_for(record).usage()
    except BackendError as exc:
        mark_down(record, str(exc))
        return record
    record.capacity, record.provider_used = usage.capacity, usage.used
    record.usage_checked = time.time()
    record.usage_stored_bytes = int(record.stored_bytes or 0)
    try:
        _store.set_usage(record.owner, record.storage_id, used=usage.used,
                         capacity=usage.capacity, checked=record.usage_checked,
                         stored=record.usage_stored_bytes)
    except MetadataError as exc:
        # A measure kept for later, not a write anyone asked for: with the data directory's
        # disk full, listing the storages was refused 507 (disk sweep). Shown, not saved.
        log.warning("the usage of storage %s was measured but not saved: %s",
                    record.storage_id, exc)
    return record


def remeasure_full(candidates: list[Storage], share_size: int) -> bool:
    """Measure again the storages too full for a share of `share_size` bytes when last
    measured at least USAGE_CHANGED_MAX_AGE_SECONDS ago (a figure may be ten minutes old:
    space freed since was not seen, and writes were refused "full"); whether any was."""
    now = time.time()
    stale = [s for s in candidates if s.usable(now) and s.free is not None and
             s.free < share_size and now - (s.usage_checked or 0) >= USAGE_CHANGED_MAX_AGE_SECONDS]
    for record in stale:
        refresh_usage(record, force=True)
    return bool(stale)
