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

The chunk's record counts the files still using it (`live`); releasing the last one frees it.
"""
from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cloudstrype import errors
from cloudstrype.pipeline import codec, store
from cloudstrype.pipeline.chunk_store import chunk_store

# Files up to this size are packed; larger ones are chunks of their own (a read of one is then
# a read of about its size anyway).
PACK_THRESHOLD = 256 * 1024
BLOB_OVERHEAD = codec.NONCE_SIZE + codec.TAG_SIZE
MAX_PACK_BYTES = codec.MAX_CHUNK_SIZE
_AAD_PREFIX = b"cloudstrype/blob/v1\x00"


@dataclass(frozen=True)
class PackedBlob:
    """Where one file's blob lives."""
    chunk_id: str
    offset: int
    length: int
    blob_hash: str          # SHA-256 of the stored blob


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


def _aad(chunk_id: str, blob_id: str) -> bytes:
    return _AAD_PREFIX + chunk_id.encode() + b"\x00" + blob_id.encode()


def write_pack(owner: str, items: list[tuple[str, bytes]], encryption: str,
               durability: str) -> list[PackedBlob]:
    """Store (blob id, content) items as one pack with `durability`; blobs encrypted unless
    `encryption` is ``none``. All stored, or an error and nothing."""
    encrypted = codec.parse_encryption(encryption).encrypted
    chunk_id = f"p{uuid.uuid4().hex}"
    key = codec.new_data_key() if encrypted else None
    aes = AESGCM(key) if key else None
    blobs, placed, offset = [], [], 0
    for blob_id, content in items:
        if aes is not None:
            nonce = os.urandom(codec.NONCE_SIZE)
            blob = nonce + aes.encrypt(nonce, content, _aad(chunk_id, blob_id))
        else:
            blob = content
        blobs.append(blob)
        placed.append(PackedBlob(chunk_id, offset, len(blob), hashlib.sha256(blob).hexdigest()))
        offset += len(blob)
    store.put_chunk(owner, b"".join(blobs), codec.NONE, durability, chunk_id, blob_key=key,
                    live=len(items))
    return placed


def read_blob(owner: str, blob_id: str, where: PackedBlob, encrypted: bool) -> bytes:
    """One file's content from its pack, verified (blob hash, then the GCM tag)."""
    record = store.get_record(owner, where.chunk_id)

    def good(data: bytes) -> bool:
        return hashlib.sha256(data).hexdigest() == where.blob_hash

    blob = store.get_range(record, where.offset, where.length, good)
    if not encrypted:
        return blob
    try:
        return AESGCM(store.blob_key(record)).decrypt(
            blob[:codec.NONCE_SIZE], blob[codec.NONCE_SIZE:], _aad(where.chunk_id, blob_id))
    except InvalidTag:
        raise codec.IntegrityError(f"The blob of {blob_id} in pack {where.chunk_id} does not "
                                   f"authenticate.") from None


def release_operation(owner: str, chunk_id: str, length: int):
    """The release of one file's blob, for the transaction that deletes its version."""
    return chunk_store().release_operation(owner, chunk_id, length)


def free_if_unused(owner: str, chunk_id: str) -> None:
    """Free the pack once no file uses it (through the chunks' deletion path)."""
    record = chunk_store().get(owner, chunk_id)
    if record is not None and record.live is not None and record.live <= 0:
        try:
            store.delete_chunk(owner, chunk_id)
        except errors.NotFound:
            pass            # a concurrent release freed it


def release_now(owner: str, chunk_id: str, length: int) -> None:
    """Release a blob that no file got (its file failed to attach)."""
    left = chunk_store().release(owner, chunk_id, length)
    if left is not None and left <= 0:
        free_if_unused(owner, chunk_id)
