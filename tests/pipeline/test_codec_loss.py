"""Lost, corrupted and foreign shares; wrong keys; tampering; streaming collection."""
import hashlib
import itertools
import json
import random
from concurrent.futures import ThreadPoolExecutor

import pytest
from cloudstrype.pipeline.codec import (
    IntegrityError,
    MetaError,
    NotEnoughShares,
    ShareCollector,
    decode,
    encode,
    new_data_key,
)

ENCRYPTIONS = ["none", "aes256-gcm", "aes256-md5"]
SIZE = 100_003      # not a multiple of anything, so padding is exercised


def _losses(total, count):
    return list(itertools.combinations(range(total), count))


@pytest.mark.parametrize("encryption", ENCRYPTIONS)
@pytest.mark.parametrize("durability, total, tolerates", [("rs(3,2)", 5, 2), ("raid1(3)", 3, 2)])
def test_every_loss_up_to_the_redundancy_decodes(encryption, durability, total, tolerates, rng,
                                                 key_for):
    data, key = rng.randbytes(SIZE), key_for(encryption)
    encoded = encode("chunk-a", data, encryption, durability, key)
    tried = 0
    for count in range(tolerates + 1):
        for lost in _losses(total, count):
            shares = {i: s for i, s in enumerate(encoded.shares) if i not in lost}
            result = decode("chunk-a", shares, encoded.meta, key)
            assert result.data == data, lost
            assert result.bad_shares == []
            assert set(result.used_shares).isdisjoint(lost)
            tried += 1
    assert tried == sum(len(_losses(total, c)) for c in range(tolerates + 1))


@pytest.mark.parametrize("encryption", ENCRYPTIONS)
@pytest.mark.parametrize("durability, total, tolerates, needed",
                         [("rs(3,2)", 5, 2, 3), ("raid1(3)", 3, 2, 1)])
def test_one_loss_past_the_redundancy_raises(encryption, durability, total, tolerates, needed,
                                             rng, key_for):
    data, key = rng.randbytes(SIZE), key_for(encryption)
    encoded = encode("chunk-a", data, encryption, durability, key)
    for lost in _losses(total, tolerates + 1):
        shares = {i: s for i, s in enumerate(encoded.shares) if i not in lost}
        with pytest.raises(NotEnoughShares) as info:
            decode("chunk-a", shares, encoded.meta, key)
        error = info.value
        assert error.needed == needed
        assert error.good == sorted(shares) and error.bad == []
        assert error.missing == list(lost)
        assert f"needs {needed} good shares" in str(error)
        assert f"{needed - 1} good" in str(error)
        assert error.status == 503 and error.code == "not_enough_shares"


def _flip(share: bytes, position: int) -> bytes:
    position %= len(share)
    return share[:position] + bytes([share[position] ^ 0x40]) + share[position + 1:]


@pytest.mark.parametrize("encryption", ENCRYPTIONS)
@pytest.mark.parametrize("durability", ["rs(3,2)", "rs(4,2)", "raid1(3)"])
def test_a_flipped_byte_is_reported_and_skipped(encryption, durability, rng, key_for):
    data, key = rng.randbytes(SIZE), key_for(encryption)
    encoded = encode("chunk-a", data, encryption, durability, key)
    total = len(encoded.shares)
    for bad_index in range(total):
        for position in (0, 1234, -1):
            shares = dict(enumerate(encoded.shares))
            shares[bad_index] = _flip(shares[bad_index], position)
            result = decode("chunk-a", shares, encoded.meta, key)
            assert result.data == data
            assert bad_index not in result.used_shares
            # A bad share is only noticed if it was checked; data shares are checked first.
            needed = len(result.used_shares)
            if bad_index < needed:
                assert result.bad_shares == [bad_index]
            else:
                assert result.bad_shares == []


def test_truncated_and_non_bytes_shares_are_bad(rng):
    data, key = rng.randbytes(SIZE), new_data_key()
    encoded = encode("chunk-a", data, "aes256-gcm", "rs(3,2)", key)
    shares = dict(enumerate(encoded.shares))
    shares[0] = shares[0][:-1]
    shares[1] = "not bytes"
    result = decode("chunk-a", shares, encoded.meta, key)
    assert result.data == data
    assert result.bad_shares == [0, 1] and result.used_shares == [2, 3, 4]


def test_too_many_bad_shares_raise_naming_them(rng):
    data, key = rng.randbytes(SIZE), new_data_key()
    encoded = encode("chunk-a", data, "aes256-gcm", "rs(3,2)", key)
    shares = dict(enumerate(encoded.shares))
    for i in (0, 2, 4):
        shares[i] = _flip(shares[i], 7)
    with pytest.raises(NotEnoughShares) as info:
        decode("chunk-a", shares, encoded.meta, key)
    assert info.value.bad == [0, 2, 4] and info.value.good == [1, 3]
    assert "3 failed their hash ([0, 2, 4])" in str(info.value)


def test_more_than_needed_prefers_data_shares(rng):
    data, key = rng.randbytes(SIZE), new_data_key()
    encoded = encode("chunk-a", data, "aes256-gcm", "rs(4,2)", key)
    result = decode("chunk-a", dict(enumerate(encoded.shares)), encoded.meta, key)
    assert result.used_shares == [0, 1, 2, 3]
    # One data share missing: the others plus the first parity share.
    shares = {i: s for i, s in enumerate(encoded.shares) if i != 2}
    assert decode("chunk-a", shares, encoded.meta, key).used_shares == [0, 1, 3, 4]


@pytest.mark.parametrize("encryption", ["aes256-gcm", "aes256-md5"])
@pytest.mark.parametrize("durability", ["rs(3,2)", "raid1(2)"])
def test_wrong_key_fails_clearly(encryption, durability, rng):
    data = rng.randbytes(SIZE)
    encoded = encode("chunk-a", data, encryption, durability, new_data_key())
    with pytest.raises(IntegrityError, match="does not authenticate") as info:
        decode("chunk-a", dict(enumerate(encoded.shares)), encoded.meta, new_data_key())
    assert "chunk-a" in str(info.value)


@pytest.mark.parametrize("encryption", ["aes256-gcm", "aes256-md5"])
def test_chunk_passed_off_as_another_chunk_fails(encryption, rng):
    """Shares and metadata of chunk B, under the same key, presented as chunk A."""
    key = new_data_key()
    other = encode("chunk-b", rng.randbytes(SIZE), encryption, "rs(3,2)", key)
    with pytest.raises(IntegrityError, match="does not authenticate"):
        decode("chunk-a", dict(enumerate(other.shares)), other.meta, key)


@pytest.mark.parametrize("encryption", ENCRYPTIONS)
def test_shares_of_another_chunk_are_bad(encryption, rng, key_for):
    key = key_for(encryption)
    mine = encode("chunk-a", rng.randbytes(SIZE), encryption, "rs(3,2)", key)
    other = encode("chunk-b", rng.randbytes(SIZE), encryption, "rs(3,2)", key)
    # One foreign share among good ones: skipped, reported.
    shares = dict(enumerate(mine.shares))
    shares[1] = other.shares[1]
    result = decode("chunk-a", shares, mine.meta, key)
    assert result.bad_shares == [1] and result.used_shares == [0, 2, 3]
    # All foreign: nothing good.
    with pytest.raises(NotEnoughShares) as info:
        decode("chunk-a", dict(enumerate(other.shares)), mine.meta, key)
    assert info.value.bad == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("durability", ["rs(3,2)", "raid1(3)"])
def test_aes256_md5_records_and_checks_md5(durability, rng):
    data, key = rng.randbytes(SIZE), new_data_key()
    encoded = encode("chunk-a", data, "aes256-md5", durability, key)
    assert encoded.md5 == hashlib.md5(data).hexdigest() == encoded.meta["md5"]
    shares = dict(enumerate(encoded.shares))
    assert decode("chunk-a", shares, encoded.meta, key).data == data
    meta = json.loads(json.dumps(encoded.meta))
    meta["md5"] = hashlib.md5(b"something else").hexdigest()
    with pytest.raises(IntegrityError, match="MD5"):
        decode("chunk-a", shares, meta, key)
    meta["md5"] = None
    with pytest.raises(MetaError, match="md5"):
        decode("chunk-a", shares, meta, key)


@pytest.mark.parametrize("encryption", ["aes256-gcm", "aes256-md5"])
def test_tampered_share_with_forged_hash_fails_authentication(encryption, rng):
    """Someone who can alter a share *and* its recorded hash still cannot alter the chunk."""
    data, key = rng.randbytes(SIZE), new_data_key()
    encoded = encode("chunk-a", data, encryption, "rs(3,2)", key)
    shares = dict(enumerate(encoded.shares))
    shares[1] = _flip(shares[1], 99)
    meta = json.loads(json.dumps(encoded.meta))
    meta["share_hashes"][1] = hashlib.sha256(shares[1]).hexdigest()
    with pytest.raises(IntegrityError, match="does not authenticate"):
        decode("chunk-a", shares, meta, key)


def test_share_index_out_of_range_is_a_misuse(rng):
    encoded = encode("chunk-a", rng.randbytes(100), "none", "rs(3,2)")
    shares = dict(enumerate(encoded.shares))
    shares[5] = encoded.shares[0]
    with pytest.raises(MetaError, match="outside rs\\(3,2\\)"):
        decode("chunk-a", shares, encoded.meta)
    with pytest.raises(MetaError, match="dict"):
        decode("chunk-a", list(encoded.shares), encoded.meta)


# --- streaming collection ------------------------------------------------------------------

def test_collector_says_when_it_has_enough(rng):
    data, key = rng.randbytes(SIZE), new_data_key()
    encoded = encode("chunk-a", data, "aes256-gcm", "rs(4,2)", key)
    collector = ShareCollector(encoded.meta)
    assert (collector.needed, collector.total, collector.enough) == (4, 6, False)
    assert collector.wanted() == [0, 1, 2, 3, 4, 5]
    assert collector.add(5, encoded.shares[5])
    assert not collector.add(1, b"garbage")
    assert collector.wanted() == [0, 2, 3, 4]
    assert collector.add(0, encoded.shares[0]) and collector.add(3, encoded.shares[3])
    assert not collector.enough
    with pytest.raises(NotEnoughShares, match="3 good"):
        collector.decode("chunk-a", key)
    assert collector.add(4, encoded.shares[4])
    assert collector.enough
    assert collector.good_shares == [0, 3, 4, 5] and collector.bad_shares == [1]
    result = collector.decode("chunk-a", key)
    assert result.data == data
    assert result.used_shares == [0, 3, 4, 5] and result.bad_shares == [1]
    # A late data share makes decoding cheaper: it is preferred.
    assert collector.add(1, encoded.shares[1])
    assert collector.bad_shares == []
    assert collector.decode("chunk-a", key).used_shares == [0, 1, 3, 4]


def test_collector_from_parallel_fetches(rng):
    """Shares arrive from threads in random order, some corrupt; the first K good ones win."""
    data, key = rng.randbytes(1_000_003), new_data_key()
    encoded = encode("chunk-a", data, "aes256-gcm", "rs(10,4)", key)
    arrivals = list(enumerate(encoded.shares))
    random.Random(5).shuffle(arrivals)
    corrupt = {arrivals[0][0], arrivals[3][0]}
    for _ in range(5):
        collector = ShareCollector(encoded.meta)

        def fetch(item, collector=collector):
            index, share = item
            if collector.enough:
                return None
            return collector.add(index, _flip(share, 3) if index in corrupt else share)

        with ThreadPoolExecutor(max_workers=4) as pool:
            outcomes = list(pool.map(fetch, arrivals))
        assert collector.enough
        rejected = {index for (index, _), ok in zip(arrivals, outcomes, strict=True) if ok is False}
        assert rejected <= corrupt
        assert collector.bad_shares == sorted(rejected)
        assert corrupt.isdisjoint(collector.good_shares)
        result = collector.decode("chunk-a", key)
        assert result.data == data
        assert not set(result.used_shares) & corrupt


def test_collector_check_records_nothing(rng):
    encoded = encode("chunk-a", rng.randbytes(1000), "none", "raid1(2)")
    collector = ShareCollector(encoded.meta)
    assert collector.check(1, encoded.shares[1]) and not collector.check(0, b"x")
    assert collector.good_shares == [] and collector.bad_shares == []
    with pytest.raises(MetaError):
        collector.add(2, encoded.shares[0])
