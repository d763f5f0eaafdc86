"""File content: versions made of chunks, one-shot uploads, upload sessions, ranged reads."""
from __future__ import annotations

import hashlib
import json
import logging
import math
import mimetypes
import os
import random
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from cloudstrype import errors, limits, quota, storages
from cloudstrype.pipeline import codec, packs, store
from cloudstrype.pipeline.chunk_store import Blob, chunk_store
from cloudstrype.settings import get_settings
from cloudstrype.storages.placement import default_durability
from cloudstrype.tree import trash, tree
from cloudstrype.tree.store import (
    FILE,
    NEW_FILE_WRITES,
    ROOT,
    AlongFailed,
    Changed,
    Node,
    Profile,
    TreeConflict,
    Upload,
    UploadPart,
    Version,
    tree_store,
)

CHUNK_SIZE = 4 * 1024 * 1024
# An upload session's id, the server's or one a client chose: 12 random bytes in hex.
UPLOAD_ID_PATTERN = re.compile(r"[0-9a-f]{24}")
# What one response may carry: Lambda's 6 MB payload holds 4.5 MB of raw bytes after base64.
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
log = logging.getLogger("cloudstrype.files")

# After a session expires, its records stay this long before the engine may drop them, so
# the hourly sweep has days to free the chunks of its parts first.
UPLOAD_PURGE_GRACE_SECONDS = 7 * 24 * 3600
# Racing writers of one name retry (optimistic concurrency) for at most this long.
ATTACH_SECONDS = 15.0
_parallel = ThreadPoolExecutor(max_workers=8, thread_name_prefix="file-chunks")
# A client's modification time (Unix seconds) kept as the file's `modified`, so a client can
# tell an unchanged file from the listing alone: years 1 to 9999, what a timestamp can show.
MTIME_MIN, MTIME_MAX = -62135596800, 253402300799


# A form's mtime text: a JSON number in ASCII (float() also takes '١٧٠٠', 'inf', ' 1' and
# '1_0').
_MTIME_TEXT = re.compile(r"-?[0-9]{1,20}(\.[0-9]{1,20})?([eE][-+]?[0-9]{1,3})?")


def check_mtime(value, field: str = "mtime") -> float | None:
    """`field`: how the request named it (a batch's is its file's entry in `mtimes`)."""
    """The optional `mtime` field (a number, or its text in a form) as float seconds."""
    if value is None:
        return None
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)) or (
                isinstance(value, str) and _MTIME_TEXT.fullmatch(value) is None):
            raise ValueError
        mtime = float(value)
        if not MTIME_MIN <= mtime <= MTIME_MAX:          # NaN and infinities fail this too
            raise ValueError
    except ValueError:
        raise errors.BadRequest(f"Field '{field}' must be the file's modification time in Unix "
                                f"seconds ({MTIME_MIN} to {MTIME_MAX}), e.g. 1700000000.25.",
                                code="invalid_field", details={"field": field}) from None
    return mtime


def new_version_id() -> str:
    # Sortable by time, so versions list oldest to newest by key.
    return f"{int(time.time() * 1000):013d}{tree.random_hex(4)}"


chunk_id = store.file_chunk_id


# A media type as RFC 6838 names one (type/subtype of restricted-name characters): what a
# Content-Type header can carry as it is. A stored type with a line break in it made the file
# one no one could download (the framework refused the header: a 500).
MEDIA_TYPE = (r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/"
              r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")
# What a client may give as a file's type (the API description says the same): a media type,
# then parameters, which are not kept.
_GIVEN_TYPE = re.compile(rf"({MEDIA_TYPE})(?: *;.*)?", re.S)


def media_type(value) -> str | None:
    """The media type `value` gives, without its parameters; None if it gives none."""
    match = _GIVEN_TYPE.fullmatch(value) if isinstance(value, str) else None
    return match.group(1) if match else None


def guess_type(name: str, given: str | None = None) -> str:
    """The type a client gave (a form part's, or an upload session's), else one guessed from
    the name."""
    given = media_type(given)
    if given and given != "application/octet-stream":
        return given
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def served_type(stored: str | None) -> str:
    """The Content-Type a file is served with: its type, or application/octet-stream for one
    stored before types were checked that no header can carry."""
    return media_type(stored) or "application/octet-stream"


# -- defaults -------------------------------------------------------------------------------------

def defaults(owner: str) -> dict:
    profile = tree_store().get_profile(owner) or Profile(owner)
    retention = profile.trash_retention_days
    return {"durability": profile.default_durability, "encryption":
            profile.default_encryption or "aes256-gcm",
            "trash_retention_days": trash.DEFAULT_RETENTION_DAYS if retention is None
            else retention}


def set_defaults(owner: str, changes: dict) -> dict:
    """Change the fields of `changes` (durability, encryption, trash_retention_days); None sets
    one back to the deployment's default (automatic durability: chosen from the storages at
    each upload)."""
    current = defaults(owner)
    if "durability" in changes:
        durability = changes["durability"]
        current["durability"] = None if durability is None else \
            str(codec.parse_durability(durability))
    if "encryption" in changes:
        encryption = changes["encryption"]
        current["encryption"] = "aes256-gcm" if encryption is None else \
            str(codec.parse_encryption(encryption))
    retention_changed = False
    if "trash_retention_days" in changes:
        given = changes["trash_retention_days"]
        days = trash.DEFAULT_RETENTION_DAYS if given is None else trash.check_retention(given)
        retention_changed = days != current["trash_retention_days"]
        current["trash_retention_days"] = days
    tree_store().put_profile(Profile(owner, current["durability"], current["encryption"],
                                     current["trash_retention_days"]))
    if retention_changed:
        trash.apply_retention(owner, current["trash_retention_days"])
    return current


def _schemes(owner: str, durability: str | None, encryption: str | None) -> tuple[str, str]:
    chosen = defaults(owner)
    enc = str(codec.parse_encryption(encryption or chosen["encryption"]))
    dur = durability or chosen["durability"] or default_durability(
        storages.list_storages(owner))
    return str(codec.parse_durability(dur)), enc


# -- writing --------------------------------------------------------------------------------------

@dataclass
class NewVersion:
    version_id: str
    size: int
    chunk_count: int
    sha256: str | None
    etag: str
    content_type: str
    durability: str
    encryption: str
    mtime: float | None = None          # the client's; else the file's modified is now
    pack: packs.PackedBlob | None = None  # packed: its blob (chunk_count is then 0)
    # Content stored once for the owner (packed, or chunked): its blob (chunk_store.Blob),
    # registered by the attach (`new_blob`), or content the owner stored before, which the
    # version reads instead of its own (`claimed`: the attach's transaction claims it, so a
    # server that stops before the attach leaves no claim behind).
    blob: Blob | None = None
    new_blob: bool = False
    claimed: bool = False
    # This version's own copy, kept while it reads content another upload registered meanwhile:
    # its blob to register (and its pack place, packed) should that content go before the
    # attach; let go once the version is attached or discarded.
    own_blob: Blob | None = None
    own_pack: packs.PackedBlob | None = None
    # Chunks chunk_id(version_id, i) are stored for this version alone: freed if it is
    # discarded, or once it is attached if it reads content stored before instead. A session's
    # parts are the session's (its sweep frees them), not the version's.
    own_chunks: bool = True
    # The record of a one-request upload's chunks (tree.store.Upload, intent): committed with
    # the attach; the sweep frees the chunks if the server stopped before (see _begin_intent).
    intent: Upload | None = None


# Content too large to pack is named by this and its chunks' SHA-256s (chunked_digest).
_CHUNKED_CONTENT = b"cloudstrype/chunked-content/v1\x00"


def chunk_digests(data) -> list[bytes]:
    """The SHA-256 of each CHUNK_SIZE piece of `data`, as the chunks are cut."""
    view = memoryview(data)
    return [hashlib.sha256(view[start:start + CHUNK_SIZE]).digest()
            for start in range(0, len(view), CHUNK_SIZE)]


def chunked_digest(size: int, digests: list[bytes]) -> bytes:
    """What identifies chunked content: its size and each chunk's SHA-256 in order, all
    computed here from the bytes. A session's parts are hashed as each arrives, so this needs
    neither the whole file at hand nor a hash the client declares."""
    return hashlib.sha256(_CHUNKED_CONTENT + size.to_bytes(8, "big")
                          + CHUNK_SIZE.to_bytes(8, "big") + b"".join(digests)).digest()


def _stored_once(owner: str, version: NewVersion, digests: list[bytes], claim: bool) -> None:
    """Chunked content is stored once per owner (and scheme): if the owner stores it already,
    `version` reads those chunks (claimed); otherwise its own chunks become that content, once
    its attach registers them (new_blob). `claim` False (written through a share by another
    user): whether the owner has it must not change how the upload goes, so nothing is
    looked up and the content gets a name of its own (packs.unshared_content_key)."""
    if not version.chunk_count:
        return
    digest = chunked_digest(version.size, digests)
    key = packs.content_key(owner, version.durability, version.encryption, digest) if claim \
        else packs.unshared_content_key()
    found = chunk_store().find_blob(owner, key) if claim else None
    if found is not None:
        version.blob, version.claimed = found, True
        return
    version.blob = Blob(owner, key, chunk_id(version.version_id, 0), 0, version.size,
                        digest.hex(), version.version_id, version.size, version.encryption,
                        version.durability, created=time.time(),
                        chunk_count=version.chunk_count)
    version.new_blob = True


def _store_content(owner: str, version: NewVersion, data: bytes, claim: bool) -> None:
    """`version`'s chunks: none if the owner stores that content already (the version then
    reads those, see _stored_once), else `data` written now. What storing raises, it raises
    with nothing kept."""
    _stored_once(owner, version, chunk_digests(data), claim)
    if version.claimed:
        version.own_chunks = False          # stored before: nothing to write
    elif version.chunk_count:
        version.intent = _begin_intent(owner, version)
        try:
            _store_chunks(owner, version.version_id, data, version.durability,
                          version.encryption)
        except BaseException:
            _end_intent(version)
            raise


# How long a one-request upload's chunks may wait for its attach before the sweep counts the
# server as stopped and frees them: far beyond any one request (API Gateway ends one at 29 s,
# Lambda at 15 min). An attach later than that fails (409 upload_aborted), keeping nothing.
INTENT_SECONDS = 3600


def _begin_intent(owner: str, version: NewVersion) -> Upload:
    """The record that lets the sweep free `version`'s chunks if its attach never comes."""
    expires_at = int(time.time()) + INTENT_SECONDS
    record = Upload(owner, os.urandom(12).hex(), directory="", name="", size=version.size,
                    chunk_size=CHUNK_SIZE, content_type=version.content_type,
                    durability=version.durability, encryption=version.encryption,
                    version_id=version.version_id, created=tree.now(), expires_at=expires_at,
                    purge_at=expires_at + UPLOAD_PURGE_GRACE_SECONDS, intent=True)
    if not tree_store().create_upload(record):
        raise RuntimeError("a new upload id was drawn twice")   # 96 random bits
    return record


def _intent_commit(version: NewVersion) -> tuple:
    """For the attach's transaction: the intent holds once, and not after the sweep gave up
    on it. Marked duplicate if the version reads content stored before: its own chunks are
    then to be freed (by the sweep, if _free_duplicate does not)."""
    if version.intent is None:
        return ()
    return (tree_store().commit_operation(version.intent,
                                          duplicate=version.claimed and version.own_chunks),)


def _end_intent(version: NewVersion) -> None:
    """The version is attached (and its duplicate chunks freed) or discarded: the record goes.
    If this fails, the sweep forgets it (committed) or frees the chunks again (not)."""
    if version.intent is None:
        return
    try:
        tree_store().drop_intent(version.intent)
    except errors.ApiError as exc:
        log.warning("upload of version %s: its record was not dropped: %s",
                    version.version_id, exc.message)
    version.intent = None


def _attached(owner: str, version: NewVersion) -> None:
    """After the attach: the version's own copy goes if it reads content stored before, and
    the record of its chunks goes."""
    _free_duplicate(owner, version)
    _end_intent(version)
    if version.claimed and version.blob is not None:
        trash.claimed_from_trash(owner, version.blob)


def _free_duplicate(owner: str, version: NewVersion) -> None:
    """An attached version that reads content stored before lets its own copy go."""
    if version.own_pack is not None:
        try:
            packs.release_now(owner, version.own_pack.chunk_id, version.own_pack.length)
        except errors.ApiError as exc:
            # Counted in its pack until the pack's check (compaction) finds no file using it.
            log.warning("version %s: its packed copy of content stored before was not "
                        "released: %s", version.version_id, exc.message)
        version.own_pack = version.own_blob = None
    if version.claimed and version.own_chunks and version.pack is None:
        try:
            _free_chunks(owner, version.version_id, version.chunk_count)
        except errors.ApiError as exc:
            log.warning("version %s: its copy of content stored before was not freed: %s",
                        version.version_id, exc.message)


def _store_chunks(owner: str, version_id: str, data: bytes, durability: str,
                  encryption: str) -> int:
    count = max(1, math.ceil(len(data) / CHUNK_SIZE)) if data else 0
    view = memoryview(data)
    futures = [_parallel.submit(store.put_chunk, owner, bytes(view[i * CHUNK_SIZE:
                                                                   (i + 1) * CHUNK_SIZE]),
                                encryption, durability, chunk_id(version_id, i))
               for i in range(count)]
    problems = []
    for future in futures:
        try:
            future.result()
        except errors.ApiError as exc:
            problems.append(exc)
    if problems:
        _free_chunks(owner, version_id, count)
        raise problems[0]
    return count


def _free_chunks(owner: str, version_id: str, count: int,
                 deadline: float = float("inf")) -> bool:
    """False if the deadline came first (freeing again later skips what is gone). The chunks
    go several at once: a 256 MiB file is 64 of them, each a record and a delete per share."""
    def free(index: int) -> bool:
        if time.monotonic() > deadline:
            return False
        try:
            store.delete_chunk(owner, chunk_id(version_id, index))
        except errors.NotFound:
            pass
        return True

    if count <= 1:
        return all(free(index) for index in range(count))
    return all(list(_parallel.map(free, range(count))))


def upload(owner: str, directory: str, name: str, data: bytes, content_type: str | None,
           durability: str | None, encryption: str | None, mtime=None,
           base: Node | None = None) -> Node:
    """`directory` is a path from the owner's root, or from `base` (the top of a share the
    caller writes into: the file is the owner's, on the owner's storages and quota)."""
    tree.check_name(name)
    mtime = check_mtime(mtime)
    started = tree.now()
    durability, encryption = _schemes(owner, durability, encryption)
    # The whole file up front (a clear 413 before any chunk); each chunk is charged as stored.
    quota.check_room(owner, len(data))
    parent, _ = tree.make_dirs(owner, directory, base)
    digest = hashlib.sha256(data).hexdigest()
    version = NewVersion(new_version_id(), len(data), math.ceil(len(data) / CHUNK_SIZE),
                         digest, f'"{digest[:32]}"', guess_type(name, content_type), durability,
                         encryption, mtime)
    try:
        _store_content(owner, version, data, claim=base is None)
        node = _attach_version(owner, parent, name, version,
                               own_copy=lambda v: _store_own(owner, v, data))
    except _AlsoFailed:
        _discard_new(owner, version)
        raise _gave_up() from None
    except Exception:
        _discard_new(owner, version)
        raise
    _attached(owner, version)
    _deleted_meanwhile(owner, [node], since=started)
    return node


def _store_own(owner: str, version: NewVersion, data: bytes) -> None:
    """`version`'s own chunks after all: the content it was to read went before its attach."""
    version.own_chunks = True
    _store_content(owner, version, data, claim=False)


def _gave_up() -> errors.Conflict:
    return errors.Conflict(f"This upload took over {INTENT_SECONDS} s to be stored, and its "
                           f"chunks were freed; upload the file again.", code="upload_aborted")


def _node_content(version: NewVersion) -> dict:
    return {"version_id": version.version_id, "size": version.size, "sha256": version.sha256,
            "etag": version.etag, "content_type": version.content_type,
            "durability": version.durability, "encryption": version.encryption}


def _new_file(owner: str, parent: Node, name: str, version: NewVersion, stamp: float
              ) -> tuple[Node, Version, tuple]:
    """The records of `version` as a new file `name` in `parent`: node, version, and what the
    same transaction must do besides (register its content; a claim of content stored
    before is the caller's, one for every file of a transaction that reads it)."""
    content = _node_content(version)
    node_id = tree.new_node_id()
    modified = version.mtime if version.mtime is not None else stamp
    record = Version(owner, node_id, chunk_size=CHUNK_SIZE, chunk_count=version.chunk_count,
                     created=stamp, **content, **_content_fields(version))
    along = (chunk_store().new_blob_operation(version.blob),) if version.new_blob else ()
    return (Node(owner, node_id, FILE, name, parent.node_id, created=stamp, modified=modified,
                 **content), record, along + _intent_commit(version))


def _content_operations(version: NewVersion) -> tuple:
    """What the attach's transaction does for the content: register it, or claim it."""
    if version.new_blob:
        return (chunk_store().new_blob_operation(version.blob),)
    if version.claimed:
        return (chunk_store().claim_operation(version.blob),)
    return ()


def _attach_new_files(owner: str, parent: Node, named: dict[int, tuple[str, NewVersion]]
                      ) -> dict[int, Node]:
    """Many new files at once (a batch's names not taken yet), in as few transactions as the
    engine takes; a transaction that fails (a name taken meanwhile, content registered
    meanwhile) writes nothing, and its files are left to `_attach_version` one by one."""
    stamp, made = tree.now(), {}
    taken = tree_store().taken_names(owner, parent.node_id,
                                     [name for name, _ in named.values()])
    fresh = [(i, *_new_file(owner, parent, name, version, stamp))
             for i, (name, version) in named.items() if name not in taken]
    groups: list[list] = []
    claims: list[dict[str, tuple[Blob, int]]] = []
    registered: list[set[str]] = []
    room = 0
    for entry in fresh:
        version = named[entry[0]][1]
        key = version.blob.content_key if version.blob is not None else None
        cost = NEW_FILE_WRITES + len(entry[3]) + (1 if version.claimed else 0)
        if not groups or cost > room:
            groups.append([])
            claims.append({})
            registered.append(set())
            room = tree_store().TRANSACTION_OPERATIONS
        # DynamoDB takes one write an item in a transaction: a content is claimed once for
        # all the files that read it there, and one registered there is neither claimed nor
        # registered again in it (such a file is attached on its own, and then reads it).
        if version.new_blob and (key in registered[-1] or key in claims[-1]) or \
                version.claimed and key in registered[-1]:
            continue
        groups[-1].append(entry)
        room -= cost
        if version.new_blob:
            registered[-1].add(key)
        elif version.claimed:
            blob, count = claims[-1].get(key, (version.blob, 0))
            claims[-1][key] = (blob, count + 1)
    transactions = []
    for group, claimed in zip(groups, claims, strict=True):
        files = [(node, record, along) for _, node, record, along in group]
        node, record, along = files[0]
        files[0] = (node, record, along + tuple(
            chunk_store().claim_operation(blob, count) for blob, count in claimed.values()))
        transactions.append(files)
    written = tree_store().create_files(transactions)
    for group, ok in zip(groups, written, strict=True):
        if ok:
            made.update({i: node for i, node, _, _ in group})
    return made


class _AlsoFailed(Exception):
    """One of the operations the caller asked to write with the attach failed its condition;
    nothing was written."""


def _attach_version(owner: str, parent: Node, name: str, version: NewVersion,
                    also=None, own_copy=None) -> Node:
    """Make `version` the current content of `name` in `parent`: a new file, or a new version;
    `also(version)` (operations that must hold with it) in the same transaction, else
    _AlsoFailed. Content stored before that goes before the attach can claim it: the version
    falls back on its own copy, stored then by `own_copy(version)` if it has none (else the
    attach fails with 409 concurrent_change)."""
    trees = tree_store()
    stamp = tree.now()
    modified = version.mtime if version.mtime is not None else stamp
    content = _node_content(version)
    deadline = time.monotonic() + ATTACH_SECONDS
    attempt = 0
    while time.monotonic() < deadline:
        attempt += 1
        if attempt > 1:
            # Optimistic concurrency: back off with jitter so racing writers spread out.
            time.sleep(random.uniform(0.005, 0.02 * min(attempt, 10)))
        existing = tree.child(owner, parent.node_id, name)
        if existing is not None and existing.type != FILE:
            raise errors.Conflict(f"'{name}' is a directory; choose another name.",
                                  code="name_exists")
        node_id = existing.node_id if existing is not None else tree.new_node_id()
        record = Version(owner, node_id, chunk_size=CHUNK_SIZE,
                         chunk_count=version.chunk_count, created=stamp, **content,
                         **_content_fields(version))
        along = _content_operations(version)
        extra = _intent_commit(version) + (tuple(also(version)) if also is not None else ())
        try:
            if existing is None:
                return trees.create(Node(owner, node_id, FILE, name, parent.node_id,
                                         created=stamp, modified=modified, **content), record,
                                    along + extra)
            node = trees.get_node(owner, node_id)
            if node is None:
                continue          # deleted meanwhile: look again
            # Conditional on the node's revision: two uploads never clobber each other.
            return trees.set_version(node, record, modified, along + extra)
        except AlongFailed as failed:
            if failed.args[0] >= len(along):
                raise _AlsoFailed() from None
            found = chunk_store().find_blob(owner, version.blob.content_key)
            if version.claimed:
                # The content read before moved (compaction), or is being let go, or is gone.
                if found is not None:
                    _read_stored(version, found)
                else:
                    _use_own_copy(version, own_copy, name)
                continue
            # The same content was registered by another upload meanwhile: read that one (this
            # copy is let go once attached). While its last reader lets chunked content go,
            # keep this copy, not stored once; packed content is gone at once, so registering
            # this one is tried again.
            if found is not None:
                version.own_blob = version.blob
                version.own_pack = version.pack if not version.blob.chunked else None
                _read_stored(version, found)
            elif version.blob.chunked:
                version.blob, version.new_blob = None, False
        except TreeConflict:
            continue          # lost a race for this name: look again and retry
    raise errors.Conflict(f"'{name}' kept changing while it was being written; try again.",
                          code="concurrent_change")


def _read_stored(version: NewVersion, found: Blob) -> None:
    """`version` reads content the owner stores already, claimed by its attach."""
    version.blob, version.new_blob, version.claimed = found, False, True
    if not found.chunked:
        version.pack = packs.blob_place(found)


def _use_own_copy(version: NewVersion, own_copy, name: str) -> None:
    """The content `version` was to read went before its attach: its own copy instead."""
    version.claimed = False
    if version.own_blob is not None:          # kept: register it after all
        version.blob, version.new_blob = version.own_blob, True
        if version.own_pack is not None:
            version.pack = version.own_pack
        version.own_blob = version.own_pack = None
        return
    if own_copy is None:
        raise errors.Conflict(f"The content of '{name}' was deleted while it was being "
                              f"written; try again.", code="concurrent_change")
    version.blob = None
    own_copy(version)


def _content_fields(version: NewVersion) -> dict:
    blob = version.blob
    if blob is not None:
        if blob.chunked and blob.blob_id != version.version_id:
            return {"content_key": blob.content_key, "chunk_source": blob.blob_id}
        return {"content_key": blob.content_key}
    return pack_fields(version.pack) if version.pack is not None else {}


def pack_fields(where: packs.PackedBlob) -> dict:
    """A version's record of the blob that holds its content in place (see packed_blob)."""
    return {"pack_chunk": where.chunk_id, "pack_offset": where.offset,
            "pack_length": where.length, "blob_hash": where.blob_hash}


def _deleted_meanwhile(owner: str, nodes: list[Node], since: float) -> None:
    """The files this request made (created at `since` or later) or gave a new version, if
    their folder was deleted as they were written. Nothing makes a create wait on its folder
    (that would have every write into one folder contend on it), so a write and its folder's
    delete can pass each other: a folder deleted for good has its delete finished for them
    here (to the trash, deleted for good, freed like the rest of it); one in the trash has
    them counted in its trash item. The write's answer stands: it happened, then the delete."""
    made = [n for n in nodes if n.created >= since]
    # New versions of files already there count too in a folder in the trash; in one deleted
    # for good they go with their file, which the purge frees (or has, and then the version
    # found no file to land on).
    for parent_id in {n.parent_id for n in nodes}:
        state = trash.deleted_state(owner, parent_id)
        if state is None:
            continue
        if state != trash.FOR_GOOD:
            trash.recount(owner, state)
            continue
        for node in (n for n in made if n.parent_id == parent_id):
            doomed = trash.trash_late(owner, node)
            if doomed is not None:
                _purge(owner, doomed, time.monotonic() + DELETE_INLINE_SECONDS)


def _discard_new(owner: str, version: NewVersion) -> None:
    """Free what a version that never became a file's holds (content it was to read is not
    claimed before the attach: nothing to give back)."""
    if version.pack is not None and not version.claimed:
        packs.release_now(owner, version.pack.chunk_id, version.pack.length)
    if version.own_pack is not None:
        packs.release_now(owner, version.own_pack.chunk_id, version.own_pack.length)
        version.own_pack = None
    if version.own_chunks and version.pack is None:
        _free_chunks(owner, version.version_id, version.chunk_count)
    _end_intent(version)


# -- batches --------------------------------------------------------------------------------------

# A batch is one request, so its body is at most limits.ONE_SHOT_MAX_BYTES (Lambda's payload);
# the file count bounds the metadata writes one request makes within API Gateway's 29 s.
MAX_BATCH_FILES = 500


@dataclass
class BatchFile:
    name: str
    data: bytes
    content_type: str | None = None
    mtime: float | str | None = None


def _batch_too_large(what: str) -> errors.PayloadTooLarge:
    return errors.PayloadTooLarge(
        f"A batch holds at most {MAX_BATCH_FILES} files and {limits.ONE_SHOT_MAX_BYTES} bytes "
        f"in all; {what}. Send them in several batches (files larger than that in parts).",
        code="batch_too_large", details={"max_batch_files": MAX_BATCH_FILES,
                                         "max_batch_bytes": limits.ONE_SHOT_MAX_BYTES})


def check_batch_body(size: int) -> None:
    """A batch's request body fits one function invocation (Lambda's payload)."""
    if size > limits.ONE_SHOT_MAX_BYTES:
        raise _batch_too_large(f"this one has {size} bytes")


def set_mtimes(items: list[BatchFile], text: str | None,
               as_read=lambda name: name) -> None:
    """Each file's modification time from the batch's optional `mtimes` field (a JSON object
    of file name -> Unix seconds). A name no file of the batch has is refused, not ignored:
    it is a misspelling, and that file would be stored as modified now. `as_read(key)`: the
    name a part sent as `key` may have been read back as (a browser's escapes)."""
    mtimes = parse_mtimes(text)
    names = {item.name for item in items}
    for key in [k for k in mtimes if k not in names and as_read(k) in names]:
        mtimes.setdefault(as_read(key), mtimes.pop(key))
    stray = sorted(set(mtimes) - names)
    if stray:
        raise errors.BadRequest(f"Field 'mtimes' names '{errors.shown(stray[0])}', which is not "
                                f"the filename of any file in this batch; name each file as "
                                f"its 'file' part does.", code="mtimes_name_unknown",
                                details={"field": "mtimes"})
    for item in items:
        item.mtime = mtimes.get(item.name)


def parse_mtimes(text: str | None) -> dict:
    """The batch's optional `mtimes` field: a JSON object of file name -> Unix seconds."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):    # (the C parser stops cleanly at the limit)
        value = None
    if not isinstance(value, dict):
        raise errors.BadRequest("Field 'mtimes' must be a JSON object of file name to "
                                "modification time in Unix seconds, e.g. "
                                '{"a.txt": 1700000000.25}.', code="invalid_field",
                                details={"field": "mtimes"})
    return value


def upload_batch(owner: str, directory: str, items: list[BatchFile], durability: str | None,
                 encryption: str | None, base: Node | None = None
                 ) -> list[Node | errors.ApiError]:
    """Many files into one directory: per file its new node, or the error that failed it (a bad
    name, a directory of that name, ...) — never a part of a file. Small files share packs."""
    if not items:
        raise errors.BadRequest("Send at least one file part (named 'file', with a filename).",
                                code="missing_field", details={"field": "file"})
    if len(items) > MAX_BATCH_FILES:
        raise _batch_too_large(f"this one has {len(items)} files")
    results: list = [None] * len(items)
    started = tree.now()
    mtimes: dict[int, float | None] = {}
    seen: set[str] = set()
    for i, item in enumerate(items):
        try:
            tree.check_name(item.name)
            mtimes[i] = check_mtime(item.mtime, f"mtimes.{item.name}")
            if item.name in seen:
                raise errors.BadRequest(f"'{item.name}' is in this batch more than once; send "
                                        f"each name once.", code="duplicate_name")
            seen.add(item.name)
        except errors.ApiError as exc:
            results[i] = exc
    wanted = [i for i in range(len(items)) if results[i] is None]
    if not wanted:
        return results
    durability, encryption = _schemes(owner, durability, encryption)
    # Each file its own answer (207), a quota too full for some of them included.
    for i, refusal in quota.too_big_alone(owner, {i: len(items[i].data) for i in wanted}).items():
        results[i] = refusal
    wanted = [i for i in wanted if results[i] is None]
    if not wanted:
        return results
    parent, _ = tree.make_dirs(owner, directory, base)
    made: dict[int, NewVersion] = {}

    digests = {i: hashlib.sha256(items[i].data).digest() for i in wanted}

    def version_of(i: int, version_id: str, count: int, pack) -> NewVersion:
        item = items[i]
        digest = digests[i].hex()
        return NewVersion(version_id, len(item.data), count, digest, f'"{digest[:32]}"',
                          guess_type(item.name, item.content_type), durability, encryption,
                          mtimes[i], pack)

    def own_copy(i: int, version: NewVersion) -> None:
        """File i's own copy: the content it was to read went before its attach."""
        if version.chunk_count:
            _store_own(owner, version, items[i].data)
            return
        [where] = packs.write_pack(owner, [(version.version_id, items[i].data)], encryption,
                                   durability)
        _packed_anew(owner, version, keys[i], where)

    def attach_all(made: dict[int, NewVersion]) -> None:
        pending = dict(sorted(made.items()))
        for i, node in _attach_new_files(owner, parent, {
                i: (items[i].name, v) for i, v in pending.items()}).items():
            results[i] = node
            del pending[i]
        try:
            for i, version in list(pending.items()):
                try:
                    results[i] = _attach_version(owner, parent, items[i].name, version,
                                                 own_copy=lambda v, i=i: own_copy(i, v))
                except errors.ApiError as exc:
                    _discard_new(owner, version)
                    results[i] = exc
                except _AlsoFailed:
                    _discard_new(owner, version)
                    results[i] = _gave_up()
                del pending[i]
        finally:
            for version in pending.values():     # an unexpected failure: nothing half-kept
                _discard_new(owner, version)
        for i, version in made.items():
            if not isinstance(results[i], errors.ApiError):
                _attached(owner, version)

    small = [i for i in wanted if packs.packable(len(items[i].data))]
    keys = dict(zip(small, packs.content_keys(owner, durability, encryption,
                                              [digests[i] for i in small])
                    if base is None else [packs.unshared_content_key() for _ in small],
                    strict=True))
    # Small files: content the owner has stored already is claimed, not stored again; each new
    # content is written once, into packs. Files repeating a content new in this batch wait
    # for the first one's attach (which registers it) and then claim it.
    # Written through a share (`base`) by another user, content is always written, under names
    # of its own: whether the owner stores it already must not show in how the upload goes.
    made, repeats = _small_versions(owner, small, keys, items, results, version_of,
                                    encryption, durability, first_round=True,
                                    claim=base is None)
    for i in wanted:
        if i in small:
            continue
        data = items[i].data
        version = version_of(i, new_version_id(), math.ceil(len(data) / CHUNK_SIZE), None)
        try:
            _store_content(owner, version, data, claim=base is None)
        except errors.ApiError as exc:
            results[i] = exc
            continue
        made[i] = version
    attach_all(made)
    if repeats:
        made, _ = _small_versions(owner, repeats, keys, items, results, version_of, encryption,
                                  durability, first_round=False, claim=True)
        attach_all(made)
    _deleted_meanwhile(owner, [r for r in results if isinstance(r, Node)], since=started)
    return results


def _small_versions(owner: str, small: list[int], keys: dict[int, str], items: list,
                    results: list, version_of, encryption: str, durability: str,
                    first_round: bool, claim: bool) -> tuple[dict[int, NewVersion], list[int]]:
    """New versions of the small files `small`: claimed blobs, or blobs written into packs.
    In the first round a content repeated within the batch is written once and its repeats
    are returned for a second round; in that one each is claimed or written anyway."""
    chunks = chunk_store()
    made: dict[int, NewVersion] = {}
    to_write: list[int] = []
    writing: set[str] = set()
    repeats: list[int] = []
    # Contents the owner stores already (one batched read; most small files are new content),
    # claimed by the transactions that attach their files.
    claimed = chunks.find_blobs(owner, [keys[i] for i in small]) if claim else {}
    for i in small:
        blob = claimed.get(keys[i])
        if blob is not None:
            made[i] = version_of(i, new_version_id(), 0, packs.blob_place(blob))
            made[i].blob, made[i].claimed = blob, True
        elif first_round and keys[i] in writing:
            repeats.append(i)
        else:
            writing.add(keys[i])
            to_write.append(i)
    encrypted = codec.parse_encryption(encryption).encrypted
    def write(members: list[int]) -> None:
        ids = {i: new_version_id() for i in members}
        try:
            placed = packs.write_pack(owner, [(ids[i], items[i].data) for i in members],
                                      encryption, durability)
        except errors.ApiError as exc:
            if len(members) > 1 and (exc.status in _ROOM_STATUSES or (
                    exc.code == "not_enough_storages" and (exc.details or {}).get("full"))):
                # No room for the whole pack (full storages, the quota): smaller ones may fit,
                # so each file that fits is stored and only those that do not fail.
                half = len(members) // 2
                write(members[:half])
                write(members[half:])
                return
            for i in members:
                results[i] = exc
            return
        for i, where in zip(members, placed, strict=True):
            made[i] = version_of(i, ids[i], 0, where)
            _packed_anew(owner, made[i], keys[i], where)

    for group in packs.groups([len(items[i].data) for i in to_write], encrypted):
        write([to_write[g] for g in group])
    return made, repeats


# What a pack too large for the room left answers besides placement's "full" storages (422):
# a storage that filled meanwhile (507), over the quota (413).
_ROOM_STATUSES = frozenset({507, 413})


def _packed_anew(owner: str, version: NewVersion, content_key: str,
                 where: packs.PackedBlob) -> None:
    """`version` reads the blob just written for it at `where`, registered by its attach as
    the owner's content `content_key`."""
    version.pack = where
    version.blob = Blob(owner, content_key, where.chunk_id, where.offset, where.length,
                        where.blob_hash, version.version_id, version.size, version.encryption,
                        version.durability, created=time.time())
    version.new_blob = True


# -- upload sessions --------------------------------------------------------------------------

@dataclass(frozen=True)
class SessionHolder:
    """Who may use an upload session: its owner in their own tree (the default), or one of a
    share's recipients through that share (`base`, its shared folder, where paths start). A
    session is found only by the holder that opened it: another recipient, the owner, or the
    same recipient through another share gets 404 upload_not_found."""
    uploader: str | None = None
    share_id: str | None = None
    base: Node | None = None

    def holds(self, record: Upload) -> bool:
        return (record.uploader, record.share_id) == (self.uploader, self.share_id)


OWNER_SESSION = SessionHolder()


class _Recipients(SessionHolder):
    """The owner looking at the sessions recipients opened in the owner's tree through shares
    (their parts count in the owner's stored bytes): to list them and abort them, as a revoke
    of their share would, without revoking it. Not to send parts or commit."""

    def holds(self, record: Upload) -> bool:
        return record.uploader is not None


RECIPIENTS = _Recipients()


def create_session(owner: str, directory: str, name: str, size, content_type: str | None,
                   durability: str | None, encryption: str | None, sha256: str | None,
                   holder: SessionHolder = OWNER_SESSION,
                   upload_id: str | None = None) -> tuple[dict, bool]:
    """(the session, whether it is new). `upload_id`, chosen by the client, makes the request
    safe to send again: a session of that id the holder opened already for the same path, name
    and size is answered as it is (its answer may have been lost on the way), any other is
    409 `upload_id_taken`."""
    tree.check_name(name)
    if upload_id is not None:
        if not isinstance(upload_id, str) or not UPLOAD_ID_PATTERN.fullmatch(upload_id):
            raise errors.BadRequest("Field 'upload_id' must be 24 lowercase hex digits (12 "
                                    "random bytes).", code="invalid_field",
                                    details={"field": "upload_id"})
        opened = _opened_before(owner, upload_id, directory, name, size, holder,
                                _asked(name, content_type, durability, encryption, sha256))
        if opened is not None:
            return opened, False
    if content_type not in (None, "") and media_type(content_type) is None:
        raise errors.BadRequest("Field 'content_type' must be a media type such as "
                                "'image/jpeg' (type/subtype; no spaces, line breaks or other "
                                "control characters).", code="invalid_field",
                                details={"field": "content_type"})
    # A file on the way, or a folder of the file's name, is said now, not after every part has
    # been sent; missing folders are made at the commit (the path is taken as it is then).
    directory_id = tree.check_dirs(owner, directory, holder.base)
    existing = tree.child(owner, directory_id, name) if directory_id else None
    if existing is not None and existing.type != FILE:
        raise errors.Conflict(f"'{name}' is a directory; choose another name.",
                              code="name_exists")
    largest = quota.max_file_bytes()
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise errors.BadRequest("Field 'size' must be the file's size in bytes.",
                                code="invalid_field", details={"field": "size"})
    if size > largest:
        raise errors.PayloadTooLarge(f"Files are at most {largest} bytes here; this one "
                                     f"declares {size}.", code="file_too_large",
                                     details={"field": "size", "max_file_bytes": largest})
    sha256 = _check_sha256(sha256)
    durability, encryption = _schemes(owner, durability, encryption)
    if holder.uploader is None:
        # Said before any part is sent. Not through a share: a declared size costs nothing to
        # send, so a recipient could search for the size that just fits and learn the owner's
        # free quota to the byte. There the parts are charged as they are stored, and the one
        # that does not fit is refused (quota_exceeded), after its 4 MiB were sent.
        quota.check_room(owner, size)
    expires_at = int(time.time()) + _upload_ttl()
    record = Upload(owner, upload_id or os.urandom(12).hex(), directory=directory, name=name,
                    size=size,
                    chunk_size=CHUNK_SIZE, content_type=guess_type(name, content_type),
                    durability=durability, encryption=encryption,
                    version_id=new_version_id(), created=tree.now(), expires_at=expires_at,
                    purge_at=expires_at + UPLOAD_PURGE_GRACE_SECONDS,
                    sha256=sha256, uploader=holder.uploader, share_id=holder.share_id)
    quota.open_upload(_counted_by(record))
    try:
        created = tree_store().create_upload(record)
    except BaseException:
        quota.close_upload(_counted_by(record))
        raise
    if not created:
        # The same id recorded meanwhile: the first of two sends of one request, or taken.
        quota.close_upload(_counted_by(record))
        opened = _opened_before(owner, record.upload_id, directory, name, size, holder,
                                _asked(name, content_type, durability, encryption, sha256))
        if opened is None:
            raise _upload_id_taken()
        return opened, False
    return session_info(record), True


def _asked(name: str, content_type, durability, encryption, sha256) -> dict:
    """What a session request asks for beyond its path and size, as its session records it
    (only what the request names: a default it leaves to the server may have changed since
    the session opened). A value that cannot be read is left out: a new session refuses it."""
    asked = {}
    try:
        if content_type not in (None, ""):
            asked["content_type"] = guess_type(name, content_type)
        if durability:
            asked["durability"] = str(codec.parse_durability(durability))
        if encryption:
            asked["encryption"] = str(codec.parse_encryption(encryption))
        if sha256 is not None:
            asked["sha256"] = _check_sha256(sha256)
    except (codec.CodecError, errors.ApiError, TypeError, ValueError):
        pass
    return asked


def _opened_before(owner: str, upload_id: str, directory: str, name: str, size,
                   holder: SessionHolder, asked: dict) -> dict | None:
    """The session `upload_id` if the holder opened it for this file as `asked` (None: there
    is none); 409 if the id is another's, another file's, one asked for otherwise (another
    type, durability, encryption or sha256: sent again, a request is the same request), or a
    session that ended."""
    record = tree_store().get_upload(owner, upload_id)
    if record is None:
        return None
    if record.aborted or record.intent or not holder.holds(record) or \
            record.expires_at < time.time() or \
            (record.directory, record.name, int(record.size)) != (directory, name, size) or \
            any(getattr(record, field) != value for field, value in asked.items()):
        raise _upload_id_taken()
    return session_info(record)


def _upload_id_taken() -> errors.ApiError:
    return errors.Conflict("This upload_id names another upload session; choose another "
                           "(12 new random bytes).", code="upload_id_taken",
                           details={"field": "upload_id"})


def _counted_by(record: Upload) -> str:
    """Whose open sessions `record` counts among (max_open_uploads): its uploader's. A share's
    recipient keeping sessions open uses up their own allowance, not the owner's (the owner
    could neither see nor abort those)."""
    return record.uploader or record.owner


def list_sessions(owner: str, holder: SessionHolder = OWNER_SESSION) -> list[dict]:
    """The holder's open sessions in `owner`'s tree, oldest first: what `session_info` says of
    each but the parts (a client resuming one asks for it)."""
    now = time.time()
    found = [record for record in tree_store().open_uploads(owner)
             if holder.holds(record) and record.expires_at >= now]
    found.sort(key=lambda record: (record.created, record.upload_id))
    return [{"upload_id": record.upload_id, "path": record.directory, "name": record.name,
             "size": int(record.size), "part_size": int(record.chunk_size),
             "parts": _parts_total(record), "created": tree.iso(record.created),
             "expires_at": int(record.expires_at),
             # (A recipient's, listed to the owner: the share it came through; its path is
             # inside that share's folder.)
             **({"share_id": record.share_id} if holder is RECIPIENTS else {})}
            for record in found]


def _check_sha256(value) -> str | None:
    if value is not None and (not isinstance(value, str) or len(value) != 64 or
                              any(c not in "0123456789abcdef" for c in value.lower())):
        raise errors.BadRequest("Field 'sha256' must be 64 hex digits.", code="invalid_field",
                                details={"field": "sha256"})
    return value.lower() if value else None


def _parts_total(record: Upload) -> int:
    return math.ceil(int(record.size) / int(record.chunk_size)) if record.size else 0


def _expected_part_size(record: Upload, part: int) -> int:
    total = _parts_total(record)
    if part == total - 1:
        return int(record.size) - part * int(record.chunk_size)
    return int(record.chunk_size)


def get_session(owner: str, upload_id: str, holder: SessionHolder = OWNER_SESSION) -> Upload:
    record = tree_store().get_upload(owner, upload_id) if isinstance(upload_id, str) and \
        0 < len(upload_id) <= 64 else None
    if record is None or record.aborted or record.intent or not holder.holds(record):
        raise errors.NotFound(f"No upload session {errors.shown(upload_id)}.",
                              code="upload_not_found")
    if record.expires_at < time.time():
        raise errors.Gone(f"Upload session {upload_id} has expired; start a new one.",
                          code="upload_expired")
    return record


def _received(owner: str, upload_id: str) -> dict[int, UploadPart]:
    """The parts whose chunk is stored."""
    return {n: p for n, p in tree_store().parts(owner, upload_id).items() if not p.pending}


def session_info(record: Upload) -> dict:
    received = _received(record.owner, record.upload_id)
    total = _parts_total(record)
    return {"upload_id": record.upload_id, "path": record.directory, "name": record.name,
            "size": int(record.size), "part_size": int(record.chunk_size), "parts": total,
            "received": sorted(received), "missing": [p for p in range(total)
                                                     if p not in received],
            # What each received part holds, so a client resuming can check that its file
            # still has those bytes there before it leaves them out.
            "part_sha256": {str(p): received[p].sha256 for p in sorted(received)},
            "durability": record.durability, "encryption": record.encryption,
            "committed": bool(record.committed),
            "expires_at": int(record.expires_at)}


def put_part(owner: str, upload_id: str, part: int, data: bytes,
             holder: SessionHolder = OWNER_SESSION) -> dict:
    record = get_session(owner, upload_id, holder)
    if record.committed:
        raise errors.Conflict("This upload is committed already.", code="upload_committed")
    total = _parts_total(record)
    if part < 0 or part >= total:
        raise errors.BadRequest(f"Part numbers of this upload are 0 to {total - 1}." if total
                                else "This upload is of an empty file: it has no parts; "
                                     "commit it as it is.", code="invalid_part")
    expected = _expected_part_size(record, part)
    if len(data) != expected:
        raise errors.BadRequest(f"Part {part} must be exactly {expected} bytes; got "
                                f"{len(data)}.", code="invalid_part_size")
    digest = hashlib.sha256(data).hexdigest()
    trees = tree_store()
    previous = trees.get_part(owner, upload_id, part)
    if previous is not None and not previous.pending and previous.sha256 == digest:
        return {"part": part, "size": len(data), "sha256": digest, "stored": "already"}
    cid = chunk_id(record.version_id, part)
    if previous is not None:
        # A different body for a part already received (or one whose request died): the newer
        # one wins, but only before the commit. Reopened first, the part cannot be committed
        # with its old hash over its new bytes (nor be missing under a committed file).
        try:
            trees.reopen_part(record, part)
        except Changed:
            raise errors.Conflict("This upload is committed (or aborted) already; its parts "
                                  "cannot change now.", code="upload_committed") from None
        try:
            store.delete_chunk(owner, cid)
        except errors.NotFound:
            pass
    else:
        # Recorded first, so an abort or the sweep frees this chunk even if this request dies
        # after storing it: they free recorded parts only, never scan every part number.
        trees.put_part(UploadPart(owner, upload_id, part, len(data), digest,
                                  record.expires_at, record.purge_at, pending=True))
    try:
        store.put_chunk(owner, data, record.encryption, record.durability, cid)
    except errors.Conflict:
        # Another request for this part stored its body first: the same body (a retry), whose
        # record follows below, or another one, which this request cannot vouch for.
        if hashlib.sha256(store.get_chunk(owner, cid)).hexdigest() != digest:
            raise errors.Conflict(f"Part {part} was being sent by another request at the same "
                                  f"moment, with other bytes; send it again.",
                                  code="part_in_progress") from None
    trees.put_part(UploadPart(owner, upload_id, part, len(data), digest,
                              record.expires_at, record.purge_at))
    return {"part": part, "size": len(data), "sha256": digest, "stored": "now"}


def commit_session(owner: str, upload_id: str, mtime=None, sha256=None,
                   holder: SessionHolder = OWNER_SESSION) -> Node:
    """`sha256`: the file's, if the client knows it only now (hashed while sending parts);
    it must agree with one declared at the start, and with the content of a one-part file."""
    mtime = check_mtime(mtime)
    started = tree.now()
    declared = _check_sha256(sha256)
    record = get_session(owner, upload_id, holder)
    if record.committed:
        raise errors.Conflict("This upload is committed already.", code="upload_committed")
    received = _received(owner, upload_id)
    total = _parts_total(record)
    missing = [p for p in range(total) if p not in received]
    if missing:
        shown = ", ".join(map(str, missing[:20])) + ("…" if len(missing) > 20 else "")
        raise errors.Conflict(f"{'Part' if len(missing) == 1 else 'Parts'} {shown} "
                              f"{'has' if len(missing) == 1 else 'have'} not arrived yet; upload "
                              f"{'it' if len(missing) == 1 else 'them'}, then commit.",
                              code="parts_missing", details={"missing": missing[:1000]})
    # Without every byte at hand, the content hash is the client's declaration; the ETag is
    # always ours: a hash of the parts' hashes, as S3 multipart ETags are.
    parts_hash = hashlib.sha256("".join(received[p].sha256 for p in range(total)).encode())
    etag = f'"{parts_hash.hexdigest()[:32]}-{total}"'
    sha256 = record.sha256
    if total <= 1:
        # All the bytes are one part: the content's own hash, which a declaration (at the
        # start or now) must match.
        sha256 = received[0].sha256 if total == 1 else hashlib.sha256(b"").hexdigest()
        if record.sha256 is not None and record.sha256 != sha256:
            raise errors.Conflict(f"The SHA-256 declared when this upload started "
                                  f"({record.sha256}) is not its content's ({sha256}).",
                                  code="sha256_mismatch", details={"field": "sha256"})
    if declared is not None and sha256 is not None and declared != sha256:
        raise errors.Conflict(f"Field 'sha256' ({declared}) is not the file's "
                              f"{'content' if total <= 1 else 'declared'} SHA-256 ({sha256}).",
                              code="sha256_mismatch", details={"field": "sha256"})
    sha256 = sha256 or declared
    # The parts' chunks are the session's until the commit makes them the file's (or, for
    # content the owner stores already, frees them).
    version = NewVersion(record.version_id, int(record.size), total, sha256, etag,
                         record.content_type, record.durability, record.encryption, mtime,
                         own_chunks=False)
    parent, _ = tree.make_dirs(owner, record.directory, holder.base)
    digests = [bytes.fromhex(received[p].sha256) for p in range(total)]
    # Through a share, whether the owner stores this content already must not change how the
    # commit goes (as for a one-request upload there): nothing is looked up.
    _stored_once(owner, version, digests, claim=holder.uploader is None)
    # The file appears and the session is marked committed in one transaction: an abort (or
    # the expiry sweep) that came first stops the commit, and one that comes after cannot free
    # the parts' chunks under the file.
    try:
        node = _attach_version(owner, parent, record.name, version, also=lambda v: (
            tree_store().commit_operation(record, duplicate=v.claimed),),
            own_copy=lambda v: _stored_once(owner, v, digests, claim=False))
    except _AlsoFailed:
        _discard_new(owner, version)
        now = tree_store().get_upload(owner, upload_id)
        if now is not None and not now.committed and not now.aborted:
            # Its parts' revision moved: a part got another body since they were read.
            raise errors.Conflict("A part of this upload was sent again while it was being "
                                  "committed; commit again once every part is in.",
                                  code="parts_changed") from None
        if now is None or not now.committed:
            raise errors.Conflict("This upload was aborted (or expired) while it was being "
                                  "committed; upload the file again.",
                                  code="upload_aborted") from None
        # A concurrent commit of the same session made the file: the same file and version.
        entry = tree.child(owner, parent.node_id, record.name)
        made = tree_store().get_node(owner, entry.node_id) if entry is not None else None
        if made is None or made.version_id != record.version_id:
            raise errors.Conflict("This upload was committed by another request, and its "
                                  "file was moved or deleted since.",
                                  code="upload_committed") from None
        return made
    except Exception:
        _discard_new(owner, version)
        raise
    quota.close_upload(_counted_by(record))
    if version.claimed:
        trash.claimed_from_trash(owner, version.blob)
        # The file reads content stored before; the parts' copy goes now (or, if this does
        # not finish, with the session in the sweep: it is marked duplicate).
        try:
            _free_chunks(owner, record.version_id, total)
        except errors.ApiError as exc:
            log.warning("upload %s: the parts of content stored before were not freed yet: %s",
                        upload_id, exc.message)
    _deleted_meanwhile(owner, [node], since=started)
    return node


def abort_session(owner: str, upload_id: str, holder: SessionHolder = OWNER_SESSION) -> None:
    """Answers at once whatever the session holds: it is marked aborted (gone for its owner,
    no longer counted as open) and the scheduled sweep frees its parts' chunks."""
    record = get_session(owner, upload_id, holder)
    if record.committed:
        raise errors.Conflict("This upload is committed; delete the file instead.",
                              code="upload_committed")
    _close(record)


def abort_sessions_through(owner: str, share_id: str) -> int:
    """Abort the sessions recipients opened through the share `share_id` (revoked): they can
    no longer be used, and their parts, which count in the owner's stored bytes, are freed by
    the sweep now instead of when they expire. How many were aborted."""
    aborted = 0
    for record in tree_store().open_uploads(owner):
        if record.share_id == share_id:
            try:
                _close(record)
                aborted += 1
            except errors.Conflict:
                pass                # committed meanwhile: the file is there, the share was not
            except Exception:       # noqa: BLE001 - the share is revoked already; this one
                # can no longer be used, and it expires with its parts as any session does
                log.warning("upload %s: not aborted with its revoked share", record.upload_id,
                            exc_info=True)
    return aborted


def _close(record: Upload) -> None:
    """Abort an uncommitted session once (a racing commit or abort wins otherwise)."""
    try:
        tree_store().mark_aborted(record, int(time.time()))
    except Changed:
        current = tree_store().get_upload(record.owner, record.upload_id)
        if current is not None and current.committed:
            raise errors.Conflict("This upload was committed meanwhile; delete the file "
                                  "instead.", code="upload_committed") from None
        return          # aborted (or forgotten) by someone else: done
    if not record.intent:           # a one-request upload was never counted as open
        quota.close_upload(_counted_by(record))


def _discard(record: Upload, deadline: float) -> bool:
    """Free the chunks of an uncommitted session's recorded parts (a one-request upload's:
    every chunk of its size), then forget the session; False if the deadline came first (the
    next sweep continues)."""
    owner = record.owner
    chunks = range(math.ceil(record.size / record.chunk_size)) if record.intent else \
        tree_store().parts(owner, record.upload_id)
    for part in chunks:
        if time.monotonic() > deadline:
            return False
        try:
            store.delete_chunk(owner, chunk_id(record.version_id, part))
        except errors.NotFound:
            pass
    _forget(record)
    return True


def _forget(record: Upload) -> None:
    tree_store().forget_upload(record)


def sweep_expired_uploads(budget_seconds: float = 600.0) -> dict:
    """The scheduled sweep: sessions past their expiry free the chunks of the parts they got
    (their bytes belong to no file) and are forgotten; committed ones are only forgotten, since
    their chunks are the file's now. Across all users; stops when the budget is spent."""
    deadline = time.monotonic() + budget_seconds
    # A part accepted just before expiry may still be storing its chunk (< 29 s, the gateway's
    # limit); leave each session that long after its expiry before sweeping it.
    cutoff = time.time() - min(60.0, _upload_ttl() / 10)
    discarded = forgotten = 0
    failed = []
    trees = tree_store()
    for found in trees.expired_uploads(before=int(cutoff)):
        if time.monotonic() > deadline:
            break
        # The index may lag behind a commit: act on the session as it is now.
        record = trees.get_upload(found.owner, found.upload_id)
        if record is None:
            continue
        try:
            if record.committed:
                # A duplicate's file reads content stored before: its parts' chunks go too.
                if not record.duplicate:
                    _forget(record)
                elif not _discard(record, deadline):
                    continue
                forgotten += 1
                continue
            if not record.aborted:
                _close(record)          # expired: no longer counted as open
                if record.intent:
                    # An attach that came after our read drops the record at once (the abort
                    # then finds nothing to abort): the chunks are a file's, leave them.
                    record = trees.get_upload(found.owner, found.upload_id)
                    if record is None or record.committed:
                        continue
            if _discard(record, deadline):
                discarded += 1
        except errors.ApiError as exc:
            failed.append(f"{record.upload_id}: {exc.message}")
    if failed:
        log.warning("upload sweep could not finish %d sessions: %s", len(failed), failed[:10])
    return {"discarded_sessions": discarded, "forgotten_sessions": forgotten,
            "failed": failed[:50]}


def _upload_ttl() -> int:
    return int(get_settings().upload_ttl_seconds)


# -- reading --------------------------------------------------------------------------------------

def _no_content(directory: Node) -> errors.BadRequest:
    named = "'/' (the root)" if directory.node_id == ROOT else f"'{directory.name}'"
    return errors.BadRequest(f"{named} is a directory; it has no content.", code="not_a_file")


def get_version(owner: str, node: Node, version_id: str | None) -> Version:
    if node.type != FILE:
        raise _no_content(node)
    wanted = version_id or node.version_id
    found = tree_store().get_version(owner, node.node_id, wanted) if wanted else None
    if found is None:
        raise errors.NotFound(f"No version {errors.shown(wanted)} of '{node.name}'.",
                              code="version_not_found")
    return found


# A file's info lists at most its newest this many versions (~280 KB of JSON), and says how
# many it has: the answer stays far below a response's 6 MB however often a file is replaced.
MAX_LISTED_VERSIONS = 1000


def versions(owner: str, node: Node) -> dict:
    """{"versions": the file's newest MAX_LISTED_VERSIONS versions, oldest first;
    "versions_total": how many it has}."""
    found = tree_store().list_versions(owner, node.node_id)
    found.sort(key=lambda v: (v.created, v.version_id))
    return {"versions": [describe_version(v, current=v.version_id == node.version_id)
                         for v in found[-MAX_LISTED_VERSIONS:]],
            "versions_total": len(found)}


def written_versions(owner: str, nodes: list[Node]) -> dict[str, Version | Node]:
    """Each file's current version, by node id, read together (one batched read): a file made
    by this write (its first revision) is described by its node, with no read at all."""
    written: dict[str, Version | Node] = {n.node_id: n for n in nodes if n.revision == 1}
    later = [(n.node_id, n.version_id) for n in nodes if n.revision != 1 and n.version_id]
    found = tree_store().get_versions(owner, later) if later else {}
    written.update({node_id: version for (node_id, _), version in found.items()})
    return written


def content_chunks(owner: str, version: Version) -> tuple[list[str], bool]:
    """The chunks that hold a version's content, in order (GET /api/chunk/{id}/info shows
    each one's shares), and whether that is a pack shared with other small files. Only this
    module knows: a small file lives in a pack, and content stored once in the chunks of the
    version that stored it first."""
    if version.chunk_count:
        source = version.chunk_source or version.version_id
        return [chunk_id(source, i) for i in range(int(version.chunk_count))], False
    if version.content_key:
        blob = chunk_store().get_blob(owner, version.content_key)
        return ([blob.chunk_id] if blob is not None else []), True
    if version.pack_chunk:
        return [version.pack_chunk], True
    return [], False


def describe_version(v: Version | Node, current: bool) -> dict:
    """One entry of `versions`; a node describes its current version (same fields)."""
    return {"version": v.version_id, "size": v.size, "sha256": v.sha256, "etag": v.etag,
            "created": tree.iso(v.created), "durability": v.durability,
            "encryption": v.encryption, "current": current}


def none_match(header: str | None, etag: str) -> bool:
    """Whether an If-None-Match header matches the current ETag (RFC 9110 13.1.2: '*', a list,
    weak comparison: W/"x" matches "x")."""
    if not header:
        return False
    if header.strip() == "*":
        return True

    def opaque(tag: str) -> str:            # weak comparison: the tag without its W/
        tag = tag.strip()
        return tag[2:] if tag.startswith("W/") else tag

    return opaque(etag) in {opaque(candidate) for candidate in header.split(",")}


def match(header: str | None, etag: str) -> bool:
    """Whether an If-Match header lets a read go on (RFC 9110 13.1.1: absent or '*', else a
    list holding the current ETag by strong comparison: a weak tag never matches). A reader
    of several ranges sends the first answer's ETag with the others, so that a file replaced
    between two of them is never served as a mix of two versions."""
    if header is None or header.strip() == "*":
        return True
    return etag in {candidate.strip() for candidate in header.split(",")}


# RFC 9110's byte ranges: ASCII digits only (int() also takes '+1', '٣' and '1_0').
_RANGE_SPEC = re.compile(r"([0-9]{0,18})-([0-9]{0,18})")


def range_applies(if_range: str | None, etag: str, last_modified: str,
                  date_names_one_version: Callable[[], bool] = lambda: True) -> bool:
    """Whether a Range is to be served, given the request's If-Range (RFC 9110 13.1.5):
    without one, yes; with one, only if it names the version being read (its ETag, or its
    Last-Modified date exactly, when no other version of the file has that date: dates are
    whole seconds, and two versions of one second would splice). Else the client's earlier
    bytes may be of another version, and the whole of this one is the answer, not a range to
    splice onto them."""
    if if_range is None:
        return True
    if_range = if_range.strip()
    if if_range.startswith(("W/", '"')):
        return if_range == etag               # a strong comparison: weak tags never match
    return if_range == last_modified and date_names_one_version()


def alone_in_its_second(owner: str, node: Node, version: Version) -> bool:
    """Whether no other version of the file was made in the same second as `version` (so its
    Last-Modified date names it alone)."""
    second = int(float(version.created))
    return not any(int(float(other.created)) == second and
                   other.version_id != version.version_id
                   for other in tree_store().list_versions(owner, node.node_id))


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) inclusive for a single 'bytes=' range; None for no Range header."""
    if not header:
        return None
    unit, equals, spec = header.partition("=")
    if not equals or unit.strip().lower() != "bytes":
        raise errors.BadRequest(f"Malformed Range header {header!r}: ranges are in bytes, like "
                                f"'bytes=0-1023'.", code="invalid_range")
    if "," in spec:
        raise errors.BadRequest("Only single ranges are supported, like 'bytes=0-1023'.",
                                code="invalid_range")
    match = _RANGE_SPEC.fullmatch(spec.strip())
    if match is None or match.group(1) == match.group(2) == "":
        raise errors.BadRequest(f"Malformed Range header {header!r}: give 'bytes=FIRST-LAST', "
                                f"'bytes=FIRST-' or 'bytes=-SUFFIX' in decimal digits.",
                                code="invalid_range")
    first_text, last_text = match.groups()
    if first_text == "":
        suffix = int(last_text)
        if suffix <= 0:
            raise errors.RangeNotSatisfiable("An empty suffix range selects nothing.",
                                             headers={"Content-Range": f"bytes */{size}"})
        first, last = max(0, size - suffix), size - 1
    else:
        first = int(first_text)
        last = int(last_text) if last_text else size - 1
        if last_text and last < first:
            raise errors.RangeNotSatisfiable(
                f"The range {header!r} is not valid: its last byte ({last}) comes before its "
                f"first ({first}).", headers={"Content-Range": f"bytes */{size}"})
    if first >= size:
        raise errors.RangeNotSatisfiable(f"The range {header!r} is outside the file's {size} "
                                         f"bytes.", headers={"Content-Range": f"bytes */{size}"})
    return first, min(last, size - 1)


def read(owner: str, version: Version, first: int, last: int) -> bytes:
    """Bytes first..last (inclusive) of a version, from the chunks that hold them. A version
    deleted while it was read is said as such (its chunks' absence is how the read meets it)."""
    try:
        return _read_range(owner, version, first, last)
    except errors.NotFound:
        if tree_store().get_version(owner, version.node_id, version.version_id) is None:
            raise errors.NotFound(f"Version {errors.shown(version.version_id)} was deleted "
                                  f"while it was read.", code="version_not_found") from None
        raise


def _read_range(owner: str, version: Version, first: int, last: int) -> bytes:
    if version.content_key and not version.chunk_count:
        return _read_content(owner, version)[first:last + 1]
    if version.pack_chunk:
        return _read_packed(owner, version)[first:last + 1]
    chunk_size = int(version.chunk_size)
    # Chunked content stored once: the chunks of the version that stored it.
    version_id = version.chunk_source or version.version_id
    indexes = range(first // chunk_size, last // chunk_size + 1)
    chunks = list(_parallel.map(lambda i: store.get_chunk(owner, chunk_id(version_id, i)),
                                indexes))
    joined = b"".join(chunks)
    offset = indexes[0] * chunk_size
    return joined[first - offset:last - offset + 1]


# A direct-read plan (local_read_plan) covers at most this many chunks (1 GiB), and no more
# than fit in this many bytes of JSON (a chunk of rs(10,4) takes ~3 KB, of raid1(2) ~700 B): a
# reader asks again for the rest, so no answer grows with the file, and each fits well in one
# line of the local transfer socket.
LOCAL_PLAN_MAX_CHUNKS = 256
LOCAL_PLAN_MAX_BYTES = 32 * 1024
LOCAL_PLAN_BATCH = 16


def local_read_plan(owner: str, version: Version, first: int, last: int) -> dict:
    """For a reader on the server's machine (GET /data?direct=1 through the local transfer
    socket): the chunks holding bytes first..last of a version, from the first, at most
    LOCAL_PLAN_MAX_CHUNKS and LOCAL_PLAN_MAX_BYTES (at least one), each with the bytes of the
    file it holds and how to read it without the server (store.local_reads; None: through the
    server). A version whose content is not in chunks of its own (a small file, packed) has no
    plan: it is read whole."""
    if not int(version.chunk_count or 0) or version.pack_chunk:
        raise errors.BadRequest("This file's content is not stored in chunks of its own (a "
                                "small file, packed with others); read it without 'direct'.",
                                code="not_chunked")
    chunk_size, size = int(version.chunk_size), int(version.size)
    source = version.chunk_source or version.version_id
    indexes = range(first // chunk_size,
                    min(last // chunk_size, first // chunk_size + LOCAL_PLAN_MAX_CHUNKS - 1) + 1)
    chunks: list[dict] = []

    def plan() -> dict:
        return {"version": version.version_id, "size": size, "sha256": version.sha256,
                "chunks": chunks}

    used = 0
    # In batches, so the chunks past the byte bound are neither read nor their keys unsealed.
    for start in range(0, len(indexes), LOCAL_PLAN_BATCH):
        batch = indexes[start:start + LOCAL_PLAN_BATCH]
        reads = store.local_reads(owner, [chunk_id(source, i) for i in batch])
        for i, read in zip(batch, reads, strict=True):
            chunk = {"offset": i * chunk_size, "size": min(chunk_size, size - i * chunk_size),
                     "read": read}
            used += len(json.dumps(chunk))
            if chunks and used > LOCAL_PLAN_MAX_BYTES:
                return plan()
            chunks.append(chunk)
    return plan()


# POST /api/filesystem/read: the current content of many small files (up to MAX_BATCH_FILES,
# each at most READ_BATCH_FILE_MAX: bigger ones are read by ranges) in one answer of at most
# MAX_RESPONSE_BYTES, framing included.
READ_BATCH_FILE_MAX = packs.PACK_THRESHOLD
# Its reads run here, apart from _parallel, which a chunked file's read uses inside them.
_batch_reads = ThreadPoolExecutor(max_workers=8, thread_name_prefix="file-reads")


def check_batch_readable(node: Node) -> None:
    """Raise the error a batch read gives this file, if it cannot be in one."""
    if node.type != FILE:
        raise _no_content(node)
    if int(node.size or 0) > READ_BATCH_FILE_MAX:
        raise errors.PayloadTooLarge(
            f"'{node.name}' is {node.size} bytes; files over {READ_BATCH_FILE_MAX} bytes are "
            f"read one by one (GET /api/filesystem/data/{{id}}, by ranges).",
            code="file_too_large_for_batch")


def read_current(owner: str, nodes: list[Node]) -> list[bytes | errors.ApiError]:
    """The content of each file's version the node names (a file that cannot be read: its
    error, in its place). Packed files are read a pack at a time, neighbours in one ranged
    read (packs.read_near_blobs), their records read together; what that cannot read, and
    every other file, is read alone as GET /data would, in parallel."""
    out: list = [None] * len(nodes)
    versions = tree_store().get_versions(owner, [(n.node_id, n.version_id) for n in nodes
                                                 if n.type == FILE and n.version_id])
    keys = {v.content_key for v in versions.values() if v.content_key and not v.chunk_count}
    stored = chunk_store().find_blobs(owner, list(keys)) if keys else {}
    by_pack: dict[tuple[str, bool], list] = {}
    alone: list[int] = []
    for index, node in enumerate(nodes):
        version = versions.get((node.node_id, node.version_id))
        blob = stored.get(version.content_key) if version and version.content_key else None
        if version is not None and blob is not None and not version.chunk_count \
                and not blob.chunked:
            place, blob_id = packs.blob_place(blob), blob.blob_id
        elif version is not None and version.pack_chunk and not version.content_key:
            place, blob_id = packed_blob(version), version.version_id
        else:
            alone.append(index)
            continue
        encrypted = codec.parse_encryption(version.encryption).encrypted
        by_pack.setdefault((place.chunk_id, encrypted), []).append(
            (index, version, blob_id, place))

    def one(index: int) -> None:
        try:
            version = get_version(owner, nodes[index], None)
            size = int(version.size)
            out[index] = read(owner, version, 0, size - 1) if size else b""
        except errors.ApiError as exc:
            out[index] = exc

    def pack(chunk_id: str, encrypted: bool, members: list) -> list[int]:
        """Fill in the pack's files; the indexes to read alone."""
        try:
            got = packs.read_near_blobs(owner, chunk_id, [(blob_id, place) for _, _, blob_id,
                                                          place in members], encrypted)
        except errors.ApiError:
            return [index for index, *_ in members]
        again = []
        for index, version, blob_id, _ in members:
            data = got.get(blob_id)
            try:
                if not isinstance(data, bytes):
                    raise errors.NotFound("Moved or unreadable in the pack.")
                out[index] = _as_written(version, data)
            except errors.ApiError:
                again.append(index)         # compaction moved it, or a bad copy: alone
        return again

    packed = [_batch_reads.submit(pack, chunk_id, encrypted, members)
              for (chunk_id, encrypted), members in by_pack.items()]
    for future in packed:
        alone += future.result()
    list(_batch_reads.map(one, alone))
    return out


def packed_blob(version: Version) -> packs.PackedBlob:
    return packs.PackedBlob(version.pack_chunk, int(version.pack_offset),
                            int(version.pack_length), version.blob_hash)


def _read_packed(owner: str, version: Version) -> bytes:
    while True:
        try:
            data = packs.read_blob(owner, version.version_id, packed_blob(version),
                                   codec.parse_encryption(version.encryption).encrypted)
            break
        except (errors.ApiError, codec.CodecError):
            # Compaction may have moved the blob (and freed its old pack) since the version
            # was read: read it from where it is now.
            now = tree_store().get_version(owner, version.node_id, version.version_id)
            if now is None or (now.pack_chunk, now.pack_offset) == (version.pack_chunk,
                                                                      version.pack_offset):
                raise
            version = now
    return _as_written(version, data)


def _as_written(version: Version, data: bytes) -> bytes:
    if version.sha256 and hashlib.sha256(data).hexdigest() != version.sha256:
        raise codec.IntegrityError(f"Version {version.version_id} read back with another "
                                   f"SHA-256 than it was written with.")
    return data


def _read_content(owner: str, version: Version) -> bytes:
    """A version whose content is stored once for the owner: read through its blob, which
    compaction may move meanwhile (then read from where it is now)."""
    chunks, seen = chunk_store(), None
    encrypted = codec.parse_encryption(version.encryption).encrypted
    while True:
        blob = chunks.get_blob(owner, version.content_key)
        if blob is None:
            if tree_store().get_version(owner, version.node_id, version.version_id) is None:
                # Deleted for good while it was being read (the blob went with it).
                raise errors.NotFound(f"Version {version.version_id} was deleted while it "
                                      f"was being read.", code="version_not_found")
            raise codec.IntegrityError(f"The content of version {version.version_id} is not "
                                       f"on record.")
        try:
            data = packs.read_blob(owner, blob.blob_id, packs.blob_place(blob), encrypted)
            break
        except (errors.ApiError, codec.CodecError):
            if (blob.chunk_id, blob.offset) == seen:
                raise           # failed twice in the same place: not a move
            seen = (blob.chunk_id, blob.offset)
    return _as_written(version, data)


def _racing_attempts(count: int = 20):
    """Attempts at a compare-and-set write that racing writers may spoil, a short random wait
    before each after the first."""
    for attempt in range(count):
        if attempt:
            time.sleep(random.uniform(0.005, 0.05))
        yield attempt


def _unref(owner: str, content_key: str, version: Version,
           deadline: float = float("inf")) -> bool:
    """One reader of a blob fewer, with the deletion of `version` in the same transaction; the
    last reader deletes the blob and releases it from its pack, or frees its chunks. False if
    the deadline came first (freeing `version` again later finishes)."""
    chunks, trees = chunk_store(), tree_store()
    for _ in _racing_attempts():
        blob = chunks.get_blob(owner, content_key)
        if blob is None:
            trees.delete_version(owner, version.node_id, version.version_id)
            return True
        last = blob.refs <= 1
        if last and blob.chunked:
            outcome = _let_chunks_go(owner, blob, version, deadline)
            if outcome is None:
                continue
            if outcome:
                trash.freed_while_counted(owner, blob)
            return outcome
        ops = tuple(chunks.unref_operations(blob))
        if last:
            ops += (quota.dead_bytes_change(owner, blob.length),)
        if not trees.delete_version(owner, version.node_id, version.version_id, ops):
            if trees.get_version(owner, version.node_id, version.version_id) is None:
                return True     # deleted by a concurrent purge, which let the blob go
            continue
        if last:
            packs.after_release(owner, blob.chunk_id)
            trash.freed_while_counted(owner, blob)
        return True
    raise errors.ServiceUnavailable(f"The content {content_key[:12]}… kept changing while it "
                                    f"was being freed; the sweep frees it later.",
                                    code="concurrent_change")


def _let_chunks_go(owner: str, blob: Blob, version: Version, deadline: float
                   ) -> bool | None:
    """The last reader of chunked content goes: the blob is marked let go (nothing claims it
    after), its chunks are freed, then the blob's record goes with `version`'s. A crash or the
    deadline in between leaves the blob marked and `version` in place, and freeing `version`
    again finishes (freeing what is gone already is no error). None: the blob changed since
    read (a new reader claimed it): look again."""
    chunks, trees = chunk_store(), tree_store()
    # Only while `version` is still there: a concurrent purge of the same version (a request's
    # and the trash sweep's) may have taken its reference off already, and the count read as
    # "last" is then another file's, whose content must stay.
    if blob.refs >= 1 and not chunks.let_go(blob, (trees.version_exists_check(
            owner, version.node_id, version.version_id),)):
        if trees.get_version(owner, version.node_id, version.version_id) is None:
            return True         # freed by the concurrent purge; nothing of ours is left
        return None
    if not _free_chunks(owner, blob.blob_id, blob.chunk_count, deadline):
        return False
    forget = (chunks.forget_operation(blob),)
    if not trees.delete_version(owner, version.node_id, version.version_id, forget):
        # Forgotten by a concurrent freer: the version goes alone.
        trees.delete_version(owner, version.node_id, version.version_id)
    return True


def free_version(owner: str, version: Version, deadline: float = float("inf")) -> bool:
    if version.content_key:
        return _unref(owner, version.content_key, version, deadline)
    if version.pack_chunk:
        _free_packed(owner, version)
        return True
    if not _free_chunks(owner, version.version_id, version.chunk_count, deadline):
        return False
    tree_store().delete_version(owner, version.node_id, version.version_id)
    return True


def _free_packed(owner: str, version: Version) -> None:
    """The version goes with its blob's release, once, from the pack that holds it now (it may
    have been moved by compaction since it was read); the pack goes when no file uses it."""
    trees = tree_store()
    for _ in _racing_attempts():
        if version is None:
            return
        chunk = version.pack_chunk
        release = packs.release_operations(owner, chunk, int(version.pack_length))
        if trees.delete_version(owner, version.node_id, version.version_id, release, chunk):
            packs.after_release(owner, chunk)
            return
        now = trees.get_version(owner, version.node_id, version.version_id)
        if now is not None and now.pack_chunk == chunk:
            # Still there but its pack is not: nothing to release, the version goes alone.
            if store.find_chunk(owner, chunk) is None:
                trees.delete_version(owner, version.node_id, version.version_id)
                return
            continue
        version = now          # moved (release it from there) or gone (done)
    raise errors.ServiceUnavailable(f"Version {version.version_id} kept changing while it was "
                                    f"being freed; the sweep frees it later.",
                                    code="concurrent_change")


# Deleting for good frees what it can in this long, and leaves the rest to the sweep.
DELETE_INLINE_SECONDS = 2.0
# An earlier version's deletion frees its content within this long (a huge one: the caller
# asks again, and freeing goes on where it stopped).
VERSION_DELETE_SECONDS = 8.0


def delete_earlier_version(owner: str, node: Node, version_id: str) -> bool:
    """Delete one earlier version of a file for good and free its content (content stored once
    goes with its last reader; a packed one's bytes are dead until compaction). The current
    version is the file's: it goes with the file, to the trash. True once freed; False if time
    ran out first (the version is then still listed, its content partly freed: deleting it
    again finishes)."""
    version = get_version(owner, node, version_id)
    if version.version_id == node.version_id:
        raise errors.Conflict(f"Version {errors.shown(version_id)} is the current content of "
                              f"'{node.name}'; delete the file instead (it goes to the trash), "
                              f"or upload a newer version first.", code="current_version")
    freed = free_version(owner, version, time.monotonic() + VERSION_DELETE_SECONDS)
    _recount_if_deleted(owner, node.node_id)
    return freed


def _recount_if_deleted(owner: str, node_id: str) -> None:
    """A delete of the file, or of a folder above it, racing this version's may have measured
    the version before it was freed (and counted it in the trash for good): its trash item is
    counted again now that it is gone. A delete that lands after this look counts again itself
    (trash.move_to_trash)."""
    item = trash.deleted_state(owner, node_id)
    if item is not None and item != trash.FOR_GOOD:
        trash.recount(owner, item)


def delete_node(owner: str, node: Node) -> None:
    """Delete a file with all its versions, or a directory with everything under it: it goes
    to the owner's trash at once, whatever it holds (tree/trash.py)."""
    trash.move_to_trash(owner, node)


def delete_for_good(owner: str, node_id: str) -> None:
    """Take an item out of the trash for good and free its content: here within a short budget,
    the rest by the scheduled sweep, so no request works through a huge tree."""
    _purge(owner, trash.doom(owner, node_id), time.monotonic() + DELETE_INLINE_SECONDS)


def empty_trash(owner: str) -> dict:
    deadline = time.monotonic() + 4 * DELETE_INLINE_SECONDS
    doomed, complete = trash.doom_all(owner, deadline)
    for node in doomed:
        if not _purge(owner, node, deadline):
            break          # the sweep frees the rest
    return {"deleted": len(doomed), "complete": complete}


def _purge(owner: str, node: Node, deadline: float) -> bool:
    """Free a deleted node's content, depth first, then the node; False if the deadline came
    first (the node stays queued and the next sweep continues). What is freed leaves the trash
    item's count as it goes (trash.uncount_freed)."""
    return _purge_under(owner, node, deadline,
                        tree_store().get_trashed(owner, node.node_id, doomed=True))


def _purge_under(owner: str, node: Node, deadline: float, item: trash.Trashed | None) -> bool:
    trees = tree_store()
    if node.type == FILE:
        for version in trees.list_versions(owner, node.node_id):
            if not free_version(owner, version, deadline):
                return False
            if not version.content_key:     # (content stored once: as its blob goes, _unref)
                trash.uncount_freed(owner, item, trash.frees_alone(version))
    else:
        while True:
            entries, _ = trees.list_entries(owner, node.node_id, 100)
            if not entries:
                break
            for entry in entries:
                if time.monotonic() > deadline:
                    return False
                child = trees.get_node(owner, entry.node_id)
                if child is None:
                    # An entry whose node is gone (a purge cut short): drop the entry.
                    _remove(Node(owner, entry.node_id, entry.type, entry.name, node.node_id,
                                 entry.modified, entry.modified))
                    continue
                if not _purge_under(owner, child, deadline, item):
                    return False
    _remove(node)
    return True


def _remove(node: Node) -> None:
    try:
        tree_store().remove(node)
    except Changed:
        pass          # removed meanwhile by a concurrent purge (a delete and the sweep)


def sweep_trash(budget_seconds: float = 300.0,
                after_purge: Callable[[str], object] | None = None) -> dict:
    """The scheduled sweep's other half: free trash items deleted for good (what their delete
    left unfinished) and those past their owner's retention. `after_purge(owner)` is called
    once for each owner some of whose items were freed whole (what else must go with them:
    their shares and links)."""
    deadline = time.monotonic() + budget_seconds
    freed = unfinished = 0
    failed = []
    owners: set[str] = set()
    for node in trash.due(time.time()):
        if time.monotonic() > deadline:
            break
        try:
            if _purge(node.owner, node, deadline):
                freed += 1
                owners.add(node.owner)
            else:
                unfinished += 1
        except errors.ApiError as exc:
            failed.append(f"{node.node_id}: {exc.message}")
    for owner in sorted(owners) if after_purge is not None else ():
        try:
            after_purge(owner)
        except errors.ApiError as exc:
            failed.append(f"{owner}: {exc.message}")
    if failed:
        log.warning("trash sweep could not free %d nodes: %s", len(failed), failed[:10])
    return {"freed_nodes": freed, "unfinished_nodes": unfinished, "trash_failed": failed[:50]}
