"""Packs in process, on the SQLite engine and local directory storages (the `pipeline` fixture of
test_chunk_pipeline): blobs read back byte for byte with every scheme, past lost and corrupt
shares; a read of one small blob moves about its size from the backends; releases free the pack
at the last one. And the backends' ranged reads (local, S3 against moto, the default)."""
from __future__ import annotations

import os
import random
import secrets

import boto3
import pytest
from cloudstrype import errors
from cloudstrype.backends.base import Backend, ShareNotFound, Usage
from cloudstrype.backends.local import LocalBackend
from cloudstrype.pipeline import codec

from tests.pipeline.test_chunk_pipeline import add_disks, pipeline, share_files  # noqa: F401

SCHEMES = ["raid1(1)", "raid1(3)", "rs(2,1)", "rs(3,2)"]
KiB = 1024


@pytest.fixture
def packs(request):
    # The in-process pipeline of test_chunk_pipeline (imported, so pytest finds it).
    request.getfixturevalue("pipeline")
    from cloudstrype.pipeline import packs
    return packs


@pytest.fixture
def store(packs):
    from cloudstrype.pipeline import store
    return store


def _items(rng: random.Random, count: int, big: int = 0) -> list[tuple[str, bytes]]:
    sizes = [rng.randint(1, 8 * KiB) for _ in range(count)] + ([big] if big else [])
    return [(f"blob{n}", rng.randbytes(size)) for n, size in enumerate(sizes)]


def _read_all(packs, placed, items, encrypted):
    for where, (blob_id, content) in zip(placed, items, strict=True):
        assert packs.read_blob("alice", blob_id, where, encrypted) == content


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("encryption", ["aes256-gcm", "none"])
def test_blobs_read_back_with_every_scheme(packs, tmp_path, scheme, encryption):
    add_disks("alice", tmp_path, 5)
    items = _items(random.Random(scheme + encryption), 60, big=200 * KiB)
    placed = packs.write_pack("alice", items, encryption, scheme)
    assert len({p.chunk_id for p in placed}) == 1
    _read_all(packs, placed, items, encryption != "none")
    # The blobs are laid end to end, each sealed on its own when encrypted.
    overhead = packs.BLOB_OVERHEAD if encryption != "none" else 0
    assert [p.length for p in placed] == [len(c) + overhead for _, c in items]
    assert all(a.offset + a.length == b.offset
               for a, b in zip(placed[:-1], placed[1:], strict=True))


def test_a_blob_is_bound_to_its_file(packs, tmp_path):
    add_disks("alice", tmp_path, 3)
    items = _items(random.Random(1), 3)
    placed = packs.write_pack("alice", items, "aes256-gcm", "raid1(2)")
    # Another file's identity does not open it (the blob id is associated data).
    with pytest.raises(codec.IntegrityError):
        packs.read_blob("alice", "blob1", placed[0], True)
    with pytest.raises(errors.NotFound):
        packs.read_blob("bob", "blob0", placed[0], True)


@pytest.mark.parametrize("scheme,lose", [("raid1(3)", [0, 1]), ("rs(2,1)", [0]),
                                         ("rs(3,2)", [0, 2]), ("rs(3,2)", [1, 4])])
def test_survives_lost_shares_up_to_the_redundancy(packs, store, tmp_path, scheme, lose):
    from cloudstrype.pipeline.chunk_store import chunk_store
    disks = add_disks("alice", tmp_path, 5)
    items = _items(random.Random(7), 80)
    placed = packs.write_pack("alice", items, "aes256-gcm", scheme)
    chunk_id = placed[0].chunk_id
    record = chunk_store().get("alice", chunk_id)
    for share in record.shares:
        if share.index in lose:
            for path in share_files(disks[share.storage_id], chunk_id, share.index):
                path.unlink()
    _read_all(packs, placed, items, True)
    assert chunk_store().get("alice", chunk_id).damaged >= {i for i in lose if
                                                          scheme.startswith("raid1") or i < 3}
    assert store.scrub(budget_seconds=60)["failed"] == []
    assert store.chunk_info("alice", chunk_id)["healthy_shares"] == len(record.shares)
    _read_all(packs, placed, items, True)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_corrupt_share_is_read_past_and_repaired(packs, store, tmp_path, scheme):
    from cloudstrype.pipeline.chunk_store import chunk_store
    disks = add_disks("alice", tmp_path, 5)
    items = _items(random.Random(scheme), 40)
    placed = packs.write_pack("alice", items, "aes256-gcm", scheme)
    chunk_id = placed[0].chunk_id
    record = chunk_store().get("alice", chunk_id)
    # Flip a byte inside blob 5 where it lies in its (first) data share.
    meta = codec.ChunkMeta.from_dict(record.meta)
    index, start, _ = codec.plain_segments(meta, placed[5].offset + 20, 1)[0]
    share = record.share(index)
    [path] = share_files(disks[share.storage_id], chunk_id, index)
    raw = bytearray(path.read_bytes())
    raw[start] ^= 0xFF
    path.write_bytes(bytes(raw))
    if scheme == "raid1(1)":
        # No other copy: a clear error, never wrong bytes.
        with pytest.raises(errors.ApiError):
            packs.read_blob("alice", "blob5", placed[5], True)
        return
    _read_all(packs, placed, items, True)
    assert index in chunk_store().get("alice", chunk_id).damaged
    assert store.scrub(budget_seconds=60)["repaired_shares"] >= 1
    assert path.exists() is False or path.read_bytes() != bytes(raw)
    _read_all(packs, placed, items, True)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_near_blobs_are_read_together_past_lost_shares(packs, store, tmp_path, monkeypatch,
                                                       scheme):
    """A batch read of many blobs of a pack: every one byte for byte, in a few ranged reads
    (neighbours together, a far one apart), and past a lost share where the scheme has one
    to spare."""
    from cloudstrype.pipeline.chunk_store import chunk_store
    disks = add_disks("alice", tmp_path, 5)
    items = _items(random.Random(scheme + "near"), 60, big=200 * KiB)
    placed = packs.write_pack("alice", items, "aes256-gcm", scheme)
    chunk_id = placed[0].chunk_id
    wanted = [(items[n][0], placed[n]) for n in (*range(10, 40), 60)]
    calls = []
    real = LocalBackend.get_range
    monkeypatch.setattr(LocalBackend, "get_range", lambda backend, key, start, length: (
        calls.append(length), real(backend, key, start, length))[1])
    got = packs.read_near_blobs("alice", chunk_id, wanted, True)
    assert got == {blob_id: dict(items)[blob_id] for blob_id, _ in wanted}
    assert 2 <= len(calls) <= 6, calls      # the 30 neighbours, then the big one (per share)
    if scheme != "raid1(1)":
        record = chunk_store().get("alice", chunk_id)
        lost = record.shares[0]
        for path in share_files(disks[lost.storage_id], chunk_id, lost.index):
            path.unlink()
        got = packs.read_near_blobs("alice", chunk_id, wanted, True)
        assert got == {blob_id: dict(items)[blob_id] for blob_id, _ in wanted}


def test_a_blob_bad_in_every_copy_fails_alone(packs, store, tmp_path):
    """Near blobs share a read; one that no copy holds right gives its own error (the read
    of its span fails), and the others are still read (the caller reads them alone)."""
    from cloudstrype.pipeline.chunk_store import chunk_store
    disks = add_disks("alice", tmp_path, 3)
    items = _items(random.Random(3), 12)
    placed = packs.write_pack("alice", items, "aes256-gcm", "raid1(2)")
    chunk_id = placed[0].chunk_id
    record = chunk_store().get("alice", chunk_id)
    for share in record.shares:
        for path in share_files(disks[share.storage_id], chunk_id, share.index):
            raw = bytearray(path.read_bytes())
            raw[placed[4].offset + 30] ^= 0xFF
            path.write_bytes(bytes(raw))
    wanted = [(items[n][0], placed[n]) for n in range(12)]
    got = packs.read_near_blobs("alice", chunk_id, wanted, True)
    assert isinstance(got["blob4"], errors.ApiError)
    for blob_id, content in items:
        if blob_id != "blob4":
            assert packs.read_blob("alice", blob_id, placed[int(blob_id[4:])], True) == content


class Counting:
    """Counts the bytes the local backends hand out."""

    def __init__(self, monkeypatch):
        self.bytes = 0
        get, get_range = LocalBackend.get, LocalBackend.get_range

        def counted_get(backend, key):
            data = get(backend, key)
            self.bytes += len(data)
            return data

        def counted_range(backend, key, start, length):
            data = get_range(backend, key, start, length)
            self.bytes += len(data)
            return data

        monkeypatch.setattr(LocalBackend, "get", counted_get)
        monkeypatch.setattr(LocalBackend, "get_range", counted_range)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_reading_one_small_file_moves_about_its_size(packs, store, tmp_path, monkeypatch, scheme):
    add_disks("alice", tmp_path, 5)
    rng = random.Random(3)
    # A full pack: about 4 MiB of 4 KiB files.
    items = [(f"blob{n}", rng.randbytes(4 * KiB)) for n in range(1000)]
    placed = packs.write_pack("alice", items, "aes256-gcm", scheme)
    counter = Counting(monkeypatch)
    for n in (0, 333, 999):
        before = counter.bytes
        assert packs.read_blob("alice", f"blob{n}", placed[n], True) == items[n][1]
        assert 4 * KiB < counter.bytes - before <= 64 * KiB
    # A whole-chunk read for comparison moves megabytes.
    before = counter.bytes
    store.get_chunk("alice", placed[0].chunk_id)
    assert counter.bytes - before > 1024 * KiB


def test_release_frees_the_pack_at_the_last_file(packs, store, tmp_path):
    from cloudstrype import quota
    from cloudstrype.pipeline.chunk_store import chunk_store
    disks = add_disks("alice", tmp_path, 3)
    items = _items(random.Random(5), 3)
    placed = packs.write_pack("alice", items, "none", "raid1(3)")
    chunk_id = placed[0].chunk_id
    record = chunk_store().get("alice", chunk_id)
    assert (record.live, record.live_bytes) == (3, sum(p.length for p in placed))
    stored = quota.usage("alice")["stored_bytes"]
    assert stored == record.size
    packs.release_now("alice", chunk_id, placed[0].length)
    packs.release_now("alice", chunk_id, placed[1].length)
    record = chunk_store().get("alice", chunk_id)
    assert (record.live, record.live_bytes) == (1, placed[2].length)
    assert packs.read_blob("alice", "blob2", placed[2], False) == items[2][1]
    # Dead bytes stay stored (and counted) until the last file goes.
    assert quota.usage("alice")["stored_bytes"] == stored
    packs.release_now("alice", chunk_id, placed[2].length)
    assert chunk_store().get("alice", chunk_id) is None
    assert all(share_files(d, chunk_id, i) == [] for d in disks.values() for i in range(3))
    assert quota.usage("alice")["stored_bytes"] == 0


def test_groups_fill_packs_up_to_the_chunk_size(packs):
    sizes = [256 * KiB] * 40
    grouped = packs.groups(sizes, encrypted=True)
    assert [len(g) for g in grouped] == [15, 15, 10]
    assert sum(grouped, []) == list(range(40))
    assert all(sum(packs.stored_size(sizes[i], True) for i in g) <= codec.MAX_CHUNK_SIZE
               for g in grouped)
    assert packs.packable(1) and packs.packable(256 * KiB)
    assert not packs.packable(0) and not packs.packable(256 * KiB + 1)


def test_plain_segments():
    encoded = codec.encode("c", bytes(1000), "none", "rs(3,2)")
    assert encoded.info.share_size == 334
    assert codec.plain_segments(encoded.meta, 0, 10) == [(0, 0, 10)]
    assert codec.plain_segments(encoded.meta, 330, 10) == [(0, 330, 4), (1, 0, 6)]
    assert codec.plain_segments(encoded.meta, 990, 10) == [(2, 322, 10)]
    assert codec.plain_segments(codec.encode("c", bytes(10), "none", "raid1(2)").meta,
                                3, 4) == [(0, 3, 4)]
    with pytest.raises(codec.MetaError):
        codec.plain_segments(encoded.meta, 995, 10)
    with pytest.raises(codec.MetaError):
        codec.plain_segments(codec.encode("c", bytes(10), "aes256-gcm", "raid1(2)",
                                          bytes(32)).meta, 0, 1)


# -- ranged reads of the backends --------------------------------------------------------------

def _check_ranges(backend: Backend):
    data = os.urandom(10_000)
    backend.put("share-1", data)
    assert backend.get_range("share-1", 0, 10) == data[:10]
    assert backend.get_range("share-1", 9_990, 100) == data[9_990:]
    assert backend.get_range("share-1", 500, 0) == b""
    assert backend.get_range("share-1", 20_000, 5) == b""
    with pytest.raises(ShareNotFound):
        backend.get_range("missing", 0, 5)


def test_local_get_range(tmp_path):
    _check_ranges(LocalBackend(tmp_path / "disk"))


def test_default_get_range_reads_the_whole_share():
    class Memory(Backend):
        def __init__(self):
            self.blobs, self.reads = {}, 0

        def put(self, key, data):
            self.blobs[key] = data

        def get(self, key):
            self.reads += 1
            if key not in self.blobs:
                raise ShareNotFound(key)
            return self.blobs[key]

        def delete(self, key):
            self.blobs.pop(key, None)

        def exists(self, key):
            return key in self.blobs

        def usage(self):
            return Usage(0, None)

    memory = Memory()
    _check_ranges(memory)
    assert memory.reads == 5


def test_s3_get_range_asks_for_the_range_only(monkeypatch):
    from cloudstrype.backends.s3 import S3Backend
    from cloudstrype.settings import reset_settings_cache
    from moto.server import ThreadedMotoServer
    monkeypatch.setenv("CLOUDSTRYPE_OUTBOUND_ALLOW", "127.0.0.1")
    reset_settings_cache()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        bucket = f"shares-{secrets.token_hex(4)}"
        boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="a",
                     aws_secret_access_key="a").create_bucket(Bucket=bucket)
        backend = S3Backend(url, "us-east-1", bucket, "a", "a")
        ranges = []
        backend._client.meta.events.register(
            "before-send.s3.GetObject",
            lambda request, **_: ranges.append(request.headers.get("Range")))
        _check_ranges(backend)
        assert ranges[:2] == [b"bytes=0-9", b"bytes=9990-10089"] or \
            ranges[:2] == ["bytes=0-9", "bytes=9990-10089"]
    finally:
        server.stop()
        monkeypatch.undo()
        reset_settings_cache()

