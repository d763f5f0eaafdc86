"""The chunk codec: a chunk's bytes -> encrypted, hashed shares, and back. Pure: no AWS, no I/O.

Encode, for a chunk of at most :data:`MAX_CHUNK_SIZE` bytes::

    plaintext --[MD5, aes256-md5 only]--> recorded checksum
    plaintext --AES-256-GCM(data key, random 96-bit nonce, AAD = chunk id)--> ciphertext (+16 B tag)
    ciphertext --raid1(N): the same bytes N times | rs(K,M): K zero-padded data blocks + M zfec
                 parity blocks--> shares
    each share --SHA-256--> share hash

Decode takes whatever shares arrived, checks each one's SHA-256 against the metadata (a bad one is
skipped and reported, so the caller can queue a repair), rebuilds the ciphertext from the first
``needed`` good ones (data shares first, which needs no Reed-Solomon arithmetic), then decrypts; a
GCM tag failure or MD5 mismatch raises :class:`IntegrityError`, too few good shares raise
:class:`NotEnoughShares`. It never returns bytes that failed a check: an encrypted chunk is
authenticated by its GCM tag, and for ``none`` every share used matched its recorded hash.

The associated data of the GCM encryption is ``b"cloudstrype/chunk/v1\\0" + chunk_id``: a share set
(and metadata) of one chunk cannot be decrypted as another chunk, even under the same key. It does
not include the durability, so shares can be re-laid out or rebuilt (:func:`rebuild`) from the
ciphertext alone, without the key.

``aes256-md5`` (the seed's name) is AES-256-GCM exactly as above plus an MD5 of the plaintext,
recorded in the metadata at encode and checked after decryption; ``none`` skips the encryption
(shares are still hashed, and still bound to the chunk only through the recorded hashes).

zfec is used through its low-level ``Encoder``/``Decoder``: ``easyfec`` measured the same for the
arithmetic but needs the whole ciphertext in one buffer and copies it to split and to join, where
this module encrypts straight into the data shares and decodes from a reused buffer.

Everything needed to decode except the data key is in :attr:`EncodedChunk.meta`, a JSON-able
dict (see :class:`ChunkMeta`). Wrapping the data key (KMS) is another module's job.

Streaming reads: :class:`ShareCollector` takes shares one by one as parallel fetches complete
(thread-safe; hashing happens outside its lock), says when it has ``needed`` good ones and which
indexes are still worth fetching, and then decodes.
"""
from __future__ import annotations

import hashlib
import itertools
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import zfec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cloudstrype.errors import PayloadTooLarge, ServiceUnavailable

from .schemes import (
    AES256_GCM,
    AES256_MD5,
    NONE,
    CodecError,
    Durability,
    Encryption,
    SchemeError,
    parse_durability,
    parse_encryption,
)

__all__ = [
    "AES256_GCM", "AES256_MD5", "ChunkMeta", "ChunkTooLarge", "CodecError", "DecodeResult",
    "Durability", "EncodedChunk", "Encryption", "IntegrityError", "KEY_SIZE", "MAX_CHUNK_SIZE",
    "META_FORMAT", "MetaError", "NONCE_SIZE", "NONE", "NotEnoughShares", "RebuildResult",
    "SchemeError", "ShareCollector", "SharesFailedCheck", "TAG_SIZE", "associated_data",
    "decode", "encode", "new_data_key", "parse_durability", "parse_encryption", "plain_segments",
    "rebuild",
]

MAX_CHUNK_SIZE = 4 * 1024 * 1024     # DESIGN.md "Hard limits": chunks are at most 4 MiB
KEY_SIZE = 32                        # AES-256
NONCE_SIZE = 12                      # 96-bit GCM nonce
TAG_SIZE = 16                        # GCM tag, appended to the ciphertext
META_FORMAT = 1
SHARE_HASH = "sha256"
_AAD_PREFIX = b"cloudstrype/chunk/v1\x00"


# --- errors ------------------------------------------------------------------------------------

class MetaError(CodecError, ValueError):
    """The caller passed something unusable: malformed metadata, a key of the wrong size or kind,
    a share index outside the scheme. A programming error, not a data problem."""
    code = "chunk_codec_misuse"


class ChunkTooLarge(CodecError, PayloadTooLarge):
    status, code = 413, "chunk_too_large"


class NotEnoughShares(CodecError, ServiceUnavailable):
    """Fewer good shares than the scheme needs. ``good``/``bad``/``missing`` are share indexes."""
    status, code = 503, "not_enough_shares"

    def __init__(self, message: str, *, needed: int, good: list[int], bad: list[int],
                 missing: list[int]):
        super().__init__(message, details={"needed": needed, "good": good, "bad": bad,
                                           "missing": missing})
        self.needed, self.good, self.bad, self.missing = needed, good, bad, missing


class IntegrityError(CodecError):
    """The shares matched their hashes but the chunk does not authenticate: wrong data key,
    wrong chunk id, tampered metadata, or an MD5 mismatch (aes256-md5)."""
    status, code = 500, "chunk_integrity"


class SharesFailedCheck(CodecError):
    """A chunk read with deferred hashing did not authenticate, and ``bad`` (share indexes)
    failed their recorded hashes: the collector has dropped them; fetch others and decode
    again."""
    status, code = 503, "shares_failed_check"

    def __init__(self, message: str, bad: list[int]):
        super().__init__(message, details={"bad": bad})
        self.bad = bad


# --- keys and associated data ------------------------------------------------------------------

def new_data_key() -> bytes:
    """A fresh random 256-bit data key (one per chunk)."""
    return os.urandom(KEY_SIZE)


def associated_data(chunk_id: str) -> bytes:
    """The GCM associated data binding a ciphertext to its chunk id."""
    return _AAD_PREFIX + _check_chunk_id(chunk_id).encode("utf-8")


def _check_chunk_id(chunk_id) -> str:
    if not isinstance(chunk_id, str) or not chunk_id:
        raise MetaError(f"chunk_id must be a non-empty string; got {chunk_id!r}")
    return chunk_id


def _check_key(encryption: Encryption, data_key, *, chunk_id: str) -> bytes | None:
    if not encryption.encrypted:
        if data_key is not None:
            raise MetaError(f"chunk {chunk_id} uses encryption 'none'; pass data_key=None")
        return None
    if data_key is None:
        raise MetaError(f"chunk {chunk_id} is encrypted with {encryption}; pass its data key")
    if not isinstance(data_key, (bytes, bytearray, memoryview)) or len(data_key) != KEY_SIZE:
        got = (f"{len(data_key)} bytes" if isinstance(data_key, (bytes, bytearray, memoryview))
               else type(data_key).__name__)
        raise MetaError(f"the data key must be {KEY_SIZE} bytes (AES-256); got {got}")
    return bytes(data_key)


def _as_bytes_view(data, what: str) -> memoryview:
    try:
        view = memoryview(data)
    except TypeError:
        raise MetaError(f"{what} must be bytes-like; got {type(data).__name__}") from None
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


# --- metadata ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChunkMeta:
    """Everything needed to decode a chunk except its data key. ``to_dict()`` is JSON-able::

        {"format": 1,                     # this layout's version
         "encryption": "aes256-gcm",      # canonical encryption name
         "durability": "rs(4,2)",         # canonical durability spec
         "size": 4194304,                 # plaintext bytes
         "ciphertext_size": 4194320,      # size + 16 (GCM tag) when encrypted, else size
         "share_size": 1048580,           # bytes in every share (rs: ceil(ciphertext_size / K))
         "nonce": "hex" | None,           # 12-byte GCM nonce, None for 'none'
         "md5": "hex" | None,             # MD5 of the plaintext, aes256-md5 only
         "hash": "sha256",                # share hash algorithm
         "share_hashes": ["hex", ...]}    # one per share, in share-index order
    """
    encryption: Encryption
    durability: Durability
    size: int
    ciphertext_size: int
    share_size: int
    nonce: bytes | None
    md5: str | None
    share_hashes: tuple[str, ...]

    def to_dict(self) -> dict:
        return {
            "format": META_FORMAT,
            "encryption": str(self.encryption),
            "durability": str(self.durability),
            "size": self.size,
            "ciphertext_size": self.ciphertext_size,
            "share_size": self.share_size,
            "nonce": self.nonce.hex() if self.nonce is not None else None,
            "md5": self.md5,
            "hash": SHARE_HASH,
            "share_hashes": list(self.share_hashes),
        }

    @classmethod
    def from_dict(cls, meta: Mapping | "ChunkMeta") -> "ChunkMeta":
        if isinstance(meta, ChunkMeta):
            return meta
        if not isinstance(meta, Mapping):
            raise MetaError(f"chunk metadata must be a dict; got {type(meta).__name__}")

        def field_(name, kinds):
            if name not in meta:
                raise MetaError(f"chunk metadata lacks {name!r}")
            value = meta[name]
            if not isinstance(value, kinds) or isinstance(value, bool):
                raise MetaError(f"chunk metadata {name!r} has the wrong type "
                                f"({type(value).__name__})")
            return value

        if meta.get("format", META_FORMAT) != META_FORMAT:
            raise MetaError(f"chunk metadata format {meta.get('format')!r} is not supported "
                            f"(this codec reads format {META_FORMAT})")
        if meta.get("hash", SHARE_HASH) != SHARE_HASH:
            raise MetaError(f"share hash {meta.get('hash')!r} is not supported (only {SHARE_HASH})")
        try:
            encryption = parse_encryption(field_("encryption", str))
            durability = parse_durability(field_("durability", str))
        except SchemeError as e:
            raise MetaError(f"chunk metadata has a bad scheme: {e.message}") from None
        size, ct_size, share_size = (field_(n, int) for n in ("size", "ciphertext_size",
                                                               "share_size"))
        hashes = field_("share_hashes", (list, tuple))
        nonce_hex, md5 = meta.get("nonce"), meta.get("md5")
        overhead = TAG_SIZE if encryption.encrypted else 0
        expected_share = ct_size if durability.kind == "raid1" else -(-ct_size // durability.k)
        if size < 0 or ct_size != size + overhead or share_size != expected_share:
            raise MetaError(f"chunk metadata sizes do not agree: size {size}, ciphertext_size "
                            f"{ct_size}, share_size {share_size} for {encryption} {durability}")
        if len(hashes) != durability.total_shares or not all(
                isinstance(h, str) and len(h) == 64 for h in hashes):
            raise MetaError(f"chunk metadata needs {durability.total_shares} hex SHA-256 share "
                            f"hashes for {durability}")
        nonce = None
        if encryption.encrypted:
            try:
                nonce = bytes.fromhex(nonce_hex)
            except (TypeError, ValueError):
                nonce = b""
            if len(nonce) != NONCE_SIZE:
                raise MetaError(f"chunk metadata needs a {NONCE_SIZE}-byte hex nonce for "
                                f"{encryption}")
        if encryption.checksum == "md5" and not (isinstance(md5, str) and len(md5) == 32):
            raise MetaError("chunk metadata needs a hex 'md5' for aes256-md5")
        return cls(encryption, durability, size, ct_size, share_size, nonce,
                   md5.lower() if encryption.checksum == "md5" else None,
                   tuple(h.lower() for h in hashes))


# --- results -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class EncodedChunk:
    chunk_id: str
    shares: list[bytes]            # share i goes to backend i; raid1 shares are one object N times
    info: ChunkMeta
    data_key: bytes | None = None  # the one given, or a fresh one if None was given (encrypted)

    def __repr__(self) -> str:     # never megabytes of shares or the key in a log line
        return (f"EncodedChunk(chunk_id={self.chunk_id!r}, {self.encryption} {self.durability}, "
                f"size={self.size}, shares={len(self.shares)}x{self.info.share_size} B)")

    @property
    def meta(self) -> dict:
        """JSON-able; everything :func:`decode` needs besides the data key."""
        return self.info.to_dict()

    @property
    def share_hashes(self) -> list[str]:
        return list(self.info.share_hashes)

    @property
    def size(self) -> int:
        return self.info.size

    @property
    def ciphertext_size(self) -> int:
        return self.info.ciphertext_size

    @property
    def nonce(self) -> bytes | None:
        return self.info.nonce

    @property
    def md5(self) -> str | None:
        return self.info.md5

    @property
    def encryption(self) -> str:
        return str(self.info.encryption)

    @property
    def durability(self) -> str:
        return str(self.info.durability)


@dataclass(frozen=True)
class DecodeResult:
    data: bytes
    bad_shares: list[int]       # indexes that were checked and failed their hash: queue a repair
    used_shares: list[int]      # the `needed` indexes the chunk was rebuilt from

    def __repr__(self) -> str:
        return (f"DecodeResult(data=<{len(self.data)} bytes>, bad_shares={self.bad_shares}, "
                f"used_shares={self.used_shares})")


@dataclass(frozen=True)
class RebuildResult:
    shares: dict[int, bytes]    # the re-created shares, verified against their recorded hashes
    bad_shares: list[int]
    used_shares: list[int]

    def __repr__(self) -> str:
        return (f"RebuildResult(shares={sorted(self.shares)}, bad_shares={self.bad_shares}, "
                f"used_shares={self.used_shares})")


# --- encode ------------------------------------------------------------------------------------

def encode(chunk_id: str, data: bytes, encryption: str | Encryption | None,
           durability: str | Durability, data_key: bytes | None = None) -> EncodedChunk:
    """Encrypt, split and hash one chunk.

    ``encryption``: ``aes256-gcm`` (None/blank means this), ``aes256-md5`` or ``none``.
    ``durability``: ``raid1(N)`` or ``rs(K,M)``. ``data_key``: 32 bytes for the encrypted schemes;
    when None a fresh one is generated and returned as ``.data_key`` (store it, wrapped). Must be
    None for ``none``.
    """
    chunk_id = _check_chunk_id(chunk_id)
    enc = parse_encryption(encryption)
    dur = parse_durability(durability)
    view = _as_bytes_view(data, "chunk data")
    size = view.nbytes
    if size > MAX_CHUNK_SIZE:
        raise ChunkTooLarge(f"a chunk is at most {MAX_CHUNK_SIZE} bytes (4 MiB); got {size}: "
                            f"split the data into chunks")
    if enc.encrypted and data_key is None:
        data_key = new_data_key()
    data_key = _check_key(enc, data_key, chunk_id=chunk_id)

    md5 = hashlib.md5(view, usedforsecurity=False).hexdigest() if enc.checksum == "md5" else None
    nonce = os.urandom(NONCE_SIZE) if enc.encrypted else None
    ct_size = size + (TAG_SIZE if enc.encrypted else 0)
    k = dur.k
    share_size = ct_size if dur.kind == "raid1" else -(-ct_size // k)

    if dur.kind == "raid1" or k == 1:
        # One share's worth of ciphertext. raid1: N references to that one immutable object (no
        # copies, one hash); rs(1,M): it is the only data share.
        if enc.encrypted:
            ciphertext = AESGCM(data_key).encrypt(nonce, view, associated_data(chunk_id))
        else:
            ciphertext = data if type(data) is bytes else view.tobytes()
        shares = [ciphertext]
    elif enc.encrypted:
        shares = _encrypt_split(view, data_key, nonce, associated_data(chunk_id), k, share_size)
    else:
        shares = _split(view, k, share_size)

    if dur.kind == "raid1":
        digest = hashlib.sha256(shares[0]).hexdigest()
        shares *= dur.total_shares
        hashes = (digest,) * dur.total_shares
    else:
        if share_size:
            shares += _encoder(k, dur.total_shares).encode(
                tuple(shares), tuple(range(k, dur.total_shares)))
        else:
            shares += [b""] * dur.m
        sha256 = hashlib.sha256
        hashes = tuple(sha256(s).hexdigest() for s in shares)

    info = ChunkMeta(enc, dur, size, ct_size, share_size, nonce, md5, hashes)
    return EncodedChunk(chunk_id, shares, info, data_key)


def _split(data, k: int, share_size: int) -> list[bytes]:
    """K blocks of ``share_size`` bytes; the tail is zero-padded. One copy of ``data``."""
    view = memoryview(data)
    total = view.nbytes
    blocks = []
    for i in range(k):
        start = min(i * share_size, total)
        end = min(start + share_size, total)
        pad = share_size - (end - start)
        if pad:
            blocks.append(b"".join((view[start:end], bytes(pad))))
        else:
            blocks.append(view[start:end].tobytes())
    return blocks


def _encrypt_split(view: memoryview, key: bytes, nonce: bytes, aad: bytes, k: int,
                   share_size: int) -> list[bytes]:
    """AES-256-GCM straight into the K data shares.

    The result is byte for byte ``_split(AESGCM(key).encrypt(nonce, data, aad), k, share_size)``,
    but each full data share is the encryptor's output for its slice of the plaintext, so the
    ciphertext is never allocated or copied as a whole; only the last share(s), which hold the
    tail, the tag and the padding, are assembled.
    """
    encryptor = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(aad)
    size = view.nbytes
    full = min(k, size // share_size)           # shares made of plaintext bytes only
    shares = []
    for i in range(full):
        piece = encryptor.update(view[i * share_size:(i + 1) * share_size])
        if len(piece) != share_size:            # GCM is length-preserving; never trust blindly
            raise CodecError(f"AES-GCM returned {len(piece)} bytes for {share_size}")
        shares.append(piece)
    tail = encryptor.update(view[full * share_size:])
    tail += encryptor.finalize()
    tail += encryptor.tag
    if len(tail) != size + TAG_SIZE - full * share_size:
        raise CodecError("AES-GCM returned a ciphertext of the wrong length")
    shares += _split(tail, k - full, share_size)
    return shares


_coders: dict = {}


def _encoder(k: int, n: int) -> zfec.Encoder:
    coder = _coders.get(("e", k, n))
    if coder is None:
        coder = _coders[("e", k, n)] = zfec.Encoder(k, n)
    return coder


def _decoder(k: int, n: int) -> zfec.Decoder:
    coder = _coders.get(("d", k, n))
    if coder is None:
        coder = _coders[("d", k, n)] = zfec.Decoder(k, n)
    return coder


# --- ranged reads ------------------------------------------------------------------------------

def plain_segments(meta: Mapping | ChunkMeta, offset: int, length: int
                   ) -> list[tuple[int, int, int]]:
    """Where bytes offset..offset+length-1 of an unencrypted chunk lie in its shares, as
    (data share index, start in that share, length) in order: raid1 shares are the chunk itself
    (index 0 stands for any of them); rs(K,M) data shares are the chunk cut in K stripes of
    share_size bytes, so a range lies in one or two neighbouring data shares. Only ``none``
    chunks have plaintext there to read in place (an encrypted chunk is one GCM message)."""
    info = ChunkMeta.from_dict(meta)
    if info.encryption.encrypted:
        raise MetaError("a ranged read needs a chunk stored with encryption 'none'")
    if offset < 0 or length < 0 or offset + length > info.size:
        raise MetaError(f"range {offset}+{length} is outside the chunk's {info.size} bytes")
    if info.durability.kind == "raid1":
        return [(0, offset, length)] if length else []
    segments, size = [], info.share_size
    while length > 0:
        index, start = divmod(offset, size)
        take = min(length, size - start)
        segments.append((index, start, take))
        offset, length = offset + take, length - take
    return segments


# --- decode ------------------------------------------------------------------------------------

class ShareCollector:
    """Collects a chunk's shares as they arrive and says when it can decode.

    ``add(index, data)`` checks the share's size and SHA-256 against the metadata (outside the lock,
    so several fetch threads can hash at once) and returns whether it is good; ``enough`` turns
    true at ``needed`` good shares; ``wanted()`` lists the indexes not tried yet, data shares first
    (fetch those next); ``decode()`` rebuilds and decrypts from the best ``needed`` good shares.

    ``hash_on_failure`` (the read path): for an encrypted chunk, ``add`` checks the size only
    and the hashes wait. The GCM tag authenticates every byte of the shares used, so a chunk
    that decrypts needed no hash; one that does not has its unhashed shares hashed then, and
    those that fail are dropped and reported (:class:`SharesFailedCheck`) so the caller can
    fetch others. Unencrypted chunks are always hashed on arrival (nothing else checks them).
    """

    def __init__(self, meta: Mapping | ChunkMeta, *, hash_on_failure: bool = False):
        self.info = ChunkMeta.from_dict(meta)
        self.durability = self.info.durability
        self._good: dict[int, bytes] = {}
        self._bad: set[int] = set()
        self._unhashed: set[int] = set()      # good by size only, hash not checked yet
        # raid1: the copies that failed their hash, kept for rescue() (each may be bad in
        # another place).
        self._bad_copies: dict[int, bytes] = {}
        self._deferred = hash_on_failure and self.info.encryption.encrypted
        self._lock = threading.Lock()

    @property
    def needed(self) -> int:
        return self.durability.needed

    @property
    def total(self) -> int:
        return self.durability.total_shares

    @property
    def enough(self) -> bool:
        return len(self._good) >= self.needed

    @property
    def good_shares(self) -> list[int]:
        with self._lock:
            return sorted(self._good)

    @property
    def bad_shares(self) -> list[int]:
        with self._lock:
            return sorted(self._bad)

    def good_copy(self, index: int) -> bytes:
        with self._lock:
            return self._good[index]

    def wanted(self) -> list[int]:
        """Indexes neither good nor bad yet, in preferred order (data shares first)."""
        with self._lock:
            return [i for i in range(self.total) if i not in self._good and i not in self._bad]

    def check(self, index: int, data) -> bool:
        """Whether ``data`` is share ``index`` of this chunk (size and SHA-256). Records nothing."""
        self._check_index(index)
        try:
            view = _as_bytes_view(data, f"share {index}")
        except MetaError:
            return False
        return (view.nbytes == self.info.share_size
                and hashlib.sha256(view).hexdigest() == self.info.share_hashes[index])

    def add(self, index: int, data) -> bool:
        """Verify and record share ``index``; returns True if it is good. Thread-safe."""
        if self._deferred:
            self._check_index(index)
            try:
                good = _as_bytes_view(data, f"share {index}").nbytes == self.info.share_size
            except MetaError:
                good = False
        else:
            good = self.check(index, data)
        if good and not isinstance(data, bytes):
            data = bytes(data)
        with self._lock:
            if good:
                self._good[index] = data
                self._bad.discard(index)
                if self._deferred:
                    self._unhashed.add(index)
            elif index not in self._good:
                self._bad.add(index)
                self._keep_bad_copy(index, data)
        return good

    def _keep_bad_copy(self, index: int, data) -> None:
        # (under the lock)
        if self.durability.kind == "raid1" and self.needed == 1:
            try:
                view = _as_bytes_view(data, f"share {index}")
            except MetaError:
                return
            if view.nbytes == self.info.share_size:
                self._bad_copies[index] = bytes(view)

    def rescue(self) -> int | None:
        """raid1 with no good copy: rebuild one from copies each damaged in other places
        (merge_copies; it must match the recorded hash, so nothing wrong is ever made). The
        index it is recorded under (that copy is still bad where it is stored), or None."""
        with self._lock:
            if self._good or len(self._bad_copies) < 2:
                return None
            copies = dict(self._bad_copies)
        expected = {self.info.share_hashes[i] for i in copies}
        if len(expected) != 1:
            return None
        merged = merge_copies(list(copies.values()), expected.pop())
        if merged is None:
            return None
        index = min(copies)
        with self._lock:
            self._good[index] = merged
            self._unhashed.discard(index)
        return index

    def _hash_unhashed(self, indexes) -> list[int]:
        """Check the hashes deferred for ``indexes``; drop those that fail. Returns them."""
        with self._lock:
            suspects = {i: self._good[i] for i in indexes if i in self._unhashed}
        failed = [i for i, data in sorted(suspects.items()) if not self.check(i, data)]
        with self._lock:
            self._unhashed.difference_update(suspects)
            for index in failed:
                self._good.pop(index, None)
                self._bad.add(index)
                self._keep_bad_copy(index, suspects[index])
        return failed

    def _check_index(self, index) -> None:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < self.total:
            raise MetaError(f"share index {index!r} is outside {self.durability} "
                            f"(0..{self.total - 1})")

    def _select(self) -> tuple[dict[int, bytes], list[int], list[int]]:
        with self._lock:
            good, bad = dict(self._good), sorted(self._bad)
        if len(good) < self.needed:
            missing = [i for i in range(self.total) if i not in good and i not in bad]
            raise NotEnoughShares(
                f"{self.durability} needs {self.needed} good shares to rebuild the chunk; "
                f"{len(good)} good ({sorted(good) or 'none'}), {len(bad)} failed their hash "
                f"({bad or 'none'}), {len(missing)} missing ({missing or 'none'})",
                needed=self.needed, good=sorted(good), bad=bad, missing=missing)
        # Ascending index order puts rs data shares (0..K-1) first: decoding those needs no
        # Reed-Solomon arithmetic at all.
        used = sorted(good)[:self.needed]
        return good, used, bad

    def _data_blocks(self) -> tuple[list, list[int], list[int]]:
        """The K data blocks (raid1: the one copy) from the best good shares -> (blocks, used,
        bad). Data shares are used as they are; missing ones are recomputed by zfec."""
        good, used, bad = self._select()
        dur = self.durability
        blocks = [good[i] for i in used]
        if dur.kind == "rs" and used != list(range(dur.k)):
            blocks = _decoder(dur.k, dur.total_shares).decode(tuple(blocks), tuple(used))
        return blocks, used, bad

    def ciphertext(self) -> tuple[bytes, list[int], list[int]]:
        """The chunk's ciphertext rebuilt from the good shares -> (ciphertext, used, bad)."""
        # Nothing authenticates a ciphertext handed out as such: every share is hashed first.
        self._hash_unhashed(list(self._good))
        blocks, used, bad = self._data_blocks()
        return _join(blocks, self.info.share_size, self.info.ciphertext_size), used, bad

    def decode(self, chunk_id: str, data_key: bytes | None = None) -> DecodeResult:
        chunk_id = _check_chunk_id(chunk_id)
        info = self.info
        key = _check_key(info.encryption, data_key, chunk_id=chunk_id)
        blocks, used, bad = self._data_blocks()
        if key is None:
            data = _join(blocks, info.share_size, info.ciphertext_size)
        else:
            try:
                data = _decrypt_blocks(AESGCM(key), info.nonce, associated_data(chunk_id),
                                       blocks, info.share_size, info.ciphertext_size)
            except InvalidTag:
                failed = self._hash_unhashed(used)
                if failed:
                    raise SharesFailedCheck(
                        f"chunk {chunk_id}: shares {failed} do not match their recorded "
                        f"hashes", bad=failed) from None
                raise IntegrityError(
                    f"chunk {chunk_id} does not authenticate (AES-256-GCM tag mismatch): the data "
                    f"key, the chunk id or the metadata is not this chunk's, or shares "
                    f"{used} were forged with matching hashes") from None
        if len(data) != info.size:   # cannot happen for authenticated data; never return garbage
            raise IntegrityError(f"chunk {chunk_id} decoded to {len(data)} bytes, expected "
                                 f"{info.size}")
        if info.md5 is not None and (
                hashlib.md5(data, usedforsecurity=False).hexdigest() != info.md5):
            raise IntegrityError(f"chunk {chunk_id} decrypted but its MD5 does not match the "
                                 f"recorded {info.md5}: the metadata was altered")
        return DecodeResult(data, bad, used)


# merge_copies: copies are compared in blocks of this size, and at most this many ways of
# taking each damaged region from one copy or another are hashed.
MERGE_BLOCK = 4096
MERGE_MAX_TRIES = 256


def merge_copies(copies: list[bytes], expected_sha256: str) -> bytes | None:
    """One intact copy made from raid1 copies that are each damaged in other places (bit rot
    on two storages), or None. Where the copies differ, runs of differing blocks are regions,
    each taken whole from one copy or another; every way of choosing is hashed until one
    matches the recorded SHA-256 — only then is it returned, so a wrong merge cannot come out.
    Bounded: a region of three different versions, or too many regions, is not tried."""
    size = len(copies[0])
    if len(copies) < 2 or any(len(c) != size for c in copies):
        return None
    views = [memoryview(c) for c in copies]
    regions: list[tuple[int, int]] = []
    start = None
    for offset in range(0, size, MERGE_BLOCK):
        end = min(size, offset + MERGE_BLOCK)
        first = views[0][offset:end]
        differs = any(v[offset:end] != first for v in views[1:])
        if differs and start is None:
            start = offset
        elif not differs and start is not None:
            regions.append((start, offset))
            start = None
    if start is not None:
        regions.append((start, size))
    choices = []
    tries = 1
    for begin, end in regions:
        versions = list(dict.fromkeys(bytes(v[begin:end]) for v in views))
        choices.append(versions)
        tries *= len(versions)
        if tries > MERGE_MAX_TRIES:
            return None
    merged = bytearray(copies[0])
    for picks in itertools.product(*choices):
        for (begin, end), version in zip(regions, picks, strict=True):
            merged[begin:end] = version
        if hashlib.sha256(merged).hexdigest() == expected_sha256:
            return bytes(merged)
    return None


def _join(blocks, share_size: int, ct_size: int) -> bytes:
    """Concatenate the K data blocks and drop the zero padding, in one copy."""
    if len(blocks) == 1 and share_size == ct_size and type(blocks[0]) is bytes:
        return blocks[0]
    pieces, remaining = [], ct_size
    for block in blocks:
        if remaining <= 0:
            break
        pieces.append(block if remaining >= share_size else memoryview(block)[:remaining])
        remaining -= share_size
    return b"".join(pieces)


_scratch = threading.local()


def _decrypt_blocks(aes: AESGCM, nonce: bytes, aad: bytes, blocks, share_size: int,
                    ct_size: int) -> bytes:
    """Decrypt the ciphertext held in ``blocks`` (share_size bytes each, last ones padded).

    One block is decrypted as is. Several are first copied into a per-thread scratch buffer that
    is reused from chunk to chunk: the ciphertext needs to be contiguous for the one-shot GCM
    call, and a fresh 4 MiB buffer per chunk costs more in page faults (glibc returns freed
    memory to the kernel and the next chunk touches it again) than the copy itself.
    """
    if len(blocks) == 1:
        block = blocks[0]
        return aes.decrypt(nonce, block if share_size == ct_size else
                           memoryview(block)[:ct_size], aad)
    buf = getattr(_scratch, "buf", None)
    if buf is None or len(buf) < ct_size:
        buf = _scratch.buf = bytearray(max(ct_size, MAX_CHUNK_SIZE + TAG_SIZE))
    with memoryview(buf) as view:
        offset = 0
        for block in blocks:
            take = min(share_size, ct_size - offset)
            if take <= 0:
                break
            view[offset:offset + take] = block if take == share_size else (
                memoryview(block)[:take])
            offset += take
        with view[:ct_size] as ciphertext:
            return aes.decrypt(nonce, ciphertext, aad)


def _collect(shares: Mapping[int, bytes], meta, *, verify_all: bool = False) -> ShareCollector:
    collector = ShareCollector(meta)
    if not isinstance(shares, Mapping):
        raise MetaError(f"shares must be a dict {{index: bytes}}; got {type(shares).__name__}")
    for index in shares:
        collector._check_index(index)
    # Unless told to check all, verify only what is needed: data shares first, stop at `needed`
    # good ones.
    for index in sorted(shares):
        if collector.enough and not verify_all:
            break
        collector.add(index, shares[index])
    return collector


def decode(chunk_id: str, shares: Mapping[int, bytes], meta: Mapping | ChunkMeta,
           data_key: bytes | None = None) -> DecodeResult:
    """Rebuild a chunk from any of its shares ({index: bytes}) and its metadata.

    Shares are verified in index order (data shares first) until ``needed`` are good; shares past
    that are not read. Raises :class:`NotEnoughShares` when too few are good, and
    :class:`IntegrityError` when the result does not authenticate.
    """
    return _collect(shares, meta).decode(chunk_id, data_key)


def decode_into(chunk_id: str, shares: Mapping[int, bytes], meta: Mapping | ChunkMeta,
                data_key: bytes | None, out) -> int:
    """decode(), the chunk's bytes written into `out` (a writable buffer of at least its size)
    rather than into new memory; returns how many. A chunk decrypted from one share (raid1)
    goes straight from the share into `out`: a reader that reuses its buffers from chunk to
    chunk touches no new memory, which on the benchmark's VM costs more than the decryption.
    Shares are checked as the read path checks them (the GCM tag; hashes if it fails). Raises
    as decode does; after an error `out` holds nothing meaningful."""
    chunk_id = _check_chunk_id(chunk_id)
    info = meta if isinstance(meta, ChunkMeta) else ChunkMeta.from_dict(meta)
    target = memoryview(out).cast("B")
    if target.readonly or target.nbytes < info.size:
        raise MetaError(f"decode_into needs a writable buffer of at least {info.size} bytes")
    collector = ShareCollector(info, hash_on_failure=True)
    if info.durability.needed == 1 and info.encryption.encrypted and info.md5 is None and \
            len(shares) == 1:
        ((index, share),) = shares.items()
        collector._check_index(index)
        view = _as_bytes_view(share, f"share {index}")
        key = _check_key(info.encryption, data_key, chunk_id=chunk_id)
        if view.nbytes == info.share_size:
            try:
                AESGCM(key).decrypt_into(info.nonce, view[:info.ciphertext_size],
                                         associated_data(chunk_id), target[:info.size])
                return info.size
            except InvalidTag:
                pass        # decoded below, the hashes saying which share is wrong
    for index in sorted(shares):
        collector.add(index, shares[index])
    data = collector.decode(chunk_id, data_key).data
    target[:len(data)] = data
    return len(data)


def rebuild(shares: Mapping[int, bytes], meta: Mapping | ChunkMeta,
            indexes: Iterable[int] | None = None) -> RebuildResult:
    """Re-create lost shares (default: every index not given, or given but bad) without the key.

    Works on ciphertext only, so the scrub can repair without unwrapping data keys. Every given
    share is verified (this is the scrub's path, not the hot read path), and each rebuilt share is
    checked against its recorded hash before it is returned.
    """
    collector = _collect(shares, meta, verify_all=True)
    info, dur = collector.info, collector.durability
    blocks, used, bad = collector._data_blocks()
    if indexes is None:
        wanted = sorted(collector.wanted() + bad)
    else:
        wanted = sorted(set(indexes))
        for index in wanted:
            collector._check_index(index)
    if dur.kind == "raid1":
        out = {i: blocks[0] for i in wanted}
    else:
        parity = [i for i in wanted if i >= dur.k]
        out = {i: blocks[i] for i in wanted if i < dur.k}
        if parity and info.share_size:
            out.update(zip(parity, _encoder(dur.k, dur.total_shares).encode(
                tuple(blocks), tuple(parity)), strict=True))
        elif parity:
            out.update((i, b"") for i in parity)
    for index, share in out.items():
        if hashlib.sha256(share).hexdigest() != info.share_hashes[index]:
            raise IntegrityError(f"rebuilt share {index} does not match its recorded hash: the "
                                 f"shares {used} or the metadata are inconsistent")
    return RebuildResult(out, bad, used)
