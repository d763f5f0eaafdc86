"""The chunks store, on every engine: chunks with their share locations, placements, damage and
pending deletes — each owner's items reachable by that owner only."""
from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest
from cloudstrype.metadata import engine as metadata_engine
from cloudstrype.metadata.engine import Change, ConditionFailed
from cloudstrype.pipeline.chunk_store import (
    BLOBS,
    PACK_CHECK_SECONDS,
    PLACEMENTS,
    Blob,
    Chunk,
    ChunkRef,
    ChunkStore,
    PackInUse,
    Placement,
    ShareLocation,
    chunk_store,
)


def make_chunk(owner: str = "alice", chunk_id: str = "c1", storages=("s1", "s2", "s3"),
               wrapped_key: bytes | None = b"\x00sealed\xff") -> Chunk:
    return Chunk(owner=owner, chunk_id=chunk_id, size=1000, encryption="aes256-gcm",
                 durability=f"raid1({len(storages)})",
                 meta={"share_size": 1016, "share_hashes": ["h"] * len(storages)},
                 shares=[ShareLocation(i, s, f"{owner}.{chunk_id}.{i}.k")
                         for i, s in enumerate(storages)],
                 wrapped_key=wrapped_key, created=1700000000)


@pytest.fixture
def store(engine) -> ChunkStore:
    made = chunk_store()
    assert made.engine is engine
    return made


def placed(store: ChunkStore, owner: str, storage_id: str) -> list[tuple[str, int]]:
    return [(p.chunk_id, p.index) for p in store.all_placements(owner, storage_id)]


def test_create_get_exists_round_trip(store):
    chunk = make_chunk()
    assert store.create(chunk, placement_size=1016)
    got = store.get("alice", "c1")
    assert got == store_view(chunk)
    assert got.revision == 1 and got.damaged == set()
    assert got.wrapped_key == b"\x00sealed\xff"
    assert got.share(2) == ShareLocation(2, "s3", "alice.c1.2.k")
    assert store.exists("alice", "c1")
    assert not store.exists("alice", "c2")
    assert store.get("alice", "c2") is None
    # An unencrypted chunk has no wrapped key at all.
    assert store.create(make_chunk(chunk_id="plain", wrapped_key=None), 10)
    assert store.get("alice", "plain").wrapped_key is None


def test_create_if_absent_writes_nothing_the_second_time(store):
    assert store.create(make_chunk(storages=("s1", "s2")), 1016)
    assert not store.create(make_chunk(storages=("s3", "s4")), 1016)
    assert [s.storage_id for s in store.get("alice", "c1").shares] == ["s1", "s2"]
    assert placed(store, "alice", "s3") == []
    assert placed(store, "alice", "s1") == [("c1", 0)]


def test_create_records_placements_with_their_size(store):
    store.create(make_chunk(), 1016)
    page, cursor = store.placements("alice", "s2")
    assert page == [Placement("alice", "s2", "c1", 1, 1016)] and cursor is None


def test_owners_are_isolated(store):
    store.create(make_chunk(owner="alice"), 1016)
    store.create(make_chunk(owner="bob", storages=("s1",)), 1016)
    assert store.get("bob", "c1").shares == [ShareLocation(0, "s1", "bob.c1.0.k")]
    assert len(store.get("alice", "c1").shares) == 3
    assert placed(store, "bob", "s2") == []
    assert placed(store, "alice", "s2") == [("c1", 1)]
    # Bob's damage mark and delete do not reach Alice's chunk of the same id.
    assert store.mark_damaged("bob", "c1", {0})
    assert store.get("alice", "c1").damaged == set()
    store.delete("bob", "c1")
    assert store.exists("alice", "c1") and not store.exists("bob", "c1")
    assert not store.mark_damaged("carol", "c1", {0})
    assert not store.exists("carol", "c1")       # marking damage never creates a chunk
    assert store.delete("carol", "c1") is None
    store.add_pending_delete("bob", "s1", "k1", "down")
    assert list(store.pending_deletes("alice")) == []
    # Bob's deleted chunk listed its share for deletion with the record's delete; k1 his own.
    assert sorted(p.key for p in store.pending_deletes("bob")) == ["bob.c1.0.k", "k1"]


def test_damage_accumulates_and_is_listed_through_the_index(store):
    store.create(make_chunk(chunk_id="a"), 1016)
    store.create(make_chunk(chunk_id="b"), 1016)
    store.create(make_chunk(owner="bob", chunk_id="c"), 1016)
    assert list(store.damaged()) == []
    assert store.mark_damaged("alice", "a", {1})
    assert store.mark_damaged("alice", "a", {2, 1})
    assert store.mark_damaged("bob", "c", {0})
    assert store.get("alice", "a").damaged == {1, 2}
    assert store.get("alice", "a").revision == 3           # each mark is a change
    assert sorted(store.damaged(), key=lambda r: r.chunk_id) == [
        ChunkRef("alice", "a"), ChunkRef("bob", "c")]
    chunk = store.get("alice", "a")
    assert store.clear_damage("alice", "a", chunk.revision)
    assert store.get("alice", "a").damaged == set()
    assert list(store.damaged()) == [ChunkRef("bob", "c")]
    # The damage of a deleted chunk leaves the queue with it.
    store.delete("bob", "c")
    assert list(store.damaged()) == []


def test_clearing_damage_is_refused_after_a_newer_failure(store):
    store.create(make_chunk(), 1016)
    store.mark_damaged("alice", "c1", {0})
    checked = store.get("alice", "c1")
    store.mark_damaged("alice", "c1", {2})                 # a read failed after the check
    assert not store.clear_damage("alice", "c1", checked.revision)
    assert store.get("alice", "c1").damaged == {0, 2}
    assert list(store.damaged()) == [ChunkRef("alice", "c1")]


def test_replace_shares_moves_placements_and_clears_damage(store):
    store.create(make_chunk(), 1016)
    store.mark_damaged("alice", "c1", {1})
    chunk = store.get("alice", "c1")
    updated = store.replace_shares(chunk, {1: ShareLocation(1, "s9", "new-key")}, 1016)
    assert updated is not None and updated.revision == chunk.revision + 1
    got = store.get("alice", "c1")
    assert got == updated
    assert [(s.index, s.storage_id, s.key) for s in got.shares] == [
        (0, "s1", "alice.c1.0.k"), (1, "s9", "new-key"), (2, "s3", "alice.c1.2.k")]
    assert got.damaged == set() and list(store.damaged()) == []
    assert placed(store, "alice", "s2") == []
    assert placed(store, "alice", "s9") == [("c1", 1)]
    # A share rebuilt onto the storage that held it keeps exactly one placement there.
    again = store.replace_shares(got, {0: ShareLocation(0, "s1", "rewritten")}, 1016)
    assert again.share(0).key == "rewritten"
    assert placed(store, "alice", "s1") == [("c1", 0)]


def test_replace_shares_is_compare_and_set_on_the_revision(store):
    store.create(make_chunk(), 1016)
    stale = store.get("alice", "c1")
    assert store.replace_shares(stale, {0: ShareLocation(0, "s7", "k7")}, 1016)
    assert store.replace_shares(stale, {0: ShareLocation(0, "s8", "k8")}, 1016) is None
    assert store.get("alice", "c1").share(0) == ShareLocation(0, "s7", "k7")
    assert placed(store, "alice", "s8") == []             # the loser wrote nothing
    assert placed(store, "alice", "s7") == [("c1", 0)]


def test_concurrent_repairs_exactly_one_wins(store):
    store.create(make_chunk(), 1016)
    read = store.get("alice", "c1")
    barrier = threading.Barrier(4)
    results = {}

    def repair(n: int) -> None:
        barrier.wait()
        results[n] = store.replace_shares(read, {2: ShareLocation(2, f"r{n}", f"k{n}")}, 1016)

    threads = [threading.Thread(target=repair, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [n for n, result in results.items() if result is not None]
    assert len(results) == 4 and len(winners) == 1
    assert store.get("alice", "c1").share(2).storage_id == f"r{winners[0]}"
    assert [n for n in range(4) if placed(store, "alice", f"r{n}")] == winners


def test_repair_loses_to_a_damage_mark_made_meanwhile(store):
    store.create(make_chunk(), 1016)
    read = store.get("alice", "c1")
    store.mark_damaged("alice", "c1", {0})
    assert store.replace_shares(read, {1: ShareLocation(1, "s9", "k")}, 1016) is None
    assert store.get("alice", "c1").damaged == {0}


def test_delete_removes_the_chunk_and_its_placements(store):
    chunk = make_chunk()
    store.create(chunk, 1016)
    store.create(make_chunk(chunk_id="keep"), 1016)
    assert store.delete("alice", "c1") == store_view(chunk)
    assert not store.exists("alice", "c1")
    assert store.delete("alice", "c1") is None
    for storage in ("s1", "s2", "s3"):
        assert placed(store, "alice", storage) == [("keep", ["s1", "s2", "s3"].index(storage))]


def store_view(chunk: Chunk) -> Chunk:
    """The chunk as the store holds it after create."""
    return replace(chunk, revision=1)


def test_delete_sees_a_repair_made_after_its_read(store, monkeypatch):
    store.create(make_chunk(), 1016)
    original_get = store.get
    calls = []

    def get_then_repair(owner, chunk_id):
        found = original_get(owner, chunk_id)
        if not calls and found is not None:    # a repair lands between delete's read and write
            store.replace_shares(found, {0: ShareLocation(0, "s9", "k9")}, 1016)
        calls.append(chunk_id)
        return found

    monkeypatch.setattr(store, "get", get_then_repair)
    deleted = store.delete("alice", "c1")
    assert deleted.share(0).storage_id == "s9"         # what was deleted is what was there
    assert len(calls) == 2
    assert placed(store, "alice", "s9") == [] and placed(store, "alice", "s1") == []


def test_placements_page_with_opaque_cursors(store):
    for n in range(7):
        store.create(make_chunk(chunk_id=f"c{n:02d}", storages=("big", f"o{n}")), 1016)
    store.create(make_chunk(owner="bob", chunk_id="x", storages=("big",)), 1016)
    seen, cursor, pages = [], None, 0
    while True:
        page, cursor = store.placements("alice", "big", limit=3, cursor=cursor)
        assert len(page) <= 3
        seen += [(p.chunk_id, p.index) for p in page]
        pages += 1
        if not cursor:
            break
    assert seen == [(f"c{n:02d}", 0) for n in range(7)]
    assert pages >= 3
    with pytest.raises(metadata_engine.BadCursor):
        store.placements("alice", "big", cursor="not-a-cursor")


def test_forget_placements_of_one_chunk(store):
    store.create(make_chunk(chunk_id="c1", storages=("s1",)), 10)
    store.create(make_chunk(chunk_id="c10", storages=("s1",)), 10)
    assert store.forget_placements("alice", "s1", "c1") == 1
    assert placed(store, "alice", "s1") == [("c10", 0)]


def test_placements_beyond_one_transaction_are_written_in_batches(store, engine, monkeypatch):
    for n in range(130):
        engine.put(PLACEMENTS, {"storage_ref": "alice#s1", "share_ref": f"c#{n}",
                                "owner": "alice", "storage_id": "s1", "chunk_id": "c",
                                "index": n, "size": 1})
    sizes = []
    original = engine.transact

    def counting(operations):
        sizes.append(len(operations))
        return original(operations)

    monkeypatch.setattr(engine, "transact", counting)
    assert store.forget_placements("alice", "s1", "none") == 0
    assert sizes == []                            # nothing to write, no empty transaction
    assert store.forget_placements("alice", "s1", "c") == 130
    assert sizes == [100, 30]
    assert placed(store, "alice", "s1") == []


def test_pending_deletes_add_list_attempt_drop(store):
    store.add_pending_delete("alice", "s1", "k1", "timed out " + "x" * 900)
    store.add_pending_delete("alice", "s2", "k2", "refused")
    store.add_pending_delete("bob", "s1", "k3", "refused")
    everyone = sorted(store.pending_deletes(), key=lambda p: p.key)
    assert [(p.owner, p.storage_id, p.key, p.attempts) for p in everyone] == [
        ("alice", "s1", "k1", 1), ("alice", "s2", "k2", 1), ("bob", "s1", "k3", 1)]
    assert len(everyone[0].last_error) == 500
    first = everyone[0]
    store.pending_delete_failed(first, "still down")
    store.pending_delete_failed(first, "still down again")
    again = next(p for p in store.pending_deletes("alice") if p.key == "k1")
    assert again.attempts == 3 and again.last_error == "still down again"
    store.drop_pending_delete(first)
    assert sorted(p.key for p in store.pending_deletes()) == ["k2", "k3"]
    # An attempt on an entry dropped meanwhile does not bring it back.
    store.pending_delete_failed(first, "late")
    assert sorted(p.key for p in store.pending_deletes()) == ["k2", "k3"]


def test_the_scrubs_work_lists_never_scan(store, engine, monkeypatch):
    """Damaged chunks and pending deletes of every owner come from indexes, not table scans."""
    for n in range(12):
        store.create(make_chunk(owner=f"user{n}", chunk_id=f"c{n}"), 10)
        store.mark_damaged(f"user{n}", f"c{n}", {n % 3})
        store.add_pending_delete(f"user{n}", "s1", f"k{n}", "down")
    store.create(make_chunk(owner="healthy"), 10)

    def no_scan(*args, **kwargs):
        raise AssertionError("a full table scan")

    monkeypatch.setattr(engine, "scan", no_scan)
    assert sorted(r.owner for r in store.damaged()) == sorted(f"user{n}" for n in range(12))
    assert sorted(p.key for p in store.pending_deletes()) == sorted(f"k{n}" for n in range(12))


# -- packs: live counts, the compaction queue ---------------------------------------------------

def make_pack(owner: str = "alice", chunk_id: str = "p1", live: int = 3) -> Chunk:
    return replace(make_chunk(owner, chunk_id), live=live, live_bytes=900 if live else 0)


def test_compaction_queue_holds_queued_packs_once_and_new_empty_packs(store, engine,
                                                                      monkeypatch):
    store.create(make_pack("alice", "p1"), 10)
    store.create(make_pack("bob", "p2"), 10)
    store.create(make_pack("carol", "p3", live=0), 10)      # being filled: queued from birth
    store.create(make_chunk("dave", "c4"), 10)              # not a pack
    # A pack written with its files counted is queued to be checked a day later; queuing it
    # for compaction moves that earlier, once.
    assert store.queue_compaction("alice", "p1", 1700000100)
    assert not store.queue_compaction("alice", "p1", 1700000200), "queued already"
    assert not store.queue_compaction("dave", "c4", 1700000100), "not a pack"
    assert not store.queue_compaction("alice", "missing", 1700000100)
    monkeypatch.setattr(engine, "scan", lambda *a, **k: pytest.fail("a full table scan"))
    hour_later = 1700000000 + 3600
    assert sorted((r.owner, r.chunk_id) for r in store.compaction_queue(hour_later)) == [
        ("alice", "p1"), ("carol", "p3")]
    assert sorted((r.owner, r.chunk_id) for r in store.compaction_queue()) == [
        ("alice", "p1"), ("bob", "p2"), ("carol", "p3")]
    day_later = 1700000000 + PACK_CHECK_SECONDS
    assert sorted(r.chunk_id for r in store.compaction_queue(day_later - 1)) == ["p1", "p3"]
    assert sorted(r.chunk_id for r in store.compaction_queue(day_later)) == ["p1", "p2", "p3"]
    store.dequeue_compaction("alice", "p1")
    store.dequeue_compaction("alice", "missing")             # gone: nothing to do
    assert [(r.owner, r.chunk_id) for r in store.compaction_queue(hour_later)] == [
        ("carol", "p3")]
    assert store.get("alice", "p1").live == 3


def test_a_pack_is_recounted_only_as_it_was_read(store, engine):
    store.create(make_pack("alice", "p1", live=3), 10)
    read = store.get("alice", "p1")
    engine.transact([store.release_operation("alice", "p1", 300)])      # a delete meanwhile
    assert not store.apply((store.recount_operation(read, 1, 300),))
    assert (store.get("alice", "p1").live, store.get("alice", "p1").live_bytes) == (2, 600)
    assert store.apply((store.recount_operation(store.get("alice", "p1"), 1, 300),))
    assert (store.get("alice", "p1").live, store.get("alice", "p1").live_bytes) == (1, 300)


def test_acquire_and_release_count_files_and_bytes(store, engine):
    store.create(make_pack("alice", "p1", live=0), 10)
    engine.transact([store.acquire_operation("alice", "p1", 100)])
    engine.transact([store.acquire_operation("alice", "p1", 50)])
    assert (store.get("alice", "p1").live, store.get("alice", "p1").live_bytes) == (2, 150)
    assert store.release("alice", "p1", 100) == 1
    assert (store.get("alice", "p1").live, store.get("alice", "p1").live_bytes) == (1, 50)
    with pytest.raises(ConditionFailed):
        engine.transact([store.acquire_operation("alice", "missing", 1)])


def test_a_pack_in_use_is_never_deleted_even_after_a_stale_read(store, engine, monkeypatch):
    """Compaction moving a file into a pack does not change its revision: a delete that read
    the pack empty just before must still not delete it."""
    store.create(make_pack("alice", "p1", live=0), 10)
    real_get, moved = store.get, []

    def read_then_a_file_moves_in(owner, chunk_id):
        seen = real_get(owner, chunk_id)
        if not moved:
            engine.transact([store.acquire_operation(owner, chunk_id, 10)])
            moved.append(chunk_id)
        return seen
    monkeypatch.setattr(store, "get", read_then_a_file_moves_in)
    with pytest.raises(PackInUse):
        store.delete("alice", "p1")
    assert moved and real_get("alice", "p1").live == 1


# -- blobs: content stored once per owner ---------------------------------------------------------

def make_blob(owner: str = "alice", key: str = "k1", chunk_id: str = "p1", offset: int = 0,
              refs: int = 1) -> Blob:
    return Blob(owner, key, chunk_id, offset, 40, "ab" * 32, "v1", 12, "aes256-gcm",
                "raid1(2)", refs, 1700000000)


def test_a_blob_is_registered_once_and_claimed_by_more_readers(store):
    store.create(make_pack("alice", "p1", live=1), 10)
    assert store.apply((store.new_blob_operation(make_blob()),))
    assert not store.apply((store.new_blob_operation(make_blob(chunk_id="p9")),)), \
        "registered already"
    assert store.get_blob("alice", "k1") == make_blob()
    assert store.get_blob("bob", "k1") is None, "owners never meet"
    assert store.apply((store.claim_operation(store.find_blob("alice", "k1")),))
    assert store.get_blob("alice", "k1").refs == 2
    assert store.find_blob("bob", "k1") is None
    assert store.find_blob("alice", "missing") is None


def test_find_blobs_reads_many_contents_and_a_claim_counts_its_readers(store):
    store.create(make_pack("alice", "p1", live=3), 10)
    for key, offset in (("k1", 0), ("k2", 40), ("k3", 80)):
        assert store.apply((store.new_blob_operation(make_blob(key=key, offset=offset)),))
    # k3's last reader is letting it go (refs 0): not to be read.
    assert store.engine.update(BLOBS, {"owner": "alice", "content_key": "k3"},
                               Change(set={"refs": 0}))["refs"] == 0
    store.apply((store.new_blob_operation(make_blob(owner="bob", key="k4")),))
    found = store.find_blobs("alice", ["k1", "k2", "k3", "k4", "missing", "k1"])
    assert sorted(found) == ["k1", "k2"]
    assert store.get_blob("alice", "k1").refs == 1, "finding claims nothing"
    assert store.apply((store.claim_operation(found["k1"], 3),
                        store.claim_operation(found["k2"])))
    assert store.get_blob("alice", "k1").refs == 4
    assert store.get_blob("alice", "k2").refs == 2
    assert store.get_blob("bob", "k4").refs == 1, "owners never meet"
    assert store.find_blobs("alice", []) == {}
    # Content being let go is not claimed, and neither is one gone.
    k3 = replace(store.get_blob("alice", "k3"), refs=1)
    assert not store.apply((store.claim_operation(k3),))
    assert store.get_blob("alice", "k3").refs == 0
    assert not store.apply((store.claim_operation(make_blob(key="gone")),))


def test_a_claim_holds_only_where_the_blob_was_read(store):
    """Compaction moved the blob after it was read: the claim fails, and read again it holds
    at the new place."""
    store.create(make_pack("alice", "p1", live=1), 10)
    store.create(make_pack("alice", "p2", live=0), 10)
    store.apply((store.new_blob_operation(make_blob(key="k1")),))
    read = store.find_blob("alice", "k1")
    store.move_blob(read, {"chunk_id": "p2", "offset": 0, "length": 40,
                           "blob_hash": "cd" * 32}, [])
    assert not store.apply((store.claim_operation(read),))
    again = store.find_blob("alice", "k1")
    assert store.apply((store.claim_operation(again),))
    assert (store.get_blob("alice", "k1").chunk_id, store.get_blob("alice", "k1").refs) == \
        ("p2", 2)


def test_unref_counts_down_and_the_last_one_deletes_and_releases(store):
    store.create(make_pack("alice", "p1", live=1), 10)
    store.apply((store.new_blob_operation(make_blob()),))
    store.apply((store.claim_operation(store.get_blob("alice", "k1")),))
    stale = store.get_blob("alice", "k1")
    assert store.apply(tuple(store.unref_operations(stale)))
    assert not store.apply(tuple(store.unref_operations(stale))), "compare-and-set on refs"
    last = store.get_blob("alice", "k1")
    assert last.refs == 1
    assert store.apply(tuple(store.unref_operations(last)))
    assert store.get_blob("alice", "k1") is None
    assert (store.get("alice", "p1").live, store.get("alice", "p1").live_bytes) == (0, 860)


def test_blobs_are_found_by_pack_and_moved_only_from_where_they_are(store):
    store.create(make_pack("alice", "p1", live=2), 10)
    store.create(make_pack("alice", "p2", live=0), 10)
    store.apply((store.new_blob_operation(make_blob(key="k1", offset=0)),))
    store.apply((store.new_blob_operation(make_blob(key="k2", offset=40)),))
    store.apply((store.new_blob_operation(make_blob(owner="bob", key="k3")),))
    assert sorted(b.content_key for b in store.blobs_in_pack("alice", "p1")) == ["k1", "k2"]
    stale = store.get_blob("alice", "k1")
    to = {"chunk_id": "p2", "offset": 0, "length": 40, "blob_hash": "cd" * 32}
    along = [store.release_operation("alice", "p1", 40),
             store.acquire_operation("alice", "p2", 40)]
    assert store.move_blob(stale, to, along)
    assert not store.move_blob(stale, to, along), "no longer where the caller saw it"
    moved = store.get_blob("alice", "k1")
    assert (moved.chunk_id, moved.blob_hash, moved.refs) == ("p2", "cd" * 32, 1)
    assert [b.content_key for b in store.blobs_in_pack("alice", "p2")] == ["k1"]
    assert (store.get("alice", "p1").live, store.get("alice", "p2").live) == (1, 1)


def test_shares_planned_before_a_write_are_due_later_and_a_record_takes_them_off(store,
                                                                               monkeypatch):
    now = time.time()
    chunk = make_chunk("alice", "c1")
    planned = [(s.storage_id, s.key) for s in chunk.shares] + [("s9", "alice.c1.0.failed")]
    store.plan_share_writes("alice", planned, due=now + 3600)
    assert {p.key for p in store.pending_deletes("alice")} == {k for _, k in planned}
    assert [p for p in store.pending_deletes() if p.owner == "alice"] == [], "not due yet"
    assert store.create(chunk, 10)
    # The shares on the record are taken off in the record's transaction; the failed one stays.
    assert [p.key for p in store.pending_deletes("alice")] == ["alice.c1.0.failed"]
    monkeypatch.setattr(time, "time", lambda: now + 3601)
    assert [p.key for p in store.pending_deletes() if p.owner == "alice"] == [
        "alice.c1.0.failed"]
