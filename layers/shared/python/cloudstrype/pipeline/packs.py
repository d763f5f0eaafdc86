"""Packs: many small files' blobs in one chunk, each readable on its own.

A pack is a chunk stored through the pipeline with the owner's durability and chunk-level
encryption ``none``, because what it holds is already encrypted: each file is its own blob,
AES-256-GCM under the pack's blob key (random, sealed under the owner's key on the chunk's
record) with its own random nonce, and the pack's chunk id and the file's blob id (its version
id) as associated data, so a blob cannot be passed off as another file's. A blob is
``nonce (12) || ciphertext || tag (16)``; with encryption ``none`` it is the file's bytes.

Each file's version records (chunk, offset, length) and the SHA-256 of the blob's stored bytes.
Since the chunk is not encrypted as a whole, the blob lies in place in the shares: a read is a
ranged read of one raid1 share, or of the one or two rs data shares holding it (store.get_range),
checked against that hash — and falls back to other copies or the whole chunk when it fails.

The chunk's record counts the files still using it (`live`, `live_bytes`); releasing the last
one frees it. A released blob's bytes are dead (counted in the owner's usage as `dead_bytes`);
once a pack's live bytes fall below COMPACT_BELOW of its size it is queued for compaction
(tree/compaction.py), which moves its live blobs into a new pack and frees it.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import time
import uuid
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cloudstrype import errors, quota, vault
from cloudstrype.pipeline import codec, store
from cloudstrype.pipeline.chunk_store import Blob, Chunk, chunk_store

# Files up to this size are packed; larger ones are chunks of their own (a read of one is then
# a read of about its size anyway).
PACK_THRESHOLD = 256 * 1024
BLOB_OVERHEAD = codec.NONCE_SIZE + codec.TAG_SIZE
MAX_PACK_BYTES = codec.MAX_CHUNK_SIZE
_AAD_PREFIX = b"cloudstrype/blob/v1\x00"
_CONTENT_KEY_INFO = b"cloudstrype/content-key/v1"
# A pack whose live bytes are below this share of its size is repacked: at most half of what a
# user's packs hold is dead for long, and a repack rewrites at most as much as it frees.
COMPACT_BELOW = 0.5


@dataclass(frozen=True)
class PackedBlob:
    """Where one file's blob lives."""
    chunk_id: str
    offset: int
    length: int
    blob_hash: str          # SHA-256 of the stored blob


def blob_place(blob: Blob) -> PackedBlob:
    """Where a blob stored once for its owner (chunk_store.BLOBS) lies now."""
    return PackedBlob(blob.chunk_id, blob.offset, blob.length, blob.blob_hash)


def packable(size: int) -> bool:
    return 0 < size <= PACK_THRESHOLD


def stored_size(size: int, encrypted: bool) -> int:
    return size + (BLOB_OVERHEAD if encrypted else 0)


def groups(sizes: list[int], encrypted: bool) -> list[list[int]]:
    """Indexes of `sizes` in packs of at most MAX_PACK_BYTES stored, in order."""
    out: list[list[int]] = []
    used = MAX_PACK_BYTES + 1
    for index, size in enumerate(sizes):
        need = stored_size(size, encrypted)
        if used + need > MAX_PACK_BYTES:
            out.append([])
            used = 0
        out[-1].append(index)
        used += need
    return out


def content_key(owner: str, durability: str, encryption: str, sha256: bytes) -> str:
    """The name of one owner's content stored with one scheme (chunk_store.BLOBS): an HMAC
    under a key derived from the owner's key, so equal content meets only within an account
    and the name says nothing about the content to anyone else."""
    return content_keys(owner, durability, encryption, [sha256])[0]


def unshared_content_key() -> str:
    """The name of content written into an owner's tree by someone else (through a share): not
    the name that content has as the owner's, and random, so it never meets the owner's copy
    of the same bytes (stored apart) nor another such write. Registering the owner's name
    instead failed when the owner stored the content already, and the upload then took longer
    (it read the owner's copy): a recipient could time it to learn what the owner stores."""
    return os.urandom(32).hex()


def content_keys(owner: str, durability: str, encryption: str, digests: list[bytes]
                 ) -> list[str]:
    """`content_key` of each SHA-256 in `digests` (a batch's files: the key looked up once)."""
    user_key = vault.user_key(owner)
    key = _content_hash_key(hashlib.sha256(user_key).digest(), user_key)
    scheme = f"{durability}\x00{encryption}\x00".encode()
    return [hmac.digest(key, scheme + digest, "sha256").hex() for digest in digests]


_content_hash_keys: dict[bytes, bytes] = {}


def _content_hash_key(fingerprint: bytes, user_key: bytes) -> bytes:
    """Derived once per user key (a batch names hundreds of files); kept by the key's
    fingerprint, never by the key itself, and good for naming content only."""
    derived = _content_hash_keys.get(fingerprint)
    if derived is None:
        if len(_content_hash_keys) >= 1024:
            _content_hash_keys.clear()
        derived = _content_hash_keys[fingerprint] = HKDF(
            hashes.SHA256(), 32, salt=None, info=_CONTENT_KEY_INFO).derive(user_key)
    return derived


def _aad(chunk_id: str, blob_id: str) -> bytes:
    return _AAD_PREFIX + chunk_id.encode() + b"\x00" + blob_id.encode()


def write_pack(owner: str, items: list[tuple[str, bytes]], encryption: str,
               durability: str, *, claimed: bool = True) -> list[PackedBlob]:
    """Store (blob id, content) items as one pack with `durability`; blobs encrypted unless
    `encryption` is ``none``. All stored, or an error and nothing. `claimed`: the files the
    blobs are for count as using it from the start; otherwise none does until each is moved in
    (compaction: a pack nothing moved into is then freed, see chunk_store.create)."""
    encrypted = codec.parse_encryption(encryption).encrypted
    chunk_id = f"p{uuid.uuid4().hex}"
    key = codec.new_data_key() if encrypted else None
    aes = AESGCM(key) if key else None
    blobs, placed, offset = [], [], 0
    # Every blob's nonce from one read of the OS's generator (one GIL release, not one a blob).
    nonces = os.urandom(codec.NONCE_SIZE * len(items)) if aes is not None else b""
    for n, (blob_id, content) in enumerate(items):
        if aes is not None:
            nonce = nonces[n * codec.NONCE_SIZE:(n + 1) * codec.NONCE_SIZE]
            blob = nonce + aes.encrypt(nonce, content, _aad(chunk_id, blob_id))
        else:
            blob = content
        blobs.append(blob)
        placed.append(PackedBlob(chunk_id, offset, len(blob), hashlib.sha256(blob).hexdigest()))
        offset += len(blob)
    # A pack compaction fills is charged whatever the quota: it replaces bytes already stored
    # (a user at the quota is who needs the dead bytes freed most).
    store.put_chunk(owner, b"".join(blobs), codec.NONE, durability, chunk_id, blob_key=key,
                    live=len(items) if claimed else 0, within_quota=claimed,
                    dead=not claimed)
    return placed


def _open(chunk_id: str, blob_id: str, blob: bytes, key: bytes | None) -> bytes:
    if key is None:
        return blob
    try:
        return AESGCM(key).decrypt(blob[:codec.NONCE_SIZE], blob[codec.NONCE_SIZE:],
                                   _aad(chunk_id, blob_id))
    except InvalidTag:
        raise codec.IntegrityError(f"The blob of {blob_id} in pack {chunk_id} does not "
                                   f"authenticate.") from None


def read_blob(owner: str, blob_id: str, where: PackedBlob, encrypted: bool) -> bytes:
    """One file's content from its pack, verified (blob hash, then the GCM tag)."""
    record = store.get_record(owner, where.chunk_id)

    def good(data: bytes) -> bool:
        return hashlib.sha256(data).hexdigest() == where.blob_hash

    blob = store.get_range(record, where.offset, where.length, good)
    return _open(where.chunk_id, blob_id, blob, store.blob_key(record) if encrypted else None)


# Blobs of one pack at most this far apart are read together by read_near_blobs (the bytes
# between them read for nothing rather than a request more).
NEAR_GAP = 64 * 1024


def read_near_blobs(owner: str, chunk_id: str, wanted: list[tuple[str, PackedBlob]],
                    encrypted: bool) -> dict[str, bytes | errors.ApiError]:
    """Many files' content from one pack (a batch read): blobs close together come from one
    ranged read (read_blob's, checked by every blob's hash), each then opened; blob id ->
    content, or the error of what could not be read (the caller may read that one alone)."""
    record = store.get_record(owner, chunk_id)
    key = store.blob_key(record) if encrypted else None
    spans: list[list[tuple[str, PackedBlob]]] = []
    end = 0
    for blob_id, where in sorted(wanted, key=lambda pair: pair[1].offset):
        stop = where.offset + where.length
        if spans and where.offset - end <= NEAR_GAP:
            spans[-1].append((blob_id, where))
            end = max(end, stop)
        else:
            spans.append([(blob_id, where)])
            end = stop
    out: dict[str, bytes | errors.ApiError] = {}
    for span in spans:
        start = span[0][1].offset
        length = max(where.offset + where.length for _, where in span) - start

        def good(data: bytes, span=span, start=start) -> bool:
            view = memoryview(data)
            return all(hashlib.sha256(view[w.offset - start:w.offset - start + w.length])
                       .hexdigest() == w.blob_hash for _, w in span)
        try:
            data = memoryview(store.get_range(record, start, length, good))
        except errors.ApiError as exc:
            out.update((blob_id, exc) for blob_id, _ in span)
            continue
        for blob_id, where in span:
            blob = bytes(data[where.offset - start:where.offset - start + where.length])
            try:
                out[blob_id] = _open(chunk_id, blob_id, blob, key)
            except codec.IntegrityError as exc:
                out[blob_id] = exc
    return out


def read_blobs(owner: str, chunk_id: str, wanted: list[tuple[str, PackedBlob]],
               encrypted: bool) -> dict[str, bytes | codec.IntegrityError]:
    """Many blobs of one pack from one read of the whole pack (compaction): blob id -> content,
    or the error of a blob that is not as recorded or cannot be read."""
    record = store.get_record(owner, chunk_id)
    try:
        data = memoryview(store.get_chunk(owner, chunk_id))
    except (errors.ApiError, codec.CodecError):
        # No whole copy is good (damage past the redundancy in some blob, or a copy away): each
        # blob is read on its own from whichever copy holds it intact, so that compaction
        # moves the intact files rather than leave them all in a pack no repair can mend.
        return _blob_by_blob(owner, chunk_id, wanted, encrypted)
    key = store.blob_key(record) if encrypted else None
    out: dict = {}
    for blob_id, where in wanted:
        blob = bytes(data[where.offset:where.offset + where.length])
        try:
            if hashlib.sha256(blob).hexdigest() != where.blob_hash:
                raise codec.IntegrityError(f"The blob of {blob_id} in pack {chunk_id} does not "
                                           f"match its recorded hash.")
            out[blob_id] = _open(chunk_id, blob_id, blob, key)
        except codec.IntegrityError as exc:
            out[blob_id] = exc
    return out


def _blob_by_blob(owner: str, chunk_id: str, wanted: list[tuple[str, PackedBlob]],
                  encrypted: bool) -> dict[str, bytes | Exception]:
    """read_near_blobs, then each blob of a span that failed read alone (a span fails as a
    whole when any blob in it is bad on every copy)."""
    out: dict[str, bytes | Exception] = dict(read_near_blobs(owner, chunk_id, wanted, encrypted))
    for blob_id, where in wanted:
        if isinstance(out.get(blob_id), Exception):
            try:
                out[blob_id] = read_blob(owner, blob_id, where, encrypted)
            except (errors.ApiError, codec.CodecError) as exc:
                out[blob_id] = exc
    return out


def move_operations(owner: str, old: PackedBlob, new: PackedBlob) -> tuple:
    """A file's blob leaving pack `old` for pack `new` (compaction), for the transaction that
    points the file at it: one file fewer there, one more here. The bytes are the same, so the
    owner's dead bytes do not change."""
    chunks = chunk_store()
    return (chunks.release_operation(owner, old.chunk_id, old.length),
            chunks.acquire_operation(owner, new.chunk_id, new.length))


def release_operations(owner: str, chunk_id: str, length: int) -> tuple:
    """The release of one file's blob — one file fewer using the pack, its bytes dead — for the
    transaction that deletes or moves its version (so it happens once)."""
    return (chunk_store().release_operation(owner, chunk_id, length),
            quota.dead_bytes_change(owner, length))


def after_release(owner: str, chunk_id: str) -> Chunk | None:
    """Free the pack once no file uses it (through the chunks' deletion path), or queue it for
    compaction once most of it is dead. Returns the pack's record if this call freed it."""
    chunks = chunk_store()
    record = chunks.get(owner, chunk_id)
    if record is None or record.live is None:
        return None
    if record.live <= 0:
        try:
            # Its bytes, all dead now, leave the dead count in the delete's transaction: once.
            store.delete_chunk(owner, chunk_id, dead=True)
        except (errors.NotFound, errors.Conflict):
            return None     # a concurrent release freed it (or a file still uses it)
        return record
    if (record.live_bytes or 0) < COMPACT_BELOW * record.size:
        chunks.queue_compaction(owner, chunk_id, time.time())
    return None


def release_now(owner: str, chunk_id: str, length: int) -> None:
    """Release a blob that no file got (its file failed to attach)."""
    # The release and its dead bytes together: a server stopped between them miscounts none.
    if chunk_store().apply(release_operations(owner, chunk_id, length)):
        after_release(owner, chunk_id)
