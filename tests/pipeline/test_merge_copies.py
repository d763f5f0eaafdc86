"""merge_copies: raid1 copies each damaged in other places make one intact copy, found by the
recorded hash; nothing that does not match it ever comes out."""
import hashlib
import os

from cloudstrype.pipeline.codec import MERGE_BLOCK, merge_copies


def _damaged(data: bytes, *spans: tuple[int, int]) -> bytes:
    out = bytearray(data)
    for start, length in spans:
        out[start:start + length] = os.urandom(length)
    return bytes(out)


def test_copies_bad_in_different_places_merge_into_the_original():
    data = os.urandom(300_000)
    digest = hashlib.sha256(data).hexdigest()
    a = _damaged(data, (100, 1), (250_000, 9000))        # a flipped byte, a run of blocks
    b = _damaged(data, (50_000, 3))
    c = _damaged(data, (120_000, 10))
    assert merge_copies([a, b], digest) == data
    assert merge_copies([a, b, c], digest) == data
    # The tail: a copy cut short and padded is bad to its end.
    d = data[:-5000] + bytes(5000)
    assert merge_copies([d, a], digest) == data


def test_nothing_comes_out_that_does_not_match_the_hash():
    data = os.urandom(100_000)
    digest = hashlib.sha256(data).hexdigest()
    same_place = [_damaged(data, (4000, 2)), _damaged(data, (4000, 2))]
    assert merge_copies(same_place, digest) is None
    assert merge_copies([data[:-1], data], digest) is None                 # sizes differ
    assert merge_copies([_damaged(data, (0, 1))], digest) is None         # one copy
    # Too many regions to try every way: refused, not guessed.
    many = [_damaged(data, *[(n * 4 * MERGE_BLOCK, 1) for n in range(5)]),
            _damaged(data, *[(n * 4 * MERGE_BLOCK + 2 * MERGE_BLOCK, 1) for n in range(5)])]
    assert 2 ** 10 > 256 and len(data) > 20 * MERGE_BLOCK         # ten regions, two ways each
    assert merge_copies(many, digest) is None
