"""The Engine conformance suite: every promise of cloudstrype.metadata.engine, on every engine.

The tables here exist for this suite only (not registered in schema.TABLES).
"""
from __future__ import annotations

import base64
import threading
import time

import pytest
from cloudstrype.metadata import schema
from cloudstrype.metadata.engine import (
    MAX_TRANSACTION_ITEMS,
    BadCursor,
    Change,
    Check,
    Condition,
    ConditionFailed,
    Delete,
    Put,
    Update,
    encode_cursor,
)

ITEMS = schema.Table(
    "conformance_items", hash_key="pk", range_key="sk",
    fields={"pk": schema.STR, "sk": schema.STR, "n": schema.INT, "flag": schema.BOOL,
            "blob": schema.BYTES, "doc": schema.JSON, "nums": schema.INT_SET,
            "tags": schema.STR_SET, "state": schema.STR, "due": schema.INT,
            "text": schema.STR, "expires_at": schema.INT},
    indexes=(schema.Index("by-state", "state", "due"),), expires="expires_at")
NUMBERED = schema.Table("conformance_numbered", hash_key="pk", range_key="seq",
                        fields={"pk": schema.STR, "seq": schema.INT, "v": schema.STR})
SINGLE = schema.Table("conformance_single", hash_key="id",
                      fields={"id": schema.STR, "n": schema.INT, "text": schema.STR})


@pytest.fixture
def db(engine):
    engine.create_tables([ITEMS, NUMBERED, SINGLE])
    engine.create_tables([ITEMS])                   # idempotent
    return engine


def key(sk: str, pk: str = "p") -> dict:
    return {"pk": pk, "sk": sk}


def item(sk: str, pk: str = "p", **fields) -> dict:
    return {"pk": pk, "sk": sk, **fields}


def sks(page) -> list:
    return [i["sk"] for i in page.items]


# -- get / put ---------------------------------------------------------------------------------

def test_get_of_a_missing_item_is_none(db):
    assert db.get(ITEMS, key("nothing")) is None
    assert db.get(SINGLE, {"id": "nothing"}) is None


def test_put_then_get_returns_exactly_the_item(db):
    db.put(ITEMS, item("a", n=1, text="x"))
    assert db.get(ITEMS, key("a")) == item("a", n=1, text="x")
    db.put(SINGLE, {"id": "one", "n": 0})
    assert db.get(SINGLE, {"id": "one"}) == {"id": "one", "n": 0}


def test_get_many_reads_the_keys_that_exist_in_order(db):
    import time
    db.put(ITEMS, item("a", n=1, blob=b"\x00", tags={"t"}))
    db.put(ITEMS, item("b", n=2))
    db.put(ITEMS, item("gone", expires_at=int(time.time()) - 10))
    db.put(SINGLE, {"id": "one", "n": 1})
    assert db.get_many(ITEMS, [key("b"), key("missing"), key("a"), key("gone")]) == [
        item("b", n=2), item("a", n=1, blob=b"\x00", tags={"t"})]
    assert db.get_many(ITEMS, []) == []
    assert db.get_many(SINGLE, [{"id": "two"}, {"id": "one"}]) == [{"id": "one", "n": 1}]
    many = [item(f"k{n:03}", n=n) for n in range(450)]       # more than one call on each engine
    for made in many:
        db.put(ITEMS, made)
    assert db.get_many(ITEMS, [key(m["sk"]) for m in many]) == many


def test_put_replaces_the_whole_item(db):
    db.put(ITEMS, item("a", n=1, text="x", tags={"t"}))
    db.put(ITEMS, item("a", n=2))
    assert db.get(ITEMS, key("a")) == item("a", n=2)


def test_missing_fields_are_absent_never_none(db):
    db.put(ITEMS, item("a", n=3))
    got = db.get(ITEMS, key("a"))
    assert got == item("a", n=3) and "text" not in got
    # None is not a value: a field is there or it is not
    with pytest.raises(TypeError):
        db.put(ITEMS, item("b", text=None))
    with pytest.raises(TypeError):
        db.put(ITEMS, item("b", n="three"))
    assert db.get(ITEMS, key("b")) is None


def test_an_empty_set_is_stored_as_absent(db):
    # DynamoDB cannot store an empty set, and an emptied set is removed (Change): so it is absent.
    db.put(ITEMS, item("e", tags=set(), n=1))
    assert db.get(ITEMS, key("e")) == item("e", n=1)


def test_values_round_trip_exactly(db):
    values = dict(
        n=-12345678901234, flag=False, blob=bytes(range(256)) + b"\x00",
        doc={"a": [1, 2.5, "ü", None, True, {"b": []}], "c": {"d": "𝄞"}},
        nums={0, -3, 2**40}, tags={"", "ünïcødé", "a b"}, text="")
    db.put(ITEMS, item("types", **values))
    got = db.get(ITEMS, key("types"))
    assert got == item("types", **values)
    assert type(got["flag"]) is bool and type(got["blob"]) is bytes
    assert type(got["n"]) is int and isinstance(got["nums"], set)
    db.put(ITEMS, item("float", n=2.5, flag=True, blob=b""))
    assert db.get(ITEMS, key("float")) == item("float", n=2.5, flag=True, blob=b"")


def test_unicode_keys_and_values(db):
    db.put(ITEMS, item("日本語/ファイル ✓", pk="ユーザー-𝄞", text="Grüße"))
    assert db.get(ITEMS, key("日本語/ファイル ✓", pk="ユーザー-𝄞"))["text"] == "Grüße"
    assert sks(db.query(ITEMS, "ユーザー-𝄞", prefix="日本")) == ["日本語/ファイル ✓"]


# -- conditions ----------------------------------------------------------------------------------

PRESENT = item("c", n=5, state="a")
# (condition, holds on PRESENT, holds when there is no item)
CONDITIONS = [
    (Condition.exists(), True, False),
    (Condition.absent(), False, True),
    (Condition.eq("n", 5), True, False),
    (Condition.eq("n", 6), False, False),
    (Condition.eq("text", "x"), False, False),
    (Condition.ne("n", 6), True, True),
    (Condition.ne("n", 5), False, True),
    (Condition.ne("text", "x"), True, True),
    (Condition.is_in("state", "a", "b"), True, False),
    (Condition.is_in("state", "c"), False, False),
    (Condition.is_in("text", "a"), False, False),
    (Condition.has("n"), True, False),
    (Condition.has("text"), False, False),
    (Condition.missing("text"), True, True),
    (Condition.missing("n"), False, True),
    (Condition.compare("n", "lt", 6), True, False),
    (Condition.compare("n", "lt", 5), False, False),
    (Condition.compare("n", "le", 5), True, False),
    (Condition.compare("n", "le", 4), False, False),
    (Condition.compare("n", "gt", 4), True, False),
    (Condition.compare("n", "gt", 5), False, False),
    (Condition.compare("n", "ge", 5), True, False),
    (Condition.compare("n", "ge", 6), False, False),
    (Condition.compare("due", "lt", 100), False, False),
    (Condition.compare("state", "ge", "a"), True, False),
    (Condition.exists() & Condition.eq("n", 5) & Condition.eq("state", "a"), True, False),
    (Condition.eq("n", 5) & Condition.eq("state", "b"), False, False),
    (Condition.absent() & Condition.missing("n"), False, True),
]


@pytest.mark.parametrize("condition,on_item,on_nothing", CONDITIONS,
                         ids=[repr(c[0].clauses) for c in CONDITIONS])
def test_each_condition_clause(db, condition, on_item, on_nothing):
    # The reference semantics agree with the table above...
    assert condition.holds(PRESENT) is on_item and condition.holds(None) is on_nothing
    # ...and so does the engine, on an update of an existing item and of a missing one.
    db.put(ITEMS, PRESENT)
    for target, holds in ((key("c"), on_item), (key("none"), on_nothing)):
        before = db.get(ITEMS, target)
        if holds:
            db.update(ITEMS, target, Change(set={"text": "written"}), condition)
            assert db.get(ITEMS, target)["text"] == "written"
        else:
            with pytest.raises(ConditionFailed):
                db.update(ITEMS, target, Change(set={"text": "written"}), condition)
            assert db.get(ITEMS, target) == before


def test_conditional_put(db):
    db.put(ITEMS, item("a", n=1), Condition.absent())
    with pytest.raises(ConditionFailed):
        db.put(ITEMS, item("a", n=2), Condition.absent())
    assert db.get(ITEMS, key("a")) == item("a", n=1)
    # compare-and-set on a revision
    db.put(ITEMS, item("a", n=2), Condition.eq("n", 1))
    with pytest.raises(ConditionFailed):
        db.put(ITEMS, item("a", n=3), Condition.eq("n", 1))
    assert db.get(ITEMS, key("a")) == item("a", n=2)


# -- update ------------------------------------------------------------------------------------

def test_update_creates_the_item_if_absent(db):
    assert db.update(ITEMS, key("new"), Change(set={"n": 1})) == item("new", n=1)
    assert db.get(ITEMS, key("new")) == item("new", n=1)
    assert db.update(SINGLE, {"id": "k"}, Change()) == {"id": "k"}
    assert db.get(SINGLE, {"id": "k"}) == {"id": "k"}


def test_update_guarded_by_exists_does_not_create(db):
    with pytest.raises(ConditionFailed):
        db.update(ITEMS, key("new"), Change(set={"n": 1}), Condition.exists())
    assert db.get(ITEMS, key("new")) is None


def test_update_set_set_default_remove(db):
    db.put(ITEMS, item("u", n=1, text="keep", state="s"))
    after = db.update(ITEMS, key("u"), Change(set={"n": 2, "flag": True},
                                              set_default={"text": "no", "due": 7},
                                              remove=("state",)))
    assert after == item("u", n=2, flag=True, text="keep", due=7)
    assert db.get(ITEMS, key("u")) == after
    # removing a missing field is no error
    assert db.update(ITEMS, key("u"), Change(remove=("state", "blob"))) == after


def test_update_add_counts_from_zero(db):
    assert db.update(ITEMS, key("k"), Change(add={"n": 5}))["n"] == 5
    assert db.update(ITEMS, key("k"), Change(add={"n": -7}))["n"] == -2
    assert db.update(ITEMS, key("k"), Change(add={"n": 2, "due": 1}))["due"] == 1
    assert db.get(ITEMS, key("k")) == item("k", n=0, due=1)


def test_update_add_to_and_remove_from_sets(db):
    assert db.update(ITEMS, key("s"), Change(add_to_set={"tags": {"a", "b"}, "nums": {1}})) \
        == item("s", tags={"a", "b"}, nums={1})
    assert db.update(ITEMS, key("s"), Change(add_to_set={"tags": {"b", "c"}},
                                             remove_from_set={"nums": {7}})) \
        == item("s", tags={"a", "b", "c"}, nums={1})
    assert db.update(ITEMS, key("s"), Change(remove_from_set={"tags": {"a", "c"}})) \
        == item("s", tags={"b"}, nums={1})
    # a set emptied is removed
    emptied = db.update(ITEMS, key("s"), Change(remove_from_set={"tags": {"b"}, "nums": {1}}))
    assert emptied == item("s") and "tags" not in db.get(ITEMS, key("s"))


def test_every_change_part_at_once_matches_the_reference(db):
    start = item("all", n=1, text="t", tags={"x", "y"}, state="s")
    change = Change(set={"text": "u"}, set_default={"due": 3, "n": 100}, add={"n": 2},
                    add_to_set={"nums": {4}}, remove_from_set={"tags": {"x"}},
                    remove=("state",))
    db.put(ITEMS, start)
    assert db.update(ITEMS, key("all"), change) == change.apply(start) == \
        item("all", n=3, text="u", due=3, nums={4}, tags={"y"})


def test_counters_are_exact_under_concurrency(db):
    threads, per_thread = 4, 25
    errors = []

    def bump():
        try:
            for _ in range(per_thread):
                db.update(SINGLE, {"id": "counter"}, Change(add={"n": 1}))
        except Exception as error:          # surfaced below: a thread's error must fail the test
            errors.append(error)

    workers = [threading.Thread(target=bump) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert db.get(SINGLE, {"id": "counter"})["n"] == threads * per_thread


# -- delete ------------------------------------------------------------------------------------

def test_delete_returns_the_old_item(db):
    db.put(ITEMS, item("d", n=1, tags={"a"}))
    assert db.delete(ITEMS, key("d")) == item("d", n=1, tags={"a"})
    assert db.get(ITEMS, key("d")) is None
    assert db.delete(ITEMS, key("d")) is None


def test_conditional_delete(db):
    db.put(ITEMS, item("d", n=1))
    with pytest.raises(ConditionFailed):
        db.delete(ITEMS, key("d"), Condition.eq("n", 2))
    assert db.get(ITEMS, key("d")) == item("d", n=1)
    assert db.delete(ITEMS, key("d"), Condition.eq("n", 1)) == item("d", n=1)
    with pytest.raises(ConditionFailed):
        db.delete(ITEMS, key("d"), Condition.exists())


# -- transactions ----------------------------------------------------------------------------

def test_transaction_applies_every_operation(db):
    db.put(ITEMS, item("upd", n=1))
    db.put(ITEMS, item("del"))
    db.put(SINGLE, {"id": "guard", "n": 7})
    db.transact([
        Put(ITEMS, item("new", n=1), Condition.absent()),
        Update(ITEMS, key("upd"), Change(add={"n": 1}), Condition.eq("n", 1)),
        Delete(ITEMS, key("del"), Condition.exists()),
        Check(SINGLE, {"id": "guard"}, Condition.eq("n", 7)),
    ])
    assert db.get(ITEMS, key("new")) == item("new", n=1)
    assert db.get(ITEMS, key("upd")) == item("upd", n=2)
    assert db.get(ITEMS, key("del")) is None
    assert db.get(SINGLE, {"id": "guard"}) == {"id": "guard", "n": 7}


@pytest.mark.parametrize("failing", [0, 1, 2, 3])
def test_transaction_is_all_or_nothing_and_names_the_failed_operation(db, failing):
    db.put(ITEMS, item("upd", n=1))
    db.put(ITEMS, item("del"))
    db.put(SINGLE, {"id": "guard", "n": 7})
    wrong = Condition.eq("n", 99)
    operations = [
        Put(ITEMS, item("new", n=1), wrong if failing == 0 else Condition.absent()),
        Update(ITEMS, key("upd"), Change(add={"n": 1}), wrong if failing == 1 else None),
        Delete(ITEMS, key("del"), wrong if failing == 2 else None),
        Check(SINGLE, {"id": "guard"}, wrong if failing == 3 else Condition.exists()),
    ]
    with pytest.raises(ConditionFailed) as raised:
        db.transact(operations)
    assert raised.value.index == failing
    assert db.get(ITEMS, key("new")) is None
    assert db.get(ITEMS, key("upd")) == item("upd", n=1)
    assert db.get(ITEMS, key("del")) == item("del")


def test_a_put_that_needs_the_item_absent_fails_on_an_existing_one_and_undoes_the_rest(db):
    db.put(ITEMS, item("upd", n=1))
    db.put(ITEMS, item("taken", n=5))
    with pytest.raises(ConditionFailed) as raised:
        db.transact([Update(ITEMS, key("upd"), Change(add={"n": 1})),
                     Put(ITEMS, item("fresh", n=1), Condition.absent()),
                     Put(ITEMS, item("taken", n=6), Condition.absent())])
    assert raised.value.index == 2
    assert db.get(ITEMS, key("upd")) == item("upd", n=1)
    assert db.get(ITEMS, key("fresh")) is None
    assert db.get(ITEMS, key("taken")) == item("taken", n=5)


def test_transact_each_applies_each_transaction_on_its_own(db):
    db.put(ITEMS, item("taken", n=5))
    outcomes = db.transact_each([
        [Put(ITEMS, item("one", n=1), Condition.absent()),
         Put(SINGLE, {"id": "one", "n": 1}, Condition.absent())],
        [Put(ITEMS, item("two", n=2), Condition.absent()),
         Put(ITEMS, item("taken", n=6), Condition.absent())],
        [Update(ITEMS, key("taken"), Change(add={"n": 2}), Condition.eq("n", 5))],
    ])
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], ConditionFailed) and outcomes[1].index == 1
    assert db.get(ITEMS, key("one")) == item("one", n=1)
    assert db.get(SINGLE, {"id": "one"}) == {"id": "one", "n": 1}
    assert db.get(ITEMS, key("two")) is None
    assert db.get(ITEMS, key("taken")) == item("taken", n=7)
    assert db.transact_each([]) == []


def test_transaction_size_is_limited(db):
    too_many = [Put(ITEMS, item(f"{i:03}")) for i in range(MAX_TRANSACTION_ITEMS + 1)]
    with pytest.raises(ValueError):
        db.transact(too_many)
    assert db.query(ITEMS, "p").items == []
    db.transact(too_many[:MAX_TRANSACTION_ITEMS])
    assert len(list(db.query_all(ITEMS, "p"))) == MAX_TRANSACTION_ITEMS


def test_transaction_names_each_item_once(db):
    with pytest.raises(ValueError):
        db.transact([Put(ITEMS, item("a")), Update(ITEMS, key("a"), Change(set={"n": 1}))])
    assert db.get(ITEMS, key("a")) is None


# -- query ---------------------------------------------------------------------------------------

NAMES = ["b/2", "a", "b/1", "c", "b/10", "ba", "b"]


@pytest.fixture
def listed(db):
    for name in NAMES:
        db.put(ITEMS, item(name, n=len(name)))
    db.put(ITEMS, item("a", pk="other"))
    return db


def test_empty_partition(db):
    page = db.query(ITEMS, "nobody")
    assert page.items == [] and page.cursor is None
    assert db.query_index(ITEMS, "by-state", "nothing").items == []


def test_query_orders_by_range_key_within_one_partition(listed):
    page = listed.query(ITEMS, "p")
    assert sks(page) == sorted(NAMES) and page.cursor is None
    assert page.items[0] == item("a", n=1)
    assert sks(listed.query(ITEMS, "p", reverse=True)) == sorted(NAMES, reverse=True)
    assert sks(listed.query(ITEMS, "other")) == ["a"]


def test_query_prefix_and_inclusive_bounds(listed):
    assert sks(listed.query(ITEMS, "p", prefix="b/")) == ["b/1", "b/10", "b/2"]
    assert sks(listed.query(ITEMS, "p", prefix="b/", reverse=True)) == ["b/2", "b/10", "b/1"]
    assert sks(listed.query(ITEMS, "p", prefix="zz")) == []
    assert sks(listed.query(ITEMS, "p", start="b", end="b/2")) == ["b", "b/1", "b/10", "b/2"]
    assert sks(listed.query(ITEMS, "p", start="b/10")) == ["b/10", "b/2", "ba", "c"]
    assert sks(listed.query(ITEMS, "p", end="b")) == ["a", "b"]
    assert sks(listed.query(ITEMS, "p", start="b/10", end="b/10")) == ["b/10"]
    assert sks(listed.query(ITEMS, "p", start="c", end="a")) == []


@pytest.mark.parametrize("reverse", [False, True])
def test_query_prefix_with_bounds(listed, reverse):
    def run(**bounds):
        return sks(listed.query(ITEMS, "p", prefix="b", reverse=reverse, **bounds))
    expected = {
        (None, None): ["b", "b/1", "b/10", "b/2", "ba"],
        ("b/10", None): ["b/10", "b/2", "ba"],
        (None, "b/10"): ["b", "b/1", "b/10"],
        ("b/1", "b/2"): ["b/1", "b/10", "b/2"],
        ("a", "z"): ["b", "b/1", "b/10", "b/2", "ba"],
        ("c", None): [],
        (None, "a"): [],
    }
    for (start, end), names in expected.items():
        assert run(start=start, end=end) == (names[::-1] if reverse else names), (start, end)


@pytest.mark.parametrize("reverse", [False, True])
def test_query_pages_with_cursors(listed, reverse):
    expected = sorted(NAMES, reverse=reverse)
    seen, cursor, pages = [], None, 0
    while True:
        page = listed.query(ITEMS, "p", limit=3, cursor=cursor, reverse=reverse)
        assert len(page.items) <= 3
        seen += sks(page)
        pages += 1
        cursor = page.cursor
        if cursor is None:
            break
        assert isinstance(cursor, str)
    assert seen == expected and pages == 3


def test_the_last_full_page_has_no_cursor(listed):
    first = listed.query(ITEMS, "p", prefix="b/", limit=2)
    second = listed.query(ITEMS, "p", prefix="b/", limit=2, cursor=first.cursor)
    assert sks(first) + sks(second) == ["b/1", "b/10", "b/2"] and second.cursor is None
    exact = listed.query(ITEMS, "p", limit=len(NAMES))
    assert len(exact.items) == len(NAMES) and exact.cursor is None


def test_paging_with_prefix_and_bounds(listed):
    names = list(listed.query_all(ITEMS, "p", prefix="b", start="b/1", limit=2))
    assert [i["sk"] for i in names] == ["b/1", "b/10", "b/2", "ba"]


def test_int_range_keys_order_numerically(db):
    for seq in (10, 2, 100, 1, -5, 2.5):
        db.put(NUMBERED, {"pk": "n", "seq": seq, "v": str(seq)})
    assert [i["seq"] for i in db.query(NUMBERED, "n").items] == [-5, 1, 2, 2.5, 10, 100]
    assert [i["seq"] for i in db.query(NUMBERED, "n", start=2, end=10).items] == [2, 2.5, 10]
    assert [i["seq"] for i in db.query(NUMBERED, "n", reverse=True, limit=2).items] == [100, 10]
    assert [i["seq"] for i in db.query_all(NUMBERED, "n", limit=4)] == [-5, 1, 2, 2.5, 10, 100]


def test_forged_cursor_is_refused(listed):
    nested_too_deep = base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).decode()
    for forged in ("garbage!", "e30", encode_cursor({"k": {"pk": "p", "sk": "b"}}),
                   encode_cursor([1, 2]), nested_too_deep):
        with pytest.raises(BadCursor):
            listed.query(ITEMS, "p", limit=2, cursor=forged)
        with pytest.raises(BadCursor):
            listed.query_index(ITEMS, "by-state", "open", limit=2, cursor=forged)


def test_another_querys_cursor_is_refused(listed):
    for name in ("x1", "x2", "x3"):
        listed.put(ITEMS, item(name, pk="other", state="open", due=1))
    cursor = listed.query(ITEMS, "p", limit=2).cursor
    assert cursor
    with pytest.raises(BadCursor):
        listed.query(ITEMS, "other", limit=2, cursor=cursor)       # another partition
    with pytest.raises(BadCursor):
        listed.query(ITEMS, "p", prefix="b", limit=2, cursor=cursor)  # another range
    with pytest.raises(BadCursor):
        listed.query(NUMBERED, "p", limit=2, cursor=cursor)        # another table
    with pytest.raises(BadCursor):
        listed.query_index(ITEMS, "by-state", "open", limit=2, cursor=cursor)
    index_cursor = listed.query_index(ITEMS, "by-state", "open", limit=2).cursor
    assert index_cursor
    with pytest.raises(BadCursor):
        listed.query(ITEMS, "p", limit=2, cursor=index_cursor)
    with pytest.raises(BadCursor):
        listed.query_index(ITEMS, "by-state", "closed", limit=2, cursor=index_cursor)


# -- secondary indexes -------------------------------------------------------------------------

def test_query_index_is_sparse_and_ordered(db):
    db.put(ITEMS, item("late", state="open", due=30))
    db.put(ITEMS, item("early", pk="q", state="open", due=10))
    db.put(ITEMS, item("mid", state="open", due=20, n=1))
    db.put(ITEMS, item("closed", state="closed", due=5))
    db.put(ITEMS, item("no-state", due=1))                 # no index hash key: not listed
    db.put(ITEMS, item("no-due", state="open"))            # no index range key: not listed
    page = db.query_index(ITEMS, "by-state", "open")
    assert [i["sk"] for i in page.items] == ["early", "mid", "late"] and page.cursor is None
    assert page.items[1] == item("mid", state="open", due=20, n=1)      # whole items
    assert [i["sk"] for i in db.query_index(ITEMS, "by-state", "open", before=30).items] \
        == ["early", "mid"]
    assert db.query_index(ITEMS, "by-state", "open", before=10).items == []
    # an item leaving the index (its key field removed) is no longer listed
    db.update(ITEMS, key("mid"), Change(remove=("state",)))
    assert [i["sk"] for i in db.query_index(ITEMS, "by-state", "open").items] == \
        ["early", "late"]


def test_query_index_pages(db):
    for number in range(7):
        db.put(ITEMS, item(f"i{number}", pk=f"p{number % 3}", state="open", due=100 - number))
    seen = list(_index_all(db, before=100, limit=2))
    assert seen == [f"i{n}" for n in range(6, 0, -1)]
    # The engine's own walk over the pages gives the same.
    assert [i["sk"] for i in db.query_index_all(ITEMS, "by-state", "open", before=100,
                                                limit=2)] == seen


def _index_all(db, **kwargs):
    cursor = None
    while True:
        page = db.query_index(ITEMS, "by-state", "open", cursor=cursor, **kwargs)
        assert len(page.items) <= kwargs["limit"]
        yield from (i["sk"] for i in page.items)
        cursor = page.cursor
        if not cursor:
            return


# -- expiry --------------------------------------------------------------------------------------

def test_expired_items_are_never_returned(db):
    now = int(time.time())
    db.put(ITEMS, item("gone", expires_at=now - 10, state="open", due=1))
    db.put(ITEMS, item("live", expires_at=now + 3600, state="open", due=2))
    db.put(ITEMS, item("forever", state="open", due=3))
    assert db.get(ITEMS, key("gone")) is None
    assert db.get(ITEMS, key("live"))["expires_at"] == now + 3600
    assert sks(db.query(ITEMS, "p")) == ["forever", "live"]
    assert sks(db.query(ITEMS, "p", limit=1)) == ["forever"]
    assert [i["sk"] for i in db.query_index(ITEMS, "by-state", "open").items] == \
        ["live", "forever"]
    assert db.delete(ITEMS, key("gone")) is None


def test_an_expired_item_counts_as_absent_for_writes(db):
    now = int(time.time())
    db.put(ITEMS, item("old", n=1, text="stale", expires_at=now - 10))
    with pytest.raises(ConditionFailed):
        db.update(ITEMS, key("old"), Change(set={"n": 2}), Condition.exists())
    with pytest.raises(ConditionFailed):
        db.put(ITEMS, item("old", n=2), Condition.eq("n", 1))
    # created afresh: nothing of the expired item survives
    assert db.update(ITEMS, key("old"), Change(add={"n": 5}), Condition.absent()) == \
        item("old", n=5)
    db.put(ITEMS, item("old2", expires_at=now - 10))
    db.put(ITEMS, item("old2", n=1), Condition.absent())
    assert db.get(ITEMS, key("old2")) == item("old2", n=1)


def test_scan_pages_through_a_table(db):
    for number in range(5):
        db.put(SINGLE, {"id": f"s{number}", "n": number})
    seen, cursor = [], None
    while True:
        page = db.scan(SINGLE, limit=2, cursor=cursor)
        seen += [i["id"] for i in page.items]
        cursor = page.cursor
        if not cursor:
            break
    assert sorted(seen) == [f"s{n}" for n in range(5)]
