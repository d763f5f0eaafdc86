"""codec.decode_into: decode() into the caller's buffer (the CLI's direct reads reuse theirs
from chunk to chunk). It gives decode()'s bytes for every scheme, refuses what decode refuses,
and a share that is not the chunk's never comes out as its bytes."""
import pytest
from cloudstrype.pipeline.codec import (
    CodecError,
    IntegrityError,
    MetaError,
    NotEnoughShares,
    SharesFailedCheck,
    decode,
    decode_into,
    encode,
    new_data_key,
)

from tests.pipeline.test_codec_deferred_hash import SIZE, _flip


@pytest.mark.parametrize("encryption, durability, used", [
    ("aes256-gcm", "raid1(3)", [2]),           # one copy, decrypted straight into the buffer
    ("aes256-gcm", "rs(3,2)", [0, 1, 2]),      # the data shares
    ("aes256-gcm", "rs(3,2)", [1, 3, 4]),      # rebuilt from parity
    ("aes256-md5", "raid1(2)", [0]),
    ("none", "raid1(2)", [1]),
    ("none", "rs(2,1)", [0, 2]),
])
def test_it_gives_what_decode_gives(rng, encryption, durability, used):
    data = rng.randbytes(SIZE)
    key = None if encryption == "none" else new_data_key()
    encoded = encode("chunk-a", data, encryption, durability, key)
    shares = {i: encoded.shares[i] for i in used}
    out = bytearray(SIZE + 50)              # larger than the chunk: its start is used

    assert decode_into("chunk-a", shares, encoded.meta, key, out) == SIZE
    assert bytes(out[:SIZE]) == data == decode("chunk-a", shares, encoded.meta, key).data


def test_a_buffer_is_reused_from_chunk_to_chunk(rng):
    out = bytearray(SIZE)
    for name in ("chunk-a", "chunk-b"):
        data, key = rng.randbytes(SIZE), new_data_key()
        encoded = encode(name, data, "aes256-gcm", "raid1(2)", key)
        assert decode_into(name, {1: memoryview(encoded.shares[1])}, encoded.meta, key,
                           out) == SIZE
        assert bytes(out) == data


def test_a_corrupt_copy_is_named_and_never_given(rng):
    data, key = rng.randbytes(SIZE), new_data_key()
    encoded = encode("chunk-a", data, "aes256-gcm", "raid1(3)", key)
    out = bytearray(SIZE)

    with pytest.raises(SharesFailedCheck) as failed:
        decode_into("chunk-a", {0: _flip(encoded.shares[0], 77)}, encoded.meta, key, out)
    assert failed.value.bad == [0]


@pytest.mark.parametrize("wrong", ["key", "chunk id"])
def test_the_wrong_key_or_chunk_does_not_authenticate(rng, wrong):
    data, key = rng.randbytes(SIZE), new_data_key()
    encoded = encode("chunk-a", data, "aes256-gcm", "raid1(2)", key)
    with pytest.raises(IntegrityError):
        decode_into("chunk-b" if wrong == "chunk id" else "chunk-a", {0: encoded.shares[0]},
                    encoded.meta, new_data_key() if wrong == "key" else key, bytearray(SIZE))


def test_a_share_of_another_size_is_not_the_chunk(rng):
    data, key = rng.randbytes(SIZE), new_data_key()
    encoded = encode("chunk-a", data, "aes256-gcm", "raid1(2)", key)
    with pytest.raises(NotEnoughShares):
        decode_into("chunk-a", {0: encoded.shares[0] + b"x"}, encoded.meta, key,
                    bytearray(SIZE))


@pytest.mark.parametrize("out", [bytearray(SIZE - 1), bytes(SIZE)], ids=["small", "read-only"])
def test_a_buffer_it_cannot_fill_is_refused(rng, out):
    data, key = rng.randbytes(SIZE), new_data_key()
    encoded = encode("chunk-a", data, "aes256-gcm", "raid1(2)", key)
    with pytest.raises(MetaError, match="writable buffer"):
        decode_into("chunk-a", {0: encoded.shares[0]}, encoded.meta, key, out)


def test_too_few_shares_are_refused(rng):
    data, key = rng.randbytes(SIZE), new_data_key()
    encoded = encode("chunk-a", data, "aes256-gcm", "rs(3,2)", key)
    with pytest.raises(CodecError):
        decode_into("chunk-a", {0: encoded.shares[0], 4: encoded.shares[4]}, encoded.meta, key,
                    bytearray(SIZE))
