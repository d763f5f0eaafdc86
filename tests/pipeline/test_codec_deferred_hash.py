"""Reading with deferred hashes (ShareCollector(hash_on_failure=True), the read path): an
encrypted chunk's shares are hashed only when it fails to authenticate, and then the bad ones
are found, dropped and reported; nothing that failed a check is ever returned."""
import pytest
from cloudstrype.pipeline.codec import (
    IntegrityError,
    NotEnoughShares,
    ShareCollector,
    SharesFailedCheck,
    encode,
    new_data_key,
)

SIZE = 100_003


def _flip(share: bytes, at: int) -> bytes:
    return share[:at] + bytes([share[at] ^ 0xFF]) + share[at + 1:]


@pytest.mark.parametrize("encryption", ["aes256-gcm", "aes256-md5"])
def test_a_corrupt_copy_is_found_when_the_tag_fails_and_another_copy_is_used(rng, encryption):
    data, key = rng.randbytes(SIZE), new_data_key()
    encoded = encode("chunk-a", data, encryption, "raid1(3)", key)
    collector = ShareCollector(encoded.meta, hash_on_failure=True)
    # Same size, one byte changed: only the tag (or the hash) can tell.
    assert collector.add(0, _flip(encoded.shares[0], 1000))
    assert collector.enough

    with pytest.raises(SharesFailedCheck) as failed:
        collector.decode("chunk-a", key)

    assert failed.value.bad == [0]
    assert collector.bad_shares == [0] and not collector.enough
    assert collector.wanted() == [1, 2]
    assert collector.add(1, encoded.shares[1])
    result = collector.decode("chunk-a", key)
    assert result.data == data and result.used_shares == [1] and result.bad_shares == [0]


def test_a_corrupt_rs_data_share_is_replaced_by_a_parity_share(rng):
    data, key = rng.randbytes(SIZE), new_data_key()
    encoded = encode("chunk-a", data, "aes256-gcm", "rs(4,2)", key)
    collector = ShareCollector(encoded.meta, hash_on_failure=True)
    for index in range(4):
        share = encoded.shares[index]
        assert collector.add(index, _flip(share, 7) if index == 2 else share)

    with pytest.raises(SharesFailedCheck) as failed:
        collector.decode("chunk-a", key)
    assert failed.value.bad == [2]

    assert collector.add(5, encoded.shares[5])
    result = collector.decode("chunk-a", key)
    assert result.data == data
    assert result.used_shares == [0, 1, 3, 5] and result.bad_shares == [2]


def test_good_shares_and_the_wrong_key_is_an_integrity_error_not_bad_shares(rng):
    data, key = rng.randbytes(SIZE), new_data_key()
    encoded = encode("chunk-a", data, "aes256-gcm", "raid1(2)", key)
    collector = ShareCollector(encoded.meta, hash_on_failure=True)
    assert collector.add(0, encoded.shares[0])

    with pytest.raises(IntegrityError):
        collector.decode("chunk-a", new_data_key())
    # The share was hashed on the failure and is good: it stays, and the right key reads it.
    assert collector.good_shares == [0] and collector.bad_shares == []
    assert collector.decode("chunk-a", key).data == data


def test_a_share_of_the_wrong_size_is_refused_at_once(rng):
    encoded = encode("chunk-a", rng.randbytes(SIZE), "aes256-gcm", "raid1(2)", new_data_key())
    collector = ShareCollector(encoded.meta, hash_on_failure=True)
    assert not collector.add(0, encoded.shares[0][:-1])
    assert collector.bad_shares == [0]


def test_unencrypted_shares_are_still_hashed_on_arrival(rng):
    # Nothing else checks an unencrypted chunk: its hash is checked when it arrives.
    data = rng.randbytes(SIZE)
    encoded = encode("chunk-a", data, "none", "raid1(2)")
    collector = ShareCollector(encoded.meta, hash_on_failure=True)
    assert not collector.add(0, _flip(encoded.shares[0], 5))
    assert collector.add(1, encoded.shares[1])
    assert collector.decode("chunk-a").data == data


def test_the_ciphertext_is_handed_out_only_from_hashed_shares(rng):
    data, key = rng.randbytes(SIZE), new_data_key()
    encoded = encode("chunk-a", data, "aes256-gcm", "rs(2,1)", key)
    collector = ShareCollector(encoded.meta, hash_on_failure=True)
    assert collector.add(0, _flip(encoded.shares[0], 3)) and collector.add(1, encoded.shares[1])
    with pytest.raises(NotEnoughShares):
        collector.ciphertext()
    assert collector.bad_shares == [0]
    assert collector.add(2, encoded.shares[2])
    ciphertext, used, bad = collector.ciphertext()
    assert used == [1, 2] and bad == [0]
    assert len(ciphertext) == encoded.ciphertext_size
