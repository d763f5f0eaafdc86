"""Compaction in process, on the SQLite engine and local directory storages (the `pipeline`
fixture of test_chunk_pipeline): packs mostly deleted are rewritten into new packs and freed;
every remaining file reads back byte for byte, the usage counts live and dead bytes right, and
nothing is lost when reads, deletes and a crash meet a compaction."""
from __future__ import annotations

import random
import threading
import time

import pytest

from tests.pipeline.test_chunk_pipeline import add_disks, pipeline, share_files  # noqa: F401

KiB = 1024


@pytest.fixture
def lib(request, kind):
    request.getfixturevalue("pipeline")
    from cloudstrype import errors, quota
    from cloudstrype.pipeline import packs
    from cloudstrype.pipeline.chunk_store import chunk_store
    from cloudstrype.tree import compaction, files, tree

    class Lib:
        pass
    lib = Lib()
    lib.errors, lib.quota, lib.packs, lib.chunks = errors, quota, packs, chunk_store()
    lib.compaction, lib.files, lib.tree = compaction, files, tree
    lib.kind = kind
    return lib


@pytest.fixture(params=["stored-once", "in-place"])
def kind(request):
    """How packed versions find their blob: through the owner's content record (what uploads
    make), or with the place on the version itself (versions written before content was
    stored once; still read, freed and compacted)."""
    return request.param


def put_batch(lib, directory: str, seed: str, count: int, **schemes) -> dict:
    rng = random.Random(seed)
    items = [lib.files.BatchFile(f"f{n}.bin", rng.randbytes(rng.randint(1, 4 * KiB)))
             for n in range(count)]
    if lib.kind == "in-place":
        return put_in_place(lib, directory, items, **schemes)
    nodes = lib.files.upload_batch("alice", directory, items, schemes.get("durability"),
                                   schemes.get("encryption"))
    assert all(not isinstance(n, Exception) for n in nodes), nodes
    return {node.node_id: (node, item.data) for node, item in zip(nodes, items, strict=True)}


def put_in_place(lib, directory: str, items, durability=None, encryption=None) -> dict:
    import hashlib
    durability, encryption = lib.files._schemes("alice", durability, encryption)
    parent, _ = lib.tree.make_dirs("alice", directory, None)
    ids = [lib.files.new_version_id() for _ in items]
    placed = lib.packs.write_pack("alice", [(i, item.data) for i, item in zip(
        ids, items, strict=True)], encryption, durability)
    out = {}
    for item, version_id, where in zip(items, ids, placed, strict=True):
        digest = hashlib.sha256(item.data).hexdigest()
        node = lib.files._attach_version("alice", parent, item.name, lib.files.NewVersion(
            version_id, len(item.data), 0, digest, f'"{digest[:32]}"', "application/x",
            durability, encryption, None, where))
        out[node.node_id] = (node, item.data)
    return out


def read(lib, node) -> bytes:
    version = lib.files.get_version("alice", node, None)
    return lib.files.read("alice", version, 0, max(0, version.size - 1))


def keep_every(lib, files: dict, step: int) -> dict:
    """Delete all the files but every `step`-th; the kept ones by node id."""
    kept = {}
    for index, (node, content) in enumerate(files.values()):
        if index % step:
            delete(lib, node)
        else:
            kept[node.node_id] = (node, content)
    return kept


def delete(lib, node) -> None:
    lib.files.delete_node("alice", node)
    lib.files.delete_for_good("alice", node.node_id)


def pack_of(lib, node, version=None) -> str:
    version = version or lib.files.get_version("alice", node, None)
    if version.content_key:
        return lib.chunks.get_blob("alice", version.content_key).chunk_id
    return version.pack_chunk


def holders(lib, pack: str) -> list[tuple[str, int]]:
    """(blob id, stored length) of what uses the pack: versions in place and stored blobs."""
    from cloudstrype.tree.store import tree_store
    return [(v.version_id, v.pack_length) for v in tree_store().versions_in_pack("alice", pack)
            if v.pack_chunk == pack] + [(b.blob_id, b.length)
                                        for b in lib.chunks.blobs_in_pack("alice", pack)
                                        if b.chunk_id == pack]


def live_packs(lib, nodes) -> set[str]:
    return {pack_of(lib, lib.tree.get_node("alice", n.node_id)) for n in nodes}


def assert_counts_right(lib, kept: dict) -> None:
    """Every pack's counts are those of the files that use it; usage's dead bytes are exactly
    the bytes of stored packs that no file uses."""
    stored = dead = 0
    for pack in live_packs(lib, [n for n, _ in kept.values()]):
        record = lib.chunks.get("alice", pack)
        using = holders(lib, pack)
        assert record.live == len(using)
        assert record.live_bytes == sum(length for _, length in using)
        stored += record.size
        dead += record.size - record.live_bytes
    usage = lib.quota.usage("alice")
    assert usage["stored_bytes"] == stored
    assert usage["dead_bytes"] == dead
    # What usage calls live is the kept files' blobs, counted from the files themselves.
    blobs = {}
    for node, _ in kept.values():
        version = lib.files.get_version("alice", node, None)
        if version.content_key:
            blob = lib.chunks.get_blob("alice", version.content_key)
            blobs[(blob.chunk_id, blob.offset)] = blob.length
        else:
            blobs[(version.pack_chunk, version.pack_offset)] = version.pack_length
    assert usage["live_bytes"] == sum(blobs.values())


@pytest.mark.parametrize("encryption", ["aes256-gcm", "none"])
def test_sparse_packs_are_merged_and_freed(lib, tmp_path, encryption):
    disks = add_disks("alice", tmp_path, 3)
    batches = [put_batch(lib, f"/b{n}", f"{encryption}{n}", 60, durability="raid1(2)",
                         encryption=encryption) for n in range(3)]
    old_packs = set()
    kept = {}
    for files in batches:
        nodes = [node for node, _ in files.values()]
        old_packs |= live_packs(lib, nodes)
        for index, node in enumerate(nodes):
            if index % 4 == 0:
                kept[node.node_id] = files[node.node_id]
            else:
                delete(lib, node)
    assert len(old_packs) == 3
    usage = lib.quota.usage("alice")
    assert usage["dead_bytes"] > usage["live_bytes"] > 0
    queued = {ref.chunk_id for ref in lib.chunks.compaction_queue(before=time.time())}
    assert queued == old_packs

    report = lib.compaction.compact(budget_seconds=60)

    assert report["packs_compacted"] == 3 and report["packs_written"] == 1, report
    assert report["blobs_moved"] == len(kept)
    assert report["compaction_failed"] == []
    for pack in old_packs:
        assert lib.chunks.get("alice", pack) is None
        assert all(share_files(d, pack, i) == [] for d in disks.values() for i in range(2))
    new = live_packs(lib, [n for n, _ in kept.values()])
    assert len(new) == 1 and not new & old_packs
    for node, content in kept.values():
        assert read(lib, node) == content
    assert_counts_right(lib, kept)
    assert lib.quota.usage("alice")["dead_bytes"] == 0
    assert list(lib.chunks.compaction_queue(before=time.time())) == []


def test_a_pack_still_mostly_used_is_left_alone(lib, tmp_path):
    add_disks("alice", tmp_path, 2)
    files = put_batch(lib, "/dense", "dense", 20, durability="raid1(2)")
    nodes = [node for node, _ in files.values()]
    for node in nodes[:5]:
        delete(lib, node)
    assert list(lib.chunks.compaction_queue(before=time.time())) == []
    report = lib.compaction.compact(budget_seconds=60)
    assert report["packs_written"] == 0 and report["packs_compacted"] == 0
    kept = {n.node_id: files[n.node_id] for n in nodes[5:]}
    assert_counts_right(lib, kept)
    assert lib.quota.usage("alice")["dead_bytes"] > 0


def test_schemes_are_kept_apart(lib, tmp_path):
    add_disks("alice", tmp_path, 4)
    kept = {}
    for durability, encryption in [("raid1(2)", "aes256-gcm"), ("rs(2,1)", "none")]:
        files = put_batch(lib, f"/{encryption}", durability + encryption, 30,
                          durability=durability, encryption=encryption)
        kept |= keep_every(lib, files, 5)
    report = lib.compaction.compact(budget_seconds=60)
    assert report["packs_written"] == 2 and report["packs_compacted"] == 2, report
    for node, content in kept.values():
        version = lib.files.get_version("alice", node, None)
        assert lib.chunks.get("alice", pack_of(lib, node)).durability == version.durability
        assert read(lib, node) == content
    assert_counts_right(lib, kept)


def test_a_crash_in_the_middle_loses_nothing_and_the_next_run_finishes(lib, tmp_path,
                                                                       monkeypatch):
    add_disks("alice", tmp_path, 3)
    files = put_batch(lib, "/crash", "crash", 80, durability="raid1(3)")
    kept = keep_every(lib, files, 3)
    mover = moving_store(lib)
    real_move, moves = mover.move_blob, []

    def crashing_move(self, holder, to, along=()):
        if len(moves) == 10:
            raise SystemExit("the function was stopped here")
        moves.append(holder)
        return real_move(self, holder, to, along)
    monkeypatch.setattr(mover, "move_blob", crashing_move)
    with pytest.raises(SystemExit):
        lib.compaction.compact(budget_seconds=60)
    monkeypatch.setattr(mover, "move_blob", real_move)
    # Half moved: every file reads back from wherever it is, and the counts are right.
    assert len(live_packs(lib, [n for n, _ in kept.values()])) == 2
    for node, content in kept.values():
        assert read(lib, node) == content
    assert_counts_right_with_orphans(lib, kept)

    report = lib.compaction.compact(budget_seconds=60)
    assert report["compaction_failed"] == [], report
    for node, content in kept.values():
        assert read(lib, node) == content
    assert_counts_right(lib, kept)
    assert lib.quota.usage("alice")["dead_bytes"] == 0
    assert list(lib.chunks.compaction_queue(before=time.time())) == []


def moving_store(lib):
    """The store class whose move_blob compaction calls for this kind of packed version."""
    from cloudstrype.pipeline.chunk_store import ChunkStore
    from cloudstrype.tree.store import TreeStore
    return ChunkStore if lib.kind == "stored-once" else TreeStore


def assert_counts_right_with_orphans(lib, kept: dict) -> None:
    """After a crash the new pack holds blobs nothing uses yet: counted dead, and queued."""
    stored = lib.quota.usage("alice")["stored_bytes"]
    packs = live_packs(lib, [n for n, _ in kept.values()])
    assert stored == sum(lib.chunks.get("alice", p).size for p in packs)
    dead = sum(lib.chunks.get("alice", p).size - lib.chunks.get("alice", p).live_bytes
               for p in packs)
    assert lib.quota.usage("alice")["dead_bytes"] == dead


def test_a_new_pack_nothing_moved_into_is_freed_by_the_next_run(lib, tmp_path, monkeypatch):
    add_disks("alice", tmp_path, 2)
    files = put_batch(lib, "/none", "none", 30, durability="raid1(2)")
    kept = keep_every(lib, files, 3)
    def stopped(self, holder, to, along=()):
        raise SystemExit("the function was stopped here")
    monkeypatch.setattr(moving_store(lib), "move_blob", stopped)
    with pytest.raises(SystemExit):
        lib.compaction.compact(budget_seconds=60)
    monkeypatch.undo()
    orphans = [ref.chunk_id for ref in lib.chunks.compaction_queue(before=time.time())
               if lib.chunks.get("alice", ref.chunk_id).live == 0]
    assert len(orphans) == 1
    lib.compaction.compact(budget_seconds=60)
    assert lib.chunks.get("alice", orphans[0]) is None
    for node, content in kept.values():
        assert read(lib, node) == content
    assert_counts_right(lib, kept)


def test_compaction_loses_nothing_under_concurrent_reads_and_deletes(lib, tmp_path):
    add_disks("alice", tmp_path, 3)
    files = {}
    for n in range(4):
        files |= put_batch(lib, f"/busy{n}", f"busy{n}", 50, durability="raid1(2)",
                           encryption="aes256-gcm")
    nodes = list(files.values())
    for node, _ in nodes[::2]:
        delete(lib, node)
    survivors = nodes[1::2]
    doomed = {node.node_id for node, _ in survivors[::7]}
    problems, stop = [], threading.Event()

    def reader():
        rng = random.Random(threading.get_ident())
        while not stop.is_set():
            node, content = rng.choice(survivors)
            try:
                got = read(lib, node)
            except lib.errors.NotFound:
                if node.node_id not in doomed:
                    problems.append(f"{node.name} vanished")
                continue
            except Exception as exc:         # any other failure is a finding
                problems.append(f"{node.name}: {exc!r}")
                continue
            if got != content:
                problems.append(f"{node.name} read back different bytes")

    def deleter():
        for node, _ in survivors[::7]:
            delete(lib, node)

    readers = [threading.Thread(target=reader) for _ in range(3)]
    for thread in readers:
        thread.start()
    deleting = threading.Thread(target=deleter)
    deleting.start()
    report = lib.compaction.compact(budget_seconds=60)
    deleting.join()
    lib.compaction.compact(budget_seconds=60)
    stop.set()
    for thread in readers:
        thread.join()
    assert problems == []
    assert report["blobs_moved"] > 0
    kept = {node.node_id: (node, content) for node, content in survivors
            if node.node_id not in doomed}
    for node, content in kept.values():
        assert read(lib, node) == content
    assert_counts_right(lib, kept)


def test_two_runs_at_once_lose_nothing_and_the_next_frees_what_they_wasted(lib, tmp_path):
    """Nothing stops two compaction runs at once (a scheduled one and an operator's): each file
    moves by one conditional transaction, so the loser of a race moves nothing; a new pack
    nothing was moved into is freed, and one only partly filled is left as dense as any."""
    add_disks("alice", tmp_path, 3)
    files = {}
    for n in range(4):
        files |= put_batch(lib, f"/twice{n}", f"twice{n}", 40, durability="raid1(2)",
                           encryption="aes256-gcm")
    nodes = list(files.values())
    for index, (node, _) in enumerate(nodes):
        if index % 4:
            delete(lib, node)
    kept = {node.node_id: (node, content) for node, content in nodes[::4]}
    queued = {ref.chunk_id for ref in lib.chunks.compaction_queue(before=time.time())}
    assert len(queued) == 4
    reports, problems = [], []

    def run():
        try:
            reports.append(lib.compaction.compact(budget_seconds=60))
        except Exception as exc:             # any failure is a finding
            problems.append(repr(exc))

    runs = [threading.Thread(target=run) for _ in range(2)]
    for thread in runs:
        thread.start()
    for thread in runs:
        thread.join()
    assert problems == [] and len(reports) == 2
    assert sum(r["blobs_moved"] for r in reports) >= len(kept)
    for node, content in kept.values():
        assert read(lib, node) == content
    lib.compaction.compact(budget_seconds=60)
    for node, content in kept.values():
        assert read(lib, node) == content
    assert_counts_right(lib, kept)
    # What the race wasted is what any pack may hold dead: each pack left is at least as full
    # as compaction leaves packs, and those nothing was moved into are freed.
    for pack in live_packs(lib, [n for n, _ in kept.values()]):
        record = lib.chunks.get("alice", pack)
        assert record.live_bytes >= lib.packs.COMPACT_BELOW * record.size
    assert list(lib.chunks.compaction_queue(before=time.time())) == []


def test_a_reader_holding_the_old_place_reads_from_the_new_one(lib, tmp_path):
    add_disks("alice", tmp_path, 2)
    files = put_batch(lib, "/stale", "stale", 30, durability="raid1(2)",
                      encryption="aes256-gcm")
    kept = [(node, content, lib.files.get_version("alice", node, None))
            for node, content in keep_every(lib, files, 3).values()]
    old_pack = pack_of(lib, kept[0][0])
    lib.compaction.compact(budget_seconds=60)
    assert lib.chunks.get("alice", old_pack) is None      # the old pack is gone
    for _node, content, stale in kept:
        assert lib.files.read("alice", stale, 0, stale.size - 1) == content


def test_deleting_with_a_stale_version_releases_from_the_new_pack(lib, tmp_path):
    add_disks("alice", tmp_path, 2)
    files = put_batch(lib, "/stale-delete", "stale-delete", 30, durability="raid1(2)")
    kept = keep_every(lib, files, 3)
    stale = [lib.files.get_version("alice", node, None) for node, _ in kept.values()]
    lib.compaction.compact(budget_seconds=60)
    for version in stale[:4]:
        lib.files.free_version("alice", version)
        del kept[version.node_id]
    assert_versions_gone(lib, stale[:4])
    assert_counts_right_for_versions(lib, kept)


def assert_versions_gone(lib, versions) -> None:
    from cloudstrype.tree.store import tree_store
    for version in versions:
        assert tree_store().get_version("alice", version.node_id, version.version_id) is None


def assert_counts_right_for_versions(lib, kept: dict) -> None:
    for pack in live_packs(lib, [node for node, _ in kept.values()]):
        record = lib.chunks.get("alice", pack)
        using = holders(lib, pack)
        assert (record.live, record.live_bytes) == (len(using),
                                                    sum(length for _, length in using))


def test_compaction_works_for_a_user_at_the_quota(lib, tmp_path, monkeypatch):
    """Who is at the quota needs the dead bytes freed most: the new pack is counted even above
    the quota (the old one is freed right after), and nothing else gets past it."""
    from cloudstrype.settings import reset_settings_cache
    add_disks("alice", tmp_path, 2)
    files = put_batch(lib, "/full", "full", 40, durability="raid1(2)")
    kept = keep_every(lib, files, 4)
    stored = lib.quota.usage("alice")["stored_bytes"]
    monkeypatch.setenv("CLOUDSTRYPE_QUOTA_BYTES", str(stored))
    reset_settings_cache()
    if lib.kind == "in-place":
        with pytest.raises(lib.errors.PayloadTooLarge):
            put_batch(lib, "/more", "more", 1, durability="raid1(2)")
    else:       # a batch answers each file
        [refused] = lib.files.upload_batch("alice", "/more", [lib.files.BatchFile(
            "m.bin", b"m" * 800)], "raid1(2)", None)
        assert isinstance(refused, lib.errors.PayloadTooLarge), refused
    report = lib.compaction.compact(budget_seconds=60)
    assert report["packs_compacted"] == 1 and report["compaction_failed"] == [], report
    usage = lib.quota.usage("alice")
    assert usage["stored_bytes"] < stored and usage["dead_bytes"] == 0
    for node, content in kept.values():
        assert read(lib, node) == content
    assert_counts_right(lib, kept)


def a_day_later(monkeypatch) -> None:
    from cloudstrype.pipeline.chunk_store import PACK_CHECK_SECONDS
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + PACK_CHECK_SECONDS + 60)


@pytest.mark.parametrize("attached", [0, 3])
def test_a_batch_the_server_stopped_mid_attach_has_its_pack_recounted_a_day_later(
        lib, tmp_path, monkeypatch, attached):
    """A batch's pack counts its files from the start; the server stopped after `attached`
    of 8 files got their blob. A day later compaction counts the files that really use it:
    the rest are dead bytes, and the pack is freed or compacted like any other."""
    disks = add_disks("alice", tmp_path, 2)
    base = put_batch(lib, "/base", "base", 4, durability="raid1(2)")   # a pack of its own
    before = lib.quota.usage("alice")
    real_attach = lib.files._attach_new_files
    real_in_place = lib.files._attach_version

    def attach_some(owner, parent, named):
        real_attach(owner, parent, dict(list(sorted(named.items()))[:attached]))
        raise SystemExit("the server stops here")
    if lib.kind == "in-place":
        count = [0]

        def attach_one(*args, **kwargs):
            if count[0] >= attached:
                raise SystemExit("the server stops here")
            count[0] += 1
            return real_in_place(*args, **kwargs)
        monkeypatch.setattr(lib.files, "_attach_version", attach_one)
    else:
        monkeypatch.setattr(lib.files, "_attach_new_files", attach_some)
    with pytest.raises(SystemExit):
        put_batch(lib, "/cut", "cut", 8, durability="raid1(2)")
    monkeypatch.undo()
    base_packs = live_packs(lib, [n for n, _ in base.values()])
    [cut_pack] = [r.chunk_id for r in lib.chunks.compaction_queue()
                  if r.chunk_id not in base_packs]
    record = lib.chunks.get("alice", cut_pack)
    assert record.live == 8, "counted from the start"
    kept = {}
    if attached:
        for name in ("f0.bin", "f1.bin", "f2.bin")[:attached]:
            node = lib.tree.resolve("alice", f"/cut/{name}")
            kept[node.node_id] = (node, read(lib, node))
    assert len(kept) == attached

    # Today nothing is due: a batch may still be attaching.
    report = lib.compaction.compact(budget_seconds=60)
    assert report["blobs_unclaimed"] == 0 and lib.chunks.get("alice", cut_pack).live == 8
    a_day_later(monkeypatch)
    report = lib.compaction.compact(budget_seconds=60)
    assert report["blobs_unclaimed"] == 8 - attached, report
    assert report["compaction_failed"] == []
    assert lib.chunks.get("alice", cut_pack) is None, "freed (emptied, or compacted away)"
    everything = {**base, **kept}
    for node, content in everything.values():
        assert read(lib, node) == content
    assert_counts_right(lib, everything)
    if not attached:
        assert lib.quota.usage("alice") == before
    assert list(lib.chunks.compaction_queue(before=time.time())) == []
    # The base batch's pack was checked too, found right, and taken off the queue.
    assert list(lib.chunks.compaction_queue()) == []
    assert len([p for d in disks.values() for p in d.rglob("*") if p.is_file()
                and not p.name.startswith(".")]) == 2 * len(live_packs(
                    lib, [n for n, _ in everything.values()]))


def place_of(lib, node):
    version = lib.files.get_version("alice", node, None)
    if version.content_key:
        return lib.packs.blob_place(lib.chunks.get_blob("alice", version.content_key))
    return lib.files.packed_blob(version)


def test_a_pack_with_no_whole_good_copy_gives_up_only_its_damaged_file(lib, tmp_path):
    """Damage past the redundancy in one file of a pack (one copy's share deleted, the other's
    bytes of that file flipped): compaction still moves every other kept file, each read from
    the copy that holds it intact, and leaves the damaged one (it read the whole pack first,
    failed, and moved none: the intact files stayed at one copy for good; found by a sweep)."""
    disks = add_disks("alice", tmp_path, 2)
    files = put_batch(lib, "/hurt", "hurt", 60, durability="raid1(2)", encryption="aes256-gcm")
    kept = keep_every(lib, files, 4)
    (hurt, _), *rest = kept.values()
    where = place_of(lib, hurt)
    pack = where.chunk_id
    first, second = [share_files(d, pack, i) for d in disks.values() for i in range(2)
                     if share_files(d, pack, i)]
    (flipped,), (deleted,) = first, second
    data = bytearray(flipped.read_bytes())
    data[where.offset + where.length // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    deleted.unlink()

    report = lib.compaction.compact(budget_seconds=60)

    assert report["blobs_moved"] == len(rest), report
    assert len(report["compaction_failed"]) == 1, report
    for node, content in rest:
        assert pack_of(lib, node) != pack
        assert read(lib, node) == content
    assert pack_of(lib, hurt) == pack            # left where it is, for the scrub to report
    with pytest.raises(lib.errors.ApiError):
        read(lib, hurt)


def test_a_full_pack_damaged_in_every_copy_is_rescued_file_by_file(lib, tmp_path):
    """Each copy of a pack damaged in another place: every file still reads (from the copy
    that holds it intact), but the scrub's repair cannot rebuild the pack whole, and
    compaction took only packs below half live: each file stayed at one good copy for good,
    the scrub saying on every run it could not be repaired (trash sweep). The repair now hands
    such a pack to compaction, which moves its files to a new, whole pack."""
    from cloudstrype.pipeline import store
    disks = add_disks("alice", tmp_path, 2)
    files = put_batch(lib, "/full", "full", 12, durability="raid1(2)", encryption="aes256-gcm")
    nodes = [node for node, _ in files.values()]
    pack = pack_of(lib, nodes[0])
    assert live_packs(lib, nodes) == {pack}
    # Two neighbouring files, one damaged in each copy: the copies differ in one run of
    # blocks, which no merge of whole regions can mend (codec.merge_copies).
    first, second = sorted((place_of(lib, n) for n in nodes), key=lambda w: w.offset)[:2]
    (copy_a,), (copy_b,) = [share_files(d, pack, i) for d in disks.values() for i in range(2)
                            if share_files(d, pack, i)]
    for path, where in ((copy_a, first), (copy_b, second)):
        data = bytearray(path.read_bytes())
        data[where.offset + where.length // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    for node, content in files.values():
        assert read(lib, node) == content           # each from the copy holding it intact
    assert lib.compaction.compact(budget_seconds=60)["packs_compacted"] == 0   # not queued

    lib.chunks.mark_damaged("alice", pack, {0, 1})
    report = store.scrub(budget_seconds=60)
    assert any("moved to a new pack by the next compaction run" in f
               for f in report["failed"]), report
    report = lib.compaction.compact(budget_seconds=60)

    assert report["blobs_moved"] == len(files) and report["packs_compacted"] == 1, report
    for node, content in files.values():
        assert pack_of(lib, node) != pack and read(lib, node) == content
    assert lib.chunks.get("alice", pack) is None
    rescued = pack_of(lib, nodes[0])
    assert store.repair_chunk("alice", rescued)["repaired"] == []     # whole in both copies
    assert_counts_right(lib, {n.node_id: (n, c) for n, c in files.values()})


def test_emptying_the_trash_counts_each_byte_once_while_it_goes(lib, tmp_path, monkeypatch):
    """A big folder being emptied is freed a file at a time: each file's bytes left the trash
    count only when the whole folder was gone, so meanwhile they counted twice (in the trash,
    and as dead in their pack or gone from the stored bytes) and live bytes read 0."""
    add_disks("alice", tmp_path, 2)
    kept = put_batch(lib, "/keep", "kept", 3)
    put_batch(lib, "/big", "doomed", 40)
    rng = random.Random(7)
    lib.files.upload("alice", "/big", "chunked.bin", rng.randbytes(300 * KiB), None, None,
                     None)
    live = lib.quota.usage("alice")["live_bytes"]
    lib.files.delete_node("alice", lib.tree.resolve("alice", "/big"))
    trashed = lib.quota.usage("alice")
    assert trashed["trash_bytes"] > 0 and trashed["live_bytes"] < live
    kept_live = trashed["live_bytes"]

    seen, real_free = [], lib.files.free_version

    def look_then_free(owner, version, deadline=float("inf")):
        # Between two files (each file's own freeing is one step, its count follows it).
        seen.append(lib.quota.usage("alice"))
        return real_free(owner, version, deadline)
    monkeypatch.setattr(lib.files, "free_version", look_then_free)
    lib.files.empty_trash("alice")

    assert len(seen) == 41
    for usage in seen:
        assert usage["live_bytes"] == kept_live, usage
        assert usage["trash_bytes"] + usage["dead_bytes"] <= usage["stored_bytes"], usage
    after = lib.quota.usage("alice")
    assert (after["trash_bytes"], after["live_bytes"]) == (0, kept_live)
    assert_counts_right(lib, kept)


def test_a_file_s_info_lists_its_newest_versions_and_says_how_many(lib, tmp_path,
                                                                   monkeypatch):
    add_disks("alice", tmp_path, 2)
    monkeypatch.setattr(lib.files, "MAX_LISTED_VERSIONS", 3)
    for n in range(5):
        node = lib.files.upload("alice", "/", "often.txt", f"version {n}".encode(), None,
                                None, None)
    listed = lib.files.versions("alice", node)
    assert listed["versions_total"] == 5
    assert [v["size"] for v in listed["versions"]] == [len(b"version 2")] * 3
    assert [v["current"] for v in listed["versions"]] == [False, False, True]
    assert listed["versions"][-1]["version"] == node.version_id
