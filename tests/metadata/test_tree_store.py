"""TreeStore conformance: every operation of the tree's metadata, on each engine."""
from __future__ import annotations

import dataclasses
import threading
import time
import uuid

import pytest
from cloudstrype import quota
from cloudstrype.metadata.engine import BadCursor, Change, Update
from cloudstrype.tree.store import (
    DIRECTORY,
    FILE,
    NODES,
    ROOT,
    TRASH,
    VERSIONS,
    Changed,
    NameTaken,
    Node,
    Profile,
    Trashed,
    TreeStore,
    Upload,
    UploadPart,
    Version,
)

T0 = 1_700_000_000.25


@pytest.fixture
def trees(engine) -> TreeStore:
    return TreeStore(engine)


def owner() -> str:
    return "u-" + uuid.uuid4().hex[:12]


def new_dir(trees: TreeStore, who: str, parent_id: str, name: str) -> Node:
    return trees.create(Node(who, uuid.uuid4().hex, DIRECTORY, name, parent_id, T0, T0))


def version(who: str, node_id: str, version_id: str, size: int, sha: str | None = "ab" * 32
            ) -> Version:
    return Version(who, node_id, version_id, size, 4096, 1, f'"{version_id}"', "text/plain",
                   "raid1(2)", "aes256-gcm", T0 + 1, sha)


def new_file(trees: TreeStore, who: str, parent_id: str, name: str, size: int = 5,
             version_id: str = "0001") -> Node:
    node_id = uuid.uuid4().hex
    v = version(who, node_id, version_id, size)
    return trees.create(Node(who, node_id, FILE, name, parent_id, T0, T0, version_id=version_id,
                             size=size, content_type=v.content_type, sha256=v.sha256,
                             etag=v.etag, durability=v.durability, encryption=v.encryption), v)


def race(count: int, action) -> list:
    """Run `action(n)` in `count` threads released together; each result or exception."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(n):
        barrier.wait()
        try:
            results[n] = action(n)
        except Exception as exc:          # collected, asserted on by the caller
            results[n] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


# -- nodes and entries ------------------------------------------------------------------------

def test_root_is_created_once_and_read_back(trees):
    who = owner()
    assert trees.get_node(who, ROOT) is None
    roots = race(4, lambda n: trees.ensure_root(who, T0 + n))
    assert all(isinstance(r, Node) for r in roots), roots
    assert len({r.created for r in roots}) == 1, "every caller sees the one root that was made"
    stored = trees.get_node(who, ROOT)
    assert (stored.type, stored.name, stored.parent_id) == (DIRECTORY, "", None)
    assert trees.ensure_root(who, T0 + 99).created == stored.created


def test_create_then_get_node_and_entry_round_trip(trees):
    who = owner()
    trees.ensure_root(who, T0)
    folder = new_dir(trees, who, ROOT, "Photos ☀")
    doc = new_file(trees, who, folder.node_id, "a.txt", size=12)
    assert trees.get_node(who, folder.node_id) == folder
    got = trees.get_node(who, doc.node_id)
    assert got == doc and got.revision == 1 and got.created == T0 and got.size == 12
    entry = trees.get_entry(who, folder.node_id, "a.txt")
    assert (entry.node_id, entry.type, entry.size, entry.modified) == (doc.node_id, FILE, 12, T0)
    assert trees.get_entry(who, folder.node_id, "b.txt") is None
    assert trees.get_entry(who, ROOT, "a.txt") is None, "entries are per directory"
    assert trees.get_version(who, doc.node_id, "0001").size == 12


def test_two_creates_of_one_name_exactly_one_wins(trees):
    who = owner()
    results = race(6, lambda n: new_dir(trees, who, ROOT, "same"))
    winners = [r for r in results if isinstance(r, Node)]
    assert len(winners) == 1, results
    assert all(isinstance(r, NameTaken) for r in results if not isinstance(r, Node)), results
    assert trees.get_entry(who, ROOT, "same").node_id == winners[0].node_id
    losers_nodes = [trees.get_node(who, n.node_id) for n in results if isinstance(n, Node)]
    assert losers_nodes == winners
    entries, _ = trees.list_entries(who, ROOT, 100)
    assert [e.name for e in entries] == ["same"]


def test_a_losing_create_writes_nothing(trees):
    who = owner()
    new_file(trees, who, ROOT, "f")
    loser = Node(who, "loser-id", FILE, "f", ROOT, T0, T0, version_id="0002")
    with pytest.raises(NameTaken):
        trees.create(loser, version(who, "loser-id", "0002", 1))
    assert trees.get_node(who, "loser-id") is None
    assert trees.list_versions(who, "loser-id") == []


def test_create_many_is_all_or_nothing(trees):
    who = owner()
    new_file(trees, who, ROOT, "taken")
    batch = [(Node(who, f"id{n}", DIRECTORY, f"d{n}", ROOT, T0, T0), None) for n in range(3)]
    doc = Node(who, "doc-id", FILE, "taken", ROOT, T0, T0, version_id="0001", size=5)
    with pytest.raises(NameTaken):
        trees.create_many(batch + [(doc, version(who, "doc-id", "0001", 5))])
    assert [e.name for e in trees.list_entries(who, ROOT, 10)[0]] == ["taken"]
    assert trees.get_node(who, "id0") is None and trees.get_version(who, "doc-id", "0001") is None
    trees.create_many(batch)
    assert [e.name for e in trees.list_entries(who, ROOT, 10)[0]] == ["d0", "d1", "d2", "taken"]


def test_create_many_loads_more_than_one_transaction_holds(trees):
    who = owner()
    pairs = []
    for n in range(120):
        node_id = f"f{n:03d}"
        pairs.append((Node(who, node_id, FILE, f"file-{n:03d}", ROOT, T0, T0, version_id="v",
                           size=n), version(who, node_id, "v", n)))
    trees.create_many(pairs)
    entries, cursor = trees.list_entries(who, ROOT, 1000)
    assert [e.size for e in entries] == list(range(120)) and cursor is None
    assert trees.get_version(who, "f119", "v").size == 119


# -- listing ----------------------------------------------------------------------------------

def test_listing_pages_are_sorted_by_name_with_opaque_cursors(trees):
    who = owner()
    names = [f"n{(n * 7) % 25:02d}" for n in range(25)]
    for name in names:
        new_file(trees, who, ROOT, name, size=len(name))
    seen, cursor, pages = [], None, 0
    while True:
        entries, cursor = trees.list_entries(who, ROOT, 10, cursor)
        assert len(entries) <= 10
        seen += entries
        pages += 1
        if cursor is None:
            break
        assert isinstance(cursor, str) and who not in cursor and "#" not in cursor
    assert pages == 3
    assert [e.name for e in seen] == sorted(names)
    assert all(e.type == FILE and e.size == 3 and e.parent_id == ROOT for e in seen)


def test_a_cursor_is_only_good_for_its_own_listing(trees):
    who = owner()
    other = new_dir(trees, who, ROOT, "other")
    for n in range(3):
        new_file(trees, who, ROOT, f"f{n}")
        new_file(trees, who, other.node_id, f"g{n}")
    _, cursor = trees.list_entries(who, ROOT, 2)
    assert cursor
    with pytest.raises(BadCursor):
        trees.list_entries(who, other.node_id, 2, cursor)
    with pytest.raises(BadCursor):
        trees.list_entries(owner(), ROOT, 2, cursor)
    with pytest.raises(BadCursor):
        trees.list_entries(who, ROOT, 2, "%%%not-a-cursor")


def test_an_empty_directory_lists_nothing(trees):
    who = owner()
    folder = new_dir(trees, who, ROOT, "empty")
    assert trees.list_entries(who, folder.node_id, 10) == ([], None)


# -- versions of a file -----------------------------------------------------------------------

def test_set_version_updates_node_entry_and_keeps_versions(trees):
    who = owner()
    doc = new_file(trees, who, ROOT, "doc", size=5, version_id="0001")
    newer = version(who, doc.node_id, "0002", 9, sha=None)
    updated = trees.set_version(doc, newer, T0 + 5)
    assert (updated.version_id, updated.size, updated.revision) == ("0002", 9, 2)
    assert updated.sha256 is None
    assert trees.get_node(who, doc.node_id) == updated
    entry = trees.get_entry(who, ROOT, "doc")
    assert (entry.size, entry.modified) == (9, T0 + 5)
    assert [v.version_id for v in trees.list_versions(who, doc.node_id)] == ["0001", "0002"]
    assert trees.get_version(who, doc.node_id, "0001").size == 5


def test_two_writers_of_one_revision_exactly_one_wins(trees):
    who = owner()
    doc = new_file(trees, who, ROOT, "doc")
    results = race(5, lambda n: trees.set_version(
        doc, version(who, doc.node_id, f"01{n}", 10 + n), T0 + n))
    winners = [r for r in results if isinstance(r, Node)]
    assert len(winners) == 1, results
    assert all(isinstance(r, Changed) for r in results if not isinstance(r, Node)), results
    stored = trees.get_node(who, doc.node_id)
    assert stored == winners[0] and stored.revision == 2
    assert trees.get_entry(who, ROOT, "doc").size == stored.size


def test_a_stale_set_version_writes_nothing(trees):
    who = owner()
    doc = new_file(trees, who, ROOT, "doc")
    trees.set_version(doc, version(who, doc.node_id, "0002", 2), T0 + 1)
    with pytest.raises(Changed):
        trees.set_version(doc, version(who, doc.node_id, "0003", 3), T0 + 2)
    assert trees.get_node(who, doc.node_id).version_id == "0002"
    assert trees.get_version(who, doc.node_id, "0003") is None


def test_versions_get_and_delete(trees):
    who = owner()
    doc = new_file(trees, who, ROOT, "doc", version_id="0001")
    trees.set_version(doc, version(who, doc.node_id, "0002", 2), T0 + 1)
    trees.delete_version(who, doc.node_id, "0001")
    assert trees.get_version(who, doc.node_id, "0001") is None
    assert [v.version_id for v in trees.list_versions(who, doc.node_id)] == ["0002"]
    trees.delete_version(owner(), doc.node_id, "0002")
    assert trees.get_version(who, doc.node_id, "0002") is not None, "only the owner deletes"


# -- moving, attributes, removal --------------------------------------------------------------

def test_rename_in_place(trees):
    who = owner()
    doc = new_file(trees, who, ROOT, "old")
    moved = trees.move(doc, ROOT, "new")
    # The content's time stays: a rename does not change what the file holds.
    assert (moved.name, moved.parent_id, moved.revision, moved.modified) == ("new", ROOT, 2,
                                                                            doc.modified)
    assert trees.get_entry(who, ROOT, "new").modified == doc.modified
    assert trees.get_node(who, doc.node_id) == moved
    assert trees.get_entry(who, ROOT, "old") is None
    assert trees.get_entry(who, ROOT, "new").node_id == doc.node_id


def test_moving_a_directory_touches_only_it(trees):
    who = owner()
    src = new_dir(trees, who, ROOT, "src")
    dst = new_dir(trees, who, ROOT, "dst")
    inner = new_dir(trees, who, src.node_id, "inner")
    leaves = [new_file(trees, who, inner.node_id, f"leaf{n}") for n in range(5)]
    moved = trees.move(inner, dst.node_id, "inner2")
    assert moved.parent_id == dst.node_id
    assert trees.list_entries(who, src.node_id, 10) == ([], None)
    assert [e.name for e in trees.list_entries(who, dst.node_id, 10)[0]] == ["inner2"]
    # Children keep their parent pointer: nothing under the directory was rewritten.
    assert [trees.get_node(who, leaf.node_id) for leaf in leaves] == leaves
    assert len(trees.list_entries(who, inner.node_id, 10)[0]) == 5


def test_move_onto_a_taken_name_changes_nothing(trees):
    who = owner()
    a = new_file(trees, who, ROOT, "a")
    new_file(trees, who, ROOT, "b")
    with pytest.raises(NameTaken):
        trees.move(a, ROOT, "b")
    assert trees.get_node(who, a.node_id) == a
    assert trees.get_entry(who, ROOT, "a").node_id == a.node_id
    assert trees.get_entry(who, ROOT, "b").node_id != a.node_id


def test_a_stale_move_changes_nothing(trees):
    who = owner()
    a = new_file(trees, who, ROOT, "a")
    trees.set_attributes(a, {"k": "v"})
    with pytest.raises(Changed):
        trees.move(a, ROOT, "c")
    assert trees.get_entry(who, ROOT, "c") is None
    assert trees.get_entry(who, ROOT, "a").node_id == a.node_id
    assert trees.get_node(who, a.node_id).name == "a"


def test_two_moves_to_one_name_exactly_one_wins(trees):
    who = owner()
    items = [new_file(trees, who, ROOT, f"src{n}") for n in range(4)]
    results = race(4, lambda n: trees.move(items[n], ROOT, "target"))
    winners = [r for r in results if isinstance(r, Node)]
    assert len(winners) == 1, results
    assert all(isinstance(r, NameTaken) for r in results if not isinstance(r, Node)), results
    names = sorted(e.name for e in trees.list_entries(who, ROOT, 10)[0])
    assert len(names) == 4 and "target" in names


def test_set_attributes_with_revision_check(trees):
    who = owner()
    a = new_dir(trees, who, ROOT, "a")
    changed = trees.set_attributes(a, {"color": "red", "n": 2})
    assert trees.get_node(who, a.node_id).attributes == {"color": "red", "n": 2}
    with pytest.raises(Changed):
        trees.set_attributes(a, {"color": "blue"})
    cleared = trees.set_attributes(changed, {})
    assert trees.get_node(who, a.node_id) == cleared and cleared.attributes == {}


def test_remove_drops_node_and_entry(trees):
    who = owner()
    a = new_file(trees, who, ROOT, "a")
    keep = new_file(trees, who, ROOT, "b")
    trees.remove(a)
    assert trees.get_node(who, a.node_id) is None
    assert trees.get_entry(who, ROOT, "a") is None
    assert [e.node_id for e in trees.list_entries(who, ROOT, 10)[0]] == [keep.node_id]


def test_remove_leaves_a_newer_entry_of_the_same_name(trees):
    who = owner()
    a = new_file(trees, who, ROOT, "a")
    moved = trees.move(a, ROOT, "z")
    b = new_file(trees, who, ROOT, "a")
    trees.remove(a)          # the stale record still says "a"
    assert trees.get_node(who, moved.node_id) is None
    assert trees.get_entry(who, ROOT, "a").node_id == b.node_id


def test_nodes_and_versions_are_read_many_at_once_and_only_the_owners(trees):
    who, stranger = owner(), owner()
    folder = new_dir(trees, who, ROOT, "folder")
    made = [new_file(trees, who, folder.node_id, f"f{n}", size=n + 1) for n in range(5)]
    theirs = new_file(trees, stranger, ROOT, "theirs")
    asked = [m.node_id for m in made] + [theirs.node_id, "0" * 32, made[0].node_id]
    found = trees.get_nodes(who, asked)
    assert set(found) == {m.node_id for m in made}
    assert all(found[m.node_id].name == m.name for m in made)
    assert trees.get_nodes(stranger, asked).keys() == {theirs.node_id}
    pairs = [(m.node_id, "0001") for m in made] + [(made[0].node_id, "9999"),
                                                   (theirs.node_id, "0001")]
    versions = trees.get_versions(who, pairs)
    assert set(versions) == {(m.node_id, "0001") for m in made}
    assert [versions[(m.node_id, "0001")].size for m in made] == [1, 2, 3, 4, 5]
    assert all(v.node_id == node_id for (node_id, _), v in versions.items())


# -- trash ------------------------------------------------------------------------------------

def trash_bytes(trees: TreeStore, who: str) -> int:
    return int((trees.engine.get(quota.USAGE, {"owner": who}) or {}).get("trash_bytes", 0))


def to_trash(trees: TreeStore, node: Node, at: float, size: int = 5,
             purge_at: int | None = None) -> Trashed:
    return trees.trash(node, at, path=f"/{node.name}", size=size,
                       purge_at=int(at) + 30 * 86400 if purge_at is None else purge_at)


def test_trash_takes_the_node_out_of_its_directory_into_the_owners_trash(trees):
    who = owner()
    folder = new_dir(trees, who, ROOT, "folder")
    doc = new_file(trees, who, folder.node_id, "doc.txt")
    item = to_trash(trees, folder, T0 + 5, size=123)
    assert trees.get_entry(who, ROOT, "folder") is None
    assert trees.get_node(who, folder.node_id).parent_id == TRASH
    assert item.node.revision == folder.revision + 1 and item.size == 123
    found = trees.get_trashed(who, folder.node_id)
    assert (found.original_parent_id, found.original_path, found.size, found.trashed_at) == \
        (ROOT, "/folder", 123, int(T0 + 5))
    assert trash_bytes(trees, who) == 123
    # What is under it stays put but is in the trash too; the item alone is listed.
    assert trees.in_trash(trees.get_node(who, doc.node_id))
    assert not trees.in_trash(new_file(trees, who, ROOT, "live.txt"))
    assert trees.get_trashed(who, doc.node_id) is None
    assert [i.node.node_id for i in trees.list_trash(who, 10)[0]] == [folder.node_id]
    # A stale second trash of the same node writes nothing.
    with pytest.raises(Changed):
        to_trash(trees, folder, T0 + 6)
    assert trash_bytes(trees, who) == 123


def test_a_trash_item_counts_what_it_frees_apart_from_its_size(trees):
    """The trash bytes take what deleting an item for good frees (`counted`), less than its
    size when a kept file reads the same content; restoring or removing it takes off that,
    however the item was read back."""
    who = owner()
    folder = new_dir(trees, who, ROOT, "folder")
    kept = new_file(trees, who, folder.node_id, "dup.txt")
    freed = new_file(trees, who, folder.node_id, "own.txt")
    dup = trees.trash(kept, T0 + 1, path="/folder/dup.txt", size=900, counted=0,
                      purge_at=int(T0))
    own = to_trash(trees, freed, T0 + 2, size=40)
    assert (dup.size, dup.counted, own.counted) == (900, 0, 40)
    assert trash_bytes(trees, who) == 40
    found = trees.get_trashed(who, kept.node_id)
    assert (found.size, found.counted) == (900, 0)
    trees.restore(found, folder, "dup.txt")
    assert trash_bytes(trees, who) == 40
    trees.remove(trees.get_node(who, freed.node_id))
    assert trash_bytes(trees, who) == 0


def test_a_trash_item_is_counted_again_only_from_the_count_it_was_read_with(trees):
    """A new measure of a deleted folder sets its size and count, and moves the owner's trash
    bytes by the difference; one read before another recount (or a restore) writes nothing."""
    who = owner()
    home = new_dir(trees, who, ROOT, "home")
    folder = new_dir(trees, who, home.node_id, "folder")
    item = to_trash(trees, folder, T0 + 1, size=100)
    assert trees.recount_trashed(item, 160, 150)
    found = trees.get_trashed(who, folder.node_id)
    assert (found.size, found.counted, trash_bytes(trees, who)) == (160, 150, 150)
    assert not trees.recount_trashed(item, 999, 999)          # read before the last recount
    assert trees.recount_trashed(found, 170, 150)             # more bytes, none freed more
    stale = found                                             # (its size is 160 no more)
    found = trees.get_trashed(who, folder.node_id)
    assert not trees.recount_trashed(stale, 165, 150)
    assert trees.recount_trashed(found, 160, 90)              # a measure may also find less
    assert trash_bytes(trees, who) == 90
    again = trees.get_trashed(who, folder.node_id)
    trees.restore(again, home, "folder")
    assert not trees.recount_trashed(again, 500, 500)
    assert trash_bytes(trees, who) == 0


def test_the_trash_lists_newest_first_in_pages_and_only_the_owners(trees):
    who, stranger = owner(), owner()
    made = [to_trash(trees, new_file(trees, who, ROOT, f"f{n}"), T0 + n) for n in range(5)]
    items, cursor = trees.list_trash(who, 2)
    seen = [i.node.node_id for i in items]
    while cursor:
        items, cursor = trees.list_trash(who, 2, cursor)
        seen += [i.node.node_id for i in items]
    assert seen == [t.node.node_id for t in reversed(made)]
    assert trees.list_trash(stranger, 10) == ([], None)
    assert trees.get_trashed(stranger, made[0].node.node_id) is None
    with pytest.raises(BadCursor):
        trees.list_trash(who, 2, "not-a-cursor")


def test_deletes_within_one_second_list_newest_first_beside_older_items(trees):
    """The listing's order is the deletes' own, not the ids', within a second too; an item
    trashed before the listing kept the microsecond (its entry named by the second alone)
    sorts among them by its second, and restores and deletes for good as before."""
    who = owner()
    files = sorted((new_file(trees, who, ROOT, f"s{n}") for n in range(5)),
                   key=lambda node: node.node_id, reverse=True)
    # Trashed in the order that the ids alone would list last-deleted last.
    made = [to_trash(trees, node, T0 + 10 + n / 10) for n, node in enumerate(files)]
    folder = new_dir(trees, who, ROOT, "kept")
    older = to_trash(trees, new_file(trees, who, folder.node_id, "older"), T0 + 5)
    _as_before_the_microsecond(trees, older)
    seen = [i.node.node_id for i in trees.list_trash(who, 10)[0]]
    assert seen == [t.node.node_id for t in reversed(made)] + [older.node.node_id]
    legacy = trees.get_trashed(who, older.node.node_id)
    assert legacy.entry_name == "" and trees.restore(legacy, folder, "older").name == "older"
    doomed = trees.get_trashed(who, made[0].node.node_id)
    trees.doom(doomed)
    assert [i.node.node_id for i in trees.list_trash(who, 10)[0]] == \
        [t.node.node_id for t in reversed(made[1:])]


def _as_before_the_microsecond(trees: TreeStore, item: Trashed) -> None:
    """Rewrite a trash item as items trashed before the listing kept the microsecond are."""
    from cloudstrype.metadata.engine import Delete, Put
    from cloudstrype.tree.store import ENTRIES, _entry_item, _entry_key, _trash_name

    node = item.node
    trees.engine.transact([
        Delete(ENTRIES, _entry_key(node.owner, TRASH, item.entry_name)),
        Put(ENTRIES, _entry_item(node.owner, TRASH, _trash_name(item.trashed_at, node.node_id),
                                 node.node_id, node.type, item.size, item.trashed_at,
                                 node.sha256)),
        Update(NODES, {"owner": node.owner, "node_id": node.node_id},
               Change(remove=("trash_entry",)))])


def test_restore_puts_it_back_all_or_nothing(trees):
    who = owner()
    folder = new_dir(trees, who, ROOT, "folder")
    doc = new_file(trees, who, folder.node_id, "doc.txt", size=7)
    item = to_trash(trees, doc, T0 + 1, size=7)
    taker = new_file(trees, who, folder.node_id, "doc.txt")
    with pytest.raises(NameTaken):
        trees.restore(item, folder, "doc.txt")
    assert trees.get_trashed(who, doc.node_id) is not None and trash_bytes(trees, who) == 7
    back = trees.restore(item, folder, "doc (restored).txt")
    assert back.parent_id == folder.node_id and back.name == "doc (restored).txt"
    assert trees.get_entry(who, folder.node_id, "doc (restored).txt").node_id == doc.node_id
    assert trees.get_entry(who, folder.node_id, "doc.txt").node_id == taker.node_id
    assert trees.list_trash(who, 10) == ([], None) and trash_bytes(trees, who) == 0
    assert trees.get_trashed(who, doc.node_id) is None
    assert not trees.in_trash(trees.get_node(who, doc.node_id))
    assert len(trees.list_versions(who, doc.node_id)) == 1
    # A restore of the same (stale) item again writes nothing.
    with pytest.raises(Changed):
        trees.restore(item, folder, "third.txt")
    assert trees.get_entry(who, folder.node_id, "third.txt") is None


def test_restore_into_a_directory_that_changed_meanwhile_writes_nothing(trees):
    who = owner()
    target = new_dir(trees, who, ROOT, "target")
    item = to_trash(trees, new_file(trees, who, ROOT, "a"), T0 + 1)
    to_trash(trees, target, T0 + 2)          # the target went to the trash meanwhile
    with pytest.raises(Changed):
        trees.restore(item, target, "a")
    assert trees.get_trashed(who, item.node.node_id) is not None
    assert trees.get_entry(who, target.node_id, "a") is None


def test_racing_restores_and_deletes_exactly_one_wins(trees):
    who = owner()
    root = trees.ensure_root(who, T0)
    item = to_trash(trees, new_file(trees, who, ROOT, "raced"), T0 + 1, size=5)
    results = race(6, lambda n: trees.restore(item, root, f"name{n}") if n % 3
                   else trees.doom(item))
    winners = [r for r in results if isinstance(r, Node)]
    assert len(winners) == 1, results
    assert all(isinstance(r, Changed) for r in results if not isinstance(r, Node))
    names = [e.name for e in trees.list_entries(who, ROOT, 10)[0]]
    assert len(names) == (1 if winners[0].parent_id == ROOT else 0)


def test_doom_leaves_the_listing_and_queues_first(trees):
    who = owner()
    later = to_trash(trees, new_file(trees, who, ROOT, "later"), T0, purge_at=int(T0) + 100)
    gone = to_trash(trees, new_file(trees, who, ROOT, "gone"), T0 + 1,
                    purge_at=int(T0) + 50)
    trees.doom(gone)
    assert [i.node.node_id for i in trees.list_trash(who, 10)[0]] == [later.node.node_id]
    assert trees.get_trashed(who, gone.node.node_id) is None
    assert trees.get_trashed(who, gone.node.node_id, doomed=True).doomed
    with pytest.raises(Changed):
        trees.doom(gone)
    with pytest.raises(Changed):
        trees.restore(gone, trees.ensure_root(who, T0), "gone")
    mine = [t for t in trees.due_for_purge(T0 + 200) if t.node.owner == who]
    assert [t.node.node_id for t in mine] == [gone.node.node_id, later.node.node_id]
    assert [t.node.node_id for t in trees.due_for_purge(T0 + 60) if t.node.owner == who] == \
        [gone.node.node_id]


def test_set_purge_at_moves_an_item_in_the_queue(trees):
    who = owner()
    item = to_trash(trees, new_file(trees, who, ROOT, "a"), T0, purge_at=int(T0) + 10_000)
    assert not [t for t in trees.due_for_purge(T0 + 10) if t.node.owner == who]
    trees.set_purge_at(item, int(T0))
    assert trees.get_trashed(who, item.node.node_id).purge_at == int(T0)
    assert [t.node.node_id for t in trees.due_for_purge(T0 + 10) if t.node.owner == who] == \
        [item.node.node_id]
    trees.restore(item, trees.ensure_root(who, T0), "a")
    trees.set_purge_at(item, 0)          # left the trash: a no-op
    assert "purge_at" not in trees.engine.get(NODES, {"owner": who,
                                                      "node_id": item.node.node_id})


def test_removing_a_freed_trash_item_takes_its_bytes_off_once(trees):
    who = owner()
    folder = new_dir(trees, who, ROOT, "folder")
    child = new_file(trees, who, folder.node_id, "c")
    item = to_trash(trees, folder, T0, size=40)
    doomed = trees.doom(item)
    trees.remove(trees.get_node(who, child.node_id))
    assert trash_bytes(trees, who) == 40
    # A delete for good and the sweep may free it together: counted off once.
    results = race(4, lambda n: trees.remove(doomed))
    assert all(r is None or isinstance(r, Changed) for r in results), results
    assert trash_bytes(trees, who) == 0 and trees.get_node(who, folder.node_id) is None


def test_removing_a_trash_item_as_another_purger_counts_it_down_takes_each_byte_off_once(
        trees, monkeypatch):
    """A trash empty and the sweep freeing one item together: one took off what it freed
    (uncount_trashed) between the other's read of the item and its removal, which then took
    the whole count read before off again (crash sweep: the owner's trash bytes drifted below
    the items' sum, −88,099 B in half an hour)."""
    who = owner()
    folder = new_dir(trees, who, ROOT, "folder")
    item = to_trash(trees, folder, T0, size=100)
    doomed = trees.doom(item)
    read = trees._get
    raced = []

    def read_then_race(table, key, *args):
        found = read(table, key, *args)
        if not raced and found is not None and found.get("node_id") == folder.node_id:
            raced.append(trees.uncount_trashed(who, folder.node_id, item.trashed_at, 30))
        return found

    monkeypatch.setattr(trees, "_get", read_then_race)
    trees.remove(doomed)
    assert raced == [True]
    assert trash_bytes(trees, who) == 0 and trees.get_node(who, folder.node_id) is None


def test_profile_keeps_the_trash_retention(trees):
    who = owner()
    trees.put_profile(Profile(who, None, None, 7))
    assert trees.get_profile(who).trash_retention_days == 7
    trees.put_profile(Profile(who, "raid1(2)", None))
    assert trees.get_profile(who).trash_retention_days is None


# -- upload sessions --------------------------------------------------------------------------

def session(who: str, expires_at: int, purge_at: int | None = None, **extra) -> Upload:
    return Upload(who, uuid.uuid4().hex[:24], "/dir", "big.bin", 10_000, 4096,
                  "application/octet-stream", "raid1(2)", "aes256-gcm", "0009", T0,
                  expires_at, purge_at if purge_at is not None else expires_at + 7 * 86400,
                  **extra)


def test_upload_session_with_parts(trees):
    who = owner()
    up = session(who, int(time.time()) + 3600, sha256="cd" * 32)
    assert trees.create_upload(up) is True
    assert trees.get_upload(who, up.upload_id) == up
    # An id recorded once is not recorded again (a client may choose it: files.create_session).
    assert trees.create_upload(dataclasses.replace(up, name="other.bin")) is False
    assert trees.get_upload(who, up.upload_id) == up
    assert trees.parts(who, up.upload_id) == {}
    for n in (2, 0):
        trees.put_part(UploadPart(who, up.upload_id, n, 4096, f"{n}" * 64, up.expires_at,
                                  up.purge_at))
    trees.put_part(UploadPart(who, up.upload_id, 0, 4096, "f" * 64, up.expires_at,
                              up.purge_at))
    parts = trees.parts(who, up.upload_id)
    assert sorted(parts) == [0, 2] and parts[0].sha256 == "f" * 64 and parts[2].size == 4096
    trees.mark_committed(up)
    assert trees.get_upload(who, up.upload_id).committed is True
    with pytest.raises(Changed):
        trees.mark_committed(up)
    trees.forget_upload(up)
    assert trees.get_upload(who, up.upload_id) is None
    assert trees.parts(who, up.upload_id) == {}


def test_an_owners_open_sessions_are_listed_with_who_opened_them(trees):
    who, other = owner(), owner()
    later = int(time.time()) + 3600
    mine = session(who, later)
    theirs = session(who, later, uploader="recipient-1", share_id="s" * 24)
    done, dropped = session(who, later), session(who, later)
    intent = session(who, later, intent=True)
    elsewhere = session(other, later)
    for up in (mine, theirs, done, dropped, intent, elsewhere):
        trees.create_upload(up)
    trees.mark_committed(done)
    trees.mark_aborted(dropped, int(time.time()))
    listed = {u.upload_id: u for u in trees.open_uploads(who)}
    assert set(listed) == {mine.upload_id, theirs.upload_id}
    assert (listed[theirs.upload_id].uploader, listed[theirs.upload_id].share_id) == \
        ("recipient-1", "s" * 24)
    assert (listed[mine.upload_id].uploader, listed[mine.upload_id].share_id) == (None, None)


def test_expired_sessions_are_found_through_the_index(trees):
    now = int(time.time())
    a, b = owner(), owner()
    old = session(a, now - 300)
    older = session(b, now - 600)
    recent = session(a, now - 10)
    live = session(b, now + 3600)
    for up in (old, older, recent, live):
        trees.create_upload(up)
    trees.mark_committed(recent)
    found = list(trees.expired_uploads(before=now - 5, page_size=1))
    mine = [u for u in found if u.owner in (a, b)]
    assert [u.upload_id for u in mine] == [older.upload_id, old.upload_id, recent.upload_id]
    assert mine[2].committed is True
    assert [u.upload_id for u in trees.expired_uploads(before=now - 100)
            if u.owner in (a, b)] == [older.upload_id, old.upload_id]
    trees.forget_upload(old)
    assert old.upload_id not in {u.upload_id for u in trees.expired_uploads(before=now)}


def test_past_the_backstop_a_session_is_gone(trees):
    who = owner()
    now = int(time.time())
    gone = session(who, now - 8 * 86400, purge_at=now - 86400)
    trees.create_upload(gone)
    trees.put_part(UploadPart(who, gone.upload_id, 0, 1, "0" * 64, gone.expires_at,
                              gone.purge_at))
    assert trees.get_upload(who, gone.upload_id) is None
    assert trees.parts(who, gone.upload_id) == {}
    assert gone.upload_id not in {u.upload_id for u in trees.expired_uploads(before=now)}


# -- profiles ---------------------------------------------------------------------------------

def test_profile_defaults(trees):
    who = owner()
    assert trees.get_profile(who) is None
    trees.put_profile(Profile(who, "raid1(2)", None))
    assert trees.get_profile(who) == Profile(who, "raid1(2)", None)
    trees.put_profile(Profile(who, "rs(2,1)", "none"))
    assert trees.get_profile(who) == Profile(who, "rs(2,1)", "none")


# -- owners -----------------------------------------------------------------------------------

def test_another_owners_ids_are_not_found(trees):
    who, stranger = owner(), owner()
    trees.ensure_root(who, T0)
    folder = new_dir(trees, who, ROOT, "private")
    doc = new_file(trees, who, folder.node_id, "secret.txt")
    up = session(who, int(time.time()) + 3600)
    trees.create_upload(up)
    trees.put_part(UploadPart(who, up.upload_id, 0, 4096, "0" * 64, up.expires_at,
                              up.purge_at))
    trees.put_profile(Profile(who, "raid1(3)", "aes256-gcm"))

    assert trees.get_node(stranger, doc.node_id) is None
    assert trees.get_node(stranger, folder.node_id) is None
    assert trees.get_node(stranger, ROOT) is None
    assert trees.get_entry(stranger, folder.node_id, "secret.txt") is None
    assert trees.list_entries(stranger, folder.node_id, 10) == ([], None)
    assert trees.list_entries(stranger, ROOT, 10) == ([], None)
    assert trees.get_version(stranger, doc.node_id, "0001") is None
    assert trees.list_versions(stranger, doc.node_id) == []
    assert trees.get_upload(stranger, up.upload_id) is None
    assert trees.parts(stranger, up.upload_id) == {}
    assert trees.get_profile(stranger) is None
    # The stranger's own root is theirs alone.
    theirs = trees.ensure_root(stranger, T0 + 1)
    assert theirs.owner == stranger and trees.get_node(who, ROOT).created == T0


# -- packed versions: found by pack, moved by compaction -----------------------------------------

def packed(who: str, node_id: str, version_id: str, chunk: str, offset: int) -> Version:
    return dataclasses.replace(version(who, node_id, version_id, 10), chunk_count=0,
                               pack_chunk=chunk, pack_offset=offset, pack_length=38,
                               blob_hash="cd" * 32)


def test_versions_are_found_by_their_pack_and_moved_only_from_where_they_are(trees, engine):
    who, other = owner(), owner()
    a = new_file(trees, who, ROOT, "a")
    b = new_file(trees, who, ROOT, "b")
    trees.set_version(trees.get_node(who, a.node_id), packed(who, a.node_id, "0002", "pk1", 0),
                      T0 + 1)
    trees.set_version(trees.get_node(who, b.node_id), packed(who, b.node_id, "0002", "pk1", 38),
                      T0 + 1)
    c = new_file(trees, other, ROOT, "c")
    trees.set_version(trees.get_node(other, c.node_id),
                      packed(other, c.node_id, "0002", "pk1", 76), T0 + 1)
    found = trees.versions_in_pack(who, "pk1")
    assert sorted((v.node_id, v.pack_offset) for v in found) == sorted(
        [(a.node_id, 0), (b.node_id, 38)]), "only the owner's versions"
    assert trees.versions_in_pack(who, "pk2") == []

    stale = trees.get_version(who, a.node_id, "0002")
    to = {"pack_chunk": "pk2", "pack_offset": 0, "pack_length": 38, "blob_hash": "ef" * 32}
    assert trees.move_blob(stale, to)
    moved = trees.get_version(who, a.node_id, "0002")
    assert (moved.pack_chunk, moved.pack_offset, moved.blob_hash) == ("pk2", 0, "ef" * 32)
    assert not trees.move_blob(stale, to), "it is no longer where the caller saw it"
    assert [v.node_id for v in trees.versions_in_pack(who, "pk2")] == [a.node_id]
    # A delete names the pack it releases from: refused once the version has moved.
    assert not trees.delete_version(
        who, a.node_id, "0002",
        (Update(VERSIONS, {"file_ref": f"{who}#{b.node_id}", "version_id": "0002"},
                Change(set={"size": 10})),), "pk1")
    assert trees.get_version(who, a.node_id, "0002") is not None
    assert trees.delete_version(
        who, a.node_id, "0002",
        (Update(VERSIONS, {"file_ref": f"{who}#{b.node_id}", "version_id": "0002"},
                Change(set={"size": 10})),), "pk2")
    assert trees.get_version(who, a.node_id, "0002") is None
