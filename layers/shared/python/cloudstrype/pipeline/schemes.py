"""Parsing the chunk schemes: an encryption name and a durability spec.

Encryption (case-insensitive, surrounding whitespace ignored; blank or None means the default):

- ``aes256-gcm`` (default): AES-256-GCM with a per-chunk data key.
- ``aes256-md5``: the seed's name. Implemented as AES-256-GCM *plus* an MD5 of the plaintext that
  is recorded in the chunk's metadata and checked again after decryption. It is never weaker than
  ``aes256-gcm``; the MD5 is a compatibility checksum, not the integrity mechanism.
- ``none``: the chunk is stored as is (still hashed per share, still erasure-coded or copied).

Durability (case-insensitive, whitespace anywhere between the tokens is ignored):

- ``raid1(N)``: N identical full copies, 1 <= N <= 16; any one rebuilds the chunk.
- ``rs(K,M)``: Reed-Solomon (zfec), K data shares + M parity shares, K >= 1, M >= 1, K+M <= 32;
  any K rebuild the chunk.

Both parse to small frozen objects whose ``str()`` is the canonical form (``aes256-gcm``,
``raid1(3)``, ``rs(4,2)``). A malformed value raises :class:`SchemeError` (a ``ValueError``, and a
400 ``bad_scheme`` API error) whose message says what to write instead.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from cloudstrype.errors import ApiError, BadRequest

__all__ = [
    "AES256_GCM", "AES256_MD5", "CodecError", "DEFAULT_ENCRYPTION", "Durability", "ENCRYPTIONS",
    "Encryption", "MAX_RAID1_COPIES", "MAX_RS_SHARES", "NONE", "SchemeError", "parse_durability",
    "parse_encryption",
]

MAX_RAID1_COPIES = 16
MAX_RS_SHARES = 32
_MAX_SPEC_LEN = 64

DURABILITY_HELP = (f"use raid1(N) for N full copies (1 <= N <= {MAX_RAID1_COPIES}) or rs(K,M) for "
                   f"Reed-Solomon with K data + M parity shares (K >= 1, M >= 1, "
                   f"K+M <= {MAX_RS_SHARES}), e.g. raid1(3) or rs(4,2)")


class CodecError(ApiError):
    """Base of every error the chunk codec raises."""
    status, code = 500, "chunk_codec_error"


class SchemeError(CodecError, BadRequest, ValueError):
    """An encryption or durability value that cannot be used; the message says what to fix."""
    status, code = 400, "bad_scheme"


# --- encryption --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Encryption:
    name: str                  # canonical name
    encrypted: bool            # AES-256-GCM with a data key
    checksum: str | None       # plaintext checksum recorded in the metadata ("md5") or None

    def __str__(self) -> str:
        return self.name


NONE = Encryption("none", encrypted=False, checksum=None)
AES256_GCM = Encryption("aes256-gcm", encrypted=True, checksum=None)
AES256_MD5 = Encryption("aes256-md5", encrypted=True, checksum="md5")
ENCRYPTIONS = {e.name: e for e in (AES256_GCM, AES256_MD5, NONE)}
DEFAULT_ENCRYPTION = AES256_GCM


def parse_encryption(value: str | Encryption | None = None) -> Encryption:
    """``'AES256-GCM '`` -> ``AES256_GCM``; None or blank -> the default (``aes256-gcm``)."""
    if isinstance(value, Encryption):
        return value
    if value is None:
        return DEFAULT_ENCRYPTION
    if not isinstance(value, str):
        raise SchemeError(f"encryption must be a string, one of {', '.join(ENCRYPTIONS)}; "
                          f"got {type(value).__name__}")
    name = value.strip().lower()
    if not name:
        return DEFAULT_ENCRYPTION
    try:
        return ENCRYPTIONS[name]
    except KeyError:
        raise SchemeError(f"unknown encryption {_show(value)}: use one of "
                          f"{', '.join(ENCRYPTIONS)} (default {DEFAULT_ENCRYPTION})") from None


# --- durability --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Durability:
    """``raid1(N)`` (kind "raid1", copies N) or ``rs(K,M)`` (kind "rs", K data + M parity).

    Build one with :meth:`raid1`, :meth:`rs` or :func:`parse_durability`; the constructor
    validates the numbers either way.
    """
    kind: str           # "raid1" | "rs"
    k: int              # raid1: 1; rs: K, the data shares
    m: int              # raid1: N-1 (the extra copies); rs: M, the parity shares

    def __post_init__(self):
        if self.kind == "raid1":
            n = self.m + 1
            if self.k != 1 or not 1 <= n <= MAX_RAID1_COPIES:
                raise SchemeError(f"raid1({n}): N is the number of full copies and must be between "
                                  f"1 and {MAX_RAID1_COPIES}")
        elif self.kind == "rs":
            spec = f"rs({self.k},{self.m})"
            if self.k < 1:
                raise SchemeError(f"{spec}: K, the number of data shares, must be at least 1; "
                                  + DURABILITY_HELP)
            if self.m < 1:
                raise SchemeError(f"{spec}: M, the number of parity shares, must be at least 1 "
                                  f"(for plain copies use raid1(N)); " + DURABILITY_HELP)
            if self.k + self.m > MAX_RS_SHARES:
                raise SchemeError(f"{spec}: K+M = {self.k + self.m} shares, at most "
                                  f"{MAX_RS_SHARES} are allowed; " + DURABILITY_HELP)
        else:
            raise SchemeError(f"unknown durability kind {self.kind!r}; " + DURABILITY_HELP)

    @classmethod
    def raid1(cls, n: int) -> "Durability":
        return cls("raid1", 1, n - 1)

    @classmethod
    def rs(cls, k: int, m: int) -> "Durability":
        return cls("rs", k, m)

    @property
    def total_shares(self) -> int:
        """How many shares are written (N for raid1, K+M for rs)."""
        return self.k + self.m

    @property
    def needed(self) -> int:
        """How many good shares rebuild the chunk (1 for raid1, K for rs)."""
        return self.k

    @property
    def tolerates(self) -> int:
        """How many shares may be lost (N-1 for raid1, M for rs)."""
        return self.m

    def is_data_share(self, index: int) -> bool:
        """Whether share ``index`` holds ciphertext as is (cheapest to decode from)."""
        return 0 <= index < (self.total_shares if self.kind == "raid1" else self.k)

    def __str__(self) -> str:
        if self.kind == "raid1":
            return f"raid1({self.total_shares})"
        return f"rs({self.k},{self.m})"


_DURABILITY_RE = re.compile(r"\s*([A-Za-z0-9_-]*)\s*(?:\((.*)\))?\s*", re.S)
_INT_RE = re.compile(r"\d{1,4}")


def parse_durability(value: str | Durability) -> Durability:
    """``' RS( 4 , 2 )'`` -> ``Durability.rs(4, 2)``; ``'raid1(3)'`` -> ``Durability.raid1(3)``."""
    if isinstance(value, Durability):
        return value
    if value is None:
        raise SchemeError("durability is required: " + DURABILITY_HELP)
    if not isinstance(value, str):
        raise SchemeError(f"durability must be a string; got {type(value).__name__}: "
                          + DURABILITY_HELP)
    if len(value) > _MAX_SPEC_LEN:
        raise SchemeError(f"durability is {len(value)} characters long, which is not a scheme: "
                          + DURABILITY_HELP)
    match = _DURABILITY_RE.fullmatch(value)
    if not value.strip():
        raise SchemeError("durability is empty: " + DURABILITY_HELP)
    if not match:
        raise SchemeError(f"cannot read durability {_show(value)}: " + DURABILITY_HELP)
    kind, args = match.group(1).lower(), match.group(2)
    if kind not in ("raid1", "rs"):
        raise SchemeError(f"unknown durability {_show(value)}: " + DURABILITY_HELP)
    if args is None:
        example = "raid1(3)" if kind == "raid1" else "rs(4,2)"
        raise SchemeError(f"durability {_show(value)} needs its numbers in parentheses, "
                          f"e.g. {example}")
    parts = [p.strip() for p in args.split(",")]
    for p in parts:
        if not _INT_RE.fullmatch(p):
            what = "is too large" if p.isascii() and p.isdigit() else "is not a whole number"
            raise SchemeError(f"durability {_show(value)}: {_show(p)} {what}; "
                              + DURABILITY_HELP)
    numbers = [int(p) for p in parts]
    if kind == "raid1":
        if len(numbers) != 1:
            raise SchemeError(f"durability {_show(value)}: raid1 takes one number, the count of "
                              f"full copies, e.g. raid1(3)")
        return Durability.raid1(numbers[0])
    if len(numbers) != 2:
        raise SchemeError(f"durability {_show(value)}: rs takes two numbers, K data shares and "
                          f"M parity shares, e.g. rs(4,2)")
    return Durability.rs(numbers[0], numbers[1])


def _show(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")
