"""encode -> decode round trips, the metadata, keys and the encoded layout."""
import hashlib
import json
import random

import pytest
from cloudstrype.pipeline import codec
from cloudstrype.pipeline.codec import (
    ChunkTooLarge,
    MetaError,
    associated_data,
    decode,
    encode,
    new_data_key,
    rebuild,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MiB = 1024 * 1024
ENCRYPTIONS = ["none", "aes256-gcm", "aes256-md5"]
DURABILITIES = ["raid1(1)", "raid1(3)", "rs(1,1)", "rs(3,2)", "rs(4,2)", "rs(10,4)"]
SIZES = [0, 1, 4095, 4 * MiB]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("durability", DURABILITIES)
@pytest.mark.parametrize("encryption", ENCRYPTIONS)
def test_round_trip(encryption, durability, size, rng, key_for):
    data = rng.randbytes(size)
    key = key_for(encryption)
    encoded = encode("chunk-1", data, encryption, durability, key)
    meta = json.loads(json.dumps(encoded.meta))          # what the chunk table stores
    shares = dict(enumerate(encoded.shares))
    assert all(type(s) is bytes for s in encoded.shares)
    assert len(encoded.shares) == codec.parse_durability(durability).total_shares
    assert encoded.share_hashes == [hashlib.sha256(s).hexdigest() for s in encoded.shares]
    assert {len(s) for s in encoded.shares} == {meta["share_size"]}

    result = decode("chunk-1", shares, meta, key)
    assert result.data == data
    assert type(result.data) is bytes
    assert result.bad_shares == []
    needed = codec.parse_durability(durability).needed
    assert result.used_shares == list(range(needed))


@pytest.mark.parametrize("encryption", ENCRYPTIONS)
def test_meta_fields(encryption, rng, key_for):
    data = rng.randbytes(1000)
    key = key_for(encryption)
    meta = encode("c", data, encryption, " RS(4, 2) ", key).meta
    assert set(meta) == {"format", "encryption", "durability", "size", "ciphertext_size",
                         "share_size", "nonce", "md5", "hash", "share_hashes"}
    assert meta["format"] == 1 and meta["hash"] == "sha256"
    assert meta["encryption"] == encryption and meta["durability"] == "rs(4,2)"
    assert meta["size"] == 1000
    encrypted = encryption != "none"
    assert meta["ciphertext_size"] == 1000 + (16 if encrypted else 0)
    assert meta["share_size"] == -(-meta["ciphertext_size"] // 4)
    assert (meta["nonce"] is not None and len(bytes.fromhex(meta["nonce"])) == 12) == encrypted
    if encryption == "aes256-md5":
        assert meta["md5"] == hashlib.md5(data).hexdigest()
    else:
        assert meta["md5"] is None
    assert len(meta["share_hashes"]) == 6
    assert json.loads(json.dumps(meta)) == meta


def test_layout_is_gcm_ciphertext_split_and_padded(rng):
    """Data shares are exactly AES-256-GCM(plaintext, AAD=chunk id) cut into K padded blocks, and
    the parity comes from zfec: any tool that knows the format can rebuild a chunk."""
    import zfec
    for size in (0, 1, 47, 48, 49, 1000, 65536 + 3):
        data, key = rng.randbytes(size), new_data_key()
        encoded = encode("layout", data, "aes256-gcm", "rs(3,2)", key)
        ciphertext = AESGCM(key).encrypt(encoded.nonce, data, associated_data("layout"))
        block = -(-len(ciphertext) // 3)
        padded = ciphertext + bytes(3 * block - len(ciphertext))
        expected = [padded[i * block:(i + 1) * block] for i in range(3)]
        assert encoded.shares[:3] == expected
        assert encoded.shares[3:] == zfec.Encoder(3, 5).encode(tuple(expected), (3, 4))


def test_raid1_shares_are_one_object(rng):
    encoded = encode("c", rng.randbytes(5000), "aes256-gcm", "raid1(3)", new_data_key())
    assert encoded.shares[0] is encoded.shares[1] is encoded.shares[2]


def test_each_encode_uses_a_fresh_nonce(rng):
    data, key = rng.randbytes(100), new_data_key()
    first = encode("c", data, "aes256-gcm", "raid1(1)", key)
    second = encode("c", data, "aes256-gcm", "raid1(1)", key)
    assert first.nonce != second.nonce
    assert first.shares[0] != second.shares[0]


def test_data_key_is_generated_when_not_given(rng):
    data = rng.randbytes(100)
    encoded = encode("c", data, "aes256-gcm", "rs(3,2)")
    assert isinstance(encoded.data_key, bytes) and len(encoded.data_key) == 32
    assert decode("c", dict(enumerate(encoded.shares)), encoded.meta, encoded.data_key).data == data
    assert len({new_data_key() for _ in range(4)}) == 4


def test_default_encryption_is_aes256_gcm(rng):
    assert encode("c", b"x", None, "raid1(1)").meta["encryption"] == "aes256-gcm"


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_accepts_bytes_like(kind, rng, key_for):
    data = rng.randbytes(3000)
    for encryption in ENCRYPTIONS:
        key = key_for(encryption)
        encoded = encode("c", kind(data), encryption, "rs(3,2)", key)
        shares = {i: kind(s) for i, s in enumerate(encoded.shares)}
        assert decode("c", shares, encoded.meta, key).data == data


def test_key_rules(rng):
    with pytest.raises(MetaError, match="32 bytes"):
        encode("c", b"x", "aes256-gcm", "raid1(1)", b"short")
    with pytest.raises(MetaError, match="data_key=None"):
        encode("c", b"x", "none", "raid1(1)", new_data_key())
    encoded = encode("c", b"x", "aes256-gcm", "raid1(1)", new_data_key())
    with pytest.raises(MetaError, match="pass its data key"):
        decode("c", {0: encoded.shares[0]}, encoded.meta, None)
    plain = encode("c", b"x", "none", "raid1(1)")
    with pytest.raises(MetaError, match="data_key=None"):
        decode("c", {0: plain.shares[0]}, plain.meta, new_data_key())


def test_chunk_size_limit(rng):
    encode("c", bytes(4 * MiB), "none", "raid1(1)")
    with pytest.raises(ChunkTooLarge, match="at most 4194304") as info:
        encode("c", bytes(4 * MiB + 1), "none", "raid1(1)")
    assert info.value.status == 413


@pytest.mark.parametrize("chunk_id", ["", None, 7])
def test_chunk_id_must_be_a_string(chunk_id):
    with pytest.raises(MetaError, match="chunk_id"):
        encode(chunk_id, b"x", "aes256-gcm", "raid1(1)")


def test_scheme_errors_surface_from_encode():
    with pytest.raises(codec.SchemeError, match="at most 32"):
        encode("c", b"x", "aes256-gcm", "rs(20,20)")
    with pytest.raises(codec.SchemeError, match="unknown encryption"):
        encode("c", b"x", "des", "rs(2,1)")


@pytest.mark.parametrize("encryption", ENCRYPTIONS)
@pytest.mark.parametrize("durability", ["raid1(3)", "rs(3,2)", "rs(10,4)"])
def test_rebuild_recreates_lost_shares_without_the_key(encryption, durability, rng, key_for):
    data = rng.randbytes(20000 + 7)
    key = key_for(encryption)
    encoded = encode("c", data, encryption, durability, key)
    dur = codec.parse_durability(durability)
    survivors = random.Random(1).sample(range(dur.total_shares), dur.needed)
    result = rebuild({i: encoded.shares[i] for i in survivors}, encoded.meta)
    lost = sorted(set(range(dur.total_shares)) - set(survivors))
    assert sorted(result.shares) == lost
    for index, share in result.shares.items():
        assert share == encoded.shares[index]
    # Asking for specific indexes, including one that is present.
    again = rebuild(dict(enumerate(encoded.shares)), encoded.meta, [0, dur.total_shares - 1])
    assert again.shares == {0: encoded.shares[0],
                            dur.total_shares - 1: encoded.shares[dur.total_shares - 1]}


def test_rebuild_replaces_bad_shares(rng):
    encoded = encode("c", rng.randbytes(3000), "aes256-gcm", "rs(3,2)", new_data_key())
    shares = dict(enumerate(encoded.shares))
    shares[4] = b"\x00" + shares[4][1:]
    result = rebuild(shares, encoded.meta)
    assert result.bad_shares == [4]
    assert result.shares == {4: encoded.shares[4]}


@pytest.mark.parametrize("mutate, message", [
    (lambda m: m.pop("nonce"), "nonce"),
    (lambda m: m.pop("size"), "lacks 'size'"),
    (lambda m: m.update(format=2), "format 2"),
    (lambda m: m.update(hash="md5"), "share hash"),
    (lambda m: m.update(size="12"), "wrong type"),
    (lambda m: m.update(size=13), "sizes do not agree"),
    (lambda m: m.update(share_size=1), "sizes do not agree"),
    (lambda m: m["share_hashes"].pop(), "5 hex SHA-256"),
    (lambda m: m.update(durability="rs(9,9,9)"), "bad scheme"),
    (lambda m: m.update(durability="rs(4,1)"), "sizes do not agree"),
])
def test_malformed_meta_is_a_clear_error(mutate, message, rng):
    key = new_data_key()
    encoded = encode("c", rng.randbytes(1000), "aes256-gcm", "rs(3,2)", key)
    meta = json.loads(json.dumps(encoded.meta))
    mutate(meta)
    with pytest.raises(MetaError, match=message):
        decode("c", dict(enumerate(encoded.shares)), meta, key)


def test_reprs_are_short(rng):
    encoded = encode("c", rng.randbytes(4 * MiB), "aes256-gcm", "rs(4,2)", new_data_key())
    result = decode("c", dict(enumerate(encoded.shares)), encoded.meta, encoded.data_key)
    assert len(repr(encoded)) < 200 and len(repr(result)) < 200
    assert encoded.data_key.hex() not in repr(encoded)
