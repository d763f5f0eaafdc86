"""StorageStore and OAuthStateStore conformance, on every engine (tests/metadata/conftest.py)."""
from __future__ import annotations

import threading
import time
import uuid

import pytest
from cloudstrype.metadata.engine import ConditionFailed
from cloudstrype.storages.store import (
    ACTIVE,
    DRAINING,
    MEMBER_KIND,
    OFFLINE,
    OAuthState,
    OAuthStateStore,
    Storage,
    StorageStore,
    member_offline_op,
    member_online_op,
    member_storage_id,
)


def _owner() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


def _storage(owner: str, storage_id: str | None = None, **fields) -> Storage:
    return Storage(owner, storage_id or f"st-{uuid.uuid4().hex[:12]}", kind="s3", name="bucket",
                   settings={"bucket": "b"}, **fields)


def _race(count: int, work) -> list:
    """Run `work(i)` in `count` threads released at once; their results in order."""
    barrier = threading.Barrier(count)
    results: list = [None] * count
    errors: list = []

    def run(i):
        try:
            barrier.wait()
            results[i] = work(i)
        except Exception as exc:   # surfaced below, with the thread's error
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return results


def test_round_trip_keeps_every_field(engine):
    store = StorageStore()
    owner = _owner()
    record = _storage(owner, capacity=1000, provider_used=10, sealed_secrets=b"\x01sealed",
                      last_error="boom", down_until=5)
    assert store.create(record)
    got = store.get(owner, record.storage_id)
    assert got == record
    assert got.free == 990 and isinstance(got.sealed_secrets, bytes)
    public = got.public()
    assert public["id"] == record.storage_id and public["capacity"] == 1000
    assert public["created"].startswith(time.strftime("%Y", time.gmtime()))
    # None fields stay absent, and come back as the defaults
    bare = _storage(owner)
    store.create(bare)
    again = store.get(owner, bare.storage_id)
    assert again.capacity is None and again.sealed_secrets is None and again.free is None


def test_create_if_absent_one_winner_under_a_race(engine):
    store = StorageStore()
    owner = _owner()
    storage_id = "st-race"
    results = _race(6, lambda i: store.create(_storage(owner, storage_id, provider_used=i)))
    assert sorted(results) == [False] * 5 + [True]
    winner = results.index(True)
    assert store.get(owner, storage_id).provider_used == winner


def test_owner_isolation(engine):
    store = StorageStore()
    alice, bob = _owner(), _owner()
    record = _storage(alice, "st-shared-id")
    store.create(record)
    assert store.create(_storage(bob, "st-shared-id"))   # ids are per owner
    assert store.get(bob, "st-shared-id").owner == bob
    assert store.get(alice, "st-other") is None
    assert [s.owner for s in store.list(alice)] == [alice]
    assert [s.owner for s in store.list(bob)] == [bob]
    assert store.list(_owner()) == []
    # Bob's writes never reach Alice's record
    assert not store.count_shares(bob, "st-missing", 1, 1)
    store.delete(bob, "st-shared-id")
    assert store.get(alice, "st-shared-id") == record


def test_list_and_delete(engine):
    store = StorageStore()
    owner = _owner()
    made = [_storage(owner) for _ in range(5)]
    for record in made:
        store.create(record)
    assert sorted(s.storage_id for s in store.list(owner)) == sorted(r.storage_id for r in made)
    deleted = store.delete(owner, made[0].storage_id)
    assert deleted.storage_id == made[0].storage_id
    assert store.delete(owner, made[0].storage_id) is None
    assert len(store.list(owner)) == 4


def test_counters_are_atomic_under_concurrency(engine):
    store = StorageStore()
    owner = _owner()
    record = _storage(owner)
    store.create(record)
    _race(8, lambda i: [store.count_shares(owner, record.storage_id, 1, 100)
                        for _ in range(10)])
    got = store.get(owner, record.storage_id)
    assert (got.share_count, got.stored_bytes) == (80, 8000)
    store.count_shares(owner, record.storage_id, -80, -8000)
    got = store.get(owner, record.storage_id)
    assert (got.share_count, got.stored_bytes) == (0, 0)


def test_updates_never_create_a_removed_storage(engine):
    store = StorageStore()
    owner = _owner()
    assert not store.count_shares(owner, "st-gone", 1, 10)
    assert not store.mark_down(owner, "st-gone", time.time() + 60, "down")
    assert not store.set_usage(owner, "st-gone", used=1, capacity=2)
    assert not store.set_sealed_secrets(owner, "st-gone", b"x")
    assert not store.set_status(owner, "st-gone", DRAINING)
    assert store.get(owner, "st-gone") is None
    assert store.list(owner) == []


def test_health_usage_and_secrets_updates(engine):
    store = StorageStore()
    owner = _owner()
    record = _storage(owner, capacity=500)
    store.create(record)
    until = time.time() + 60
    assert store.mark_down(owner, record.storage_id, until, "x" * 900)
    got = store.get(owner, record.storage_id)
    assert not got.usable() and len(got.last_error) == 500
    assert store.set_usage(owner, record.storage_id, used=42, capacity=None)
    got = store.get(owner, record.storage_id)
    assert got.provider_used == 42 and got.capacity is None and got.usage_checked > 0
    assert store.set_usage(owner, record.storage_id, used=50, capacity=80, name="renamed")
    assert store.set_usage(owner, record.storage_id, used=60, keep_capacity=True)
    got = store.get(owner, record.storage_id)
    assert (got.provider_used, got.capacity, got.name, got.free) == (60, 80, "renamed", 20)
    assert store.set_sealed_secrets(owner, record.storage_id, b"\x01new")
    assert store.get(owner, record.storage_id).sealed_secrets == b"\x01new"


def test_status_compare_and_set(engine):
    store = StorageStore()
    owner = _owner()
    record = _storage(owner)
    store.create(record)
    assert not store.set_status(owner, record.storage_id, OFFLINE, expected=(DRAINING,))
    assert store.get(owner, record.storage_id).status == ACTIVE
    assert store.set_status(owner, record.storage_id, OFFLINE, expected=(ACTIVE,))
    assert store.get(owner, record.storage_id).status == OFFLINE
    # Of many concurrent CASes from offline to active exactly one wins
    results = _race(5, lambda i: store.set_status(owner, record.storage_id, ACTIVE,
                                                  expected=(OFFLINE,)))
    assert sorted(results) == [False] * 4 + [True]
    assert store.set_status(owner, record.storage_id, DRAINING)
    assert store.get(owner, record.storage_id).status == DRAINING


def test_draining_storages_come_from_the_sparse_index(engine):
    store = StorageStore()
    owner, other = _owner(), _owner()
    records = [_storage(owner) for _ in range(4)] + [_storage(other)]
    for record in records:
        store.create(record)
    assert not [s for s in store.draining() if s.owner in (owner, other)]
    store.set_status(owner, records[0].storage_id, DRAINING)
    store.set_status(other, records[4].storage_id, DRAINING)
    created_draining = _storage(owner, status=DRAINING)
    store.create(created_draining)
    found = {(s.owner, s.storage_id) for s in store.draining(limit=1)
             if s.owner in (owner, other)}
    assert found == {(owner, records[0].storage_id), (other, records[4].storage_id),
                     (owner, created_draining.storage_id)}
    assert all(s.status == DRAINING for s in store.draining())
    # leaving the draining status takes the storage out of the index; deleting too
    store.set_status(owner, records[0].storage_id, ACTIVE)
    store.delete(other, records[4].storage_id)
    found = {s.storage_id for s in store.draining() if s.owner in (owner, other)}
    assert found == {created_draining.storage_id}


def test_member_storage_is_created_once_and_moves_in_transactions(engine):
    store = StorageStore()
    owner = _owner()
    made = _race(4, lambda i: store.ensure_member_storage(owner, "member-0001", f"desk{i}"))
    assert len({(m.storage_id, m.name) for m in made}) == 1
    storage_id = member_storage_id("member-0001")
    got = store.get(owner, storage_id)
    assert got.kind == MEMBER_KIND and got.settings == {"member_id": "member-0001"}
    assert got.status == ACTIVE and got.capacity is None

    engine.transact([member_offline_op(owner, "member-0001")])
    assert store.get(owner, storage_id).status == OFFLINE
    with pytest.raises(ConditionFailed):            # offline only from active
        engine.transact([member_offline_op(owner, "member-0001")])
    store.mark_down(owner, storage_id, time.time() + 60, "member is offline")
    engine.transact([member_online_op(owner, "member-0001")])
    got = store.get(owner, storage_id)
    assert got.status == ACTIVE and got.usable()
    # Back online, its last error is over (it was shown until the next check pass).
    assert got.last_error is None and not got.last_error_at
    # a draining member storage stays draining whatever its member does
    store.set_status(owner, storage_id, DRAINING)
    with pytest.raises(ConditionFailed):
        engine.transact([member_online_op(owner, "member-0001")])
    with pytest.raises(ConditionFailed):
        engine.transact([member_offline_op(owner, "member-0001")])
    assert store.get(owner, storage_id).status == DRAINING
    # a removed member storage is not brought back by a transaction
    store.delete(owner, storage_id)
    with pytest.raises(ConditionFailed):
        engine.transact([member_online_op(owner, "member-0001")])
    assert store.get(owner, storage_id) is None


def test_oauth_state_is_consumed_once(engine):
    states = OAuthStateStore()
    state = OAuthState(f"s-{uuid.uuid4().hex}", owner=_owner(), provider="dropbox",
                       storage_name="Dropbox", expires_at=int(time.time()) + 600,
                       sealed_verifier=b"\x01v", return_to="/#/storages")
    states.create(state)
    with pytest.raises(ConditionFailed):
        states.create(state)
    assert states.get(state.state) == state
    assert states.get("unknown") is None
    assert sorted(_race(5, lambda i: states.consume(state.state))) == [False] * 4 + [True]
    assert states.get(state.state).used is True
    assert not states.consume("unknown")


def test_an_expired_oauth_state_still_answers_until_purged(engine):
    states = OAuthStateStore()
    past = OAuthState(f"s-{uuid.uuid4().hex}", owner=_owner(), provider="box",
                      storage_name="Box", expires_at=int(time.time()) - 10)
    states.create(past)
    # refused as expired by the flow (expires_at), yet readable so the user hears why
    assert states.get(past.state).expires_at < time.time()
    gone = OAuthState(f"s-{uuid.uuid4().hex}", owner=_owner(), provider="box",
                      storage_name="Box", expires_at=int(time.time()) - 2 * 24 * 3600)
    states.create(gone)
    assert states.get(gone.state) is None


def test_usage_is_measured_again_sooner_once_shares_were_written_since(engine, monkeypatch):
    """A storage's `used` is measured again after ten minutes, or after USAGE_CHANGED_MAX_AGE
    once its stored bytes moved since the last measure (found by the web UI sweep: 21.8 MB
    stored beside '0 bytes used' for ten minutes). The measure's time is in the answer."""
    from cloudstrype.backends.base import Usage
    from cloudstrype.storages import service
    measured: list[int] = []

    class Measured:
        def usage(self):
            measured.append(1)
            return Usage(used=1000 * len(measured), capacity=None)

    monkeypatch.setattr(service, "backend_for", lambda record: Measured())
    store = StorageStore()
    owner = _owner()
    record = _storage(owner)
    store.create(record)
    now = time.time()
    stale = now - service.USAGE_CHANGED_MAX_AGE_SECONDS - 1

    def measured_again(checked: float, stored: int) -> bool:
        assert store.set_usage(owner, record.storage_id, used=1, checked=checked, stored=0)
        current = store.get(owner, record.storage_id)
        current.stored_bytes = stored
        before = len(measured)
        after = service.refresh_usage(current)
        if len(measured) > before:      # what was measured is kept, with what it saw
            again = store.get(owner, record.storage_id)
            assert again.provider_used == after.provider_used == 1000 * len(measured)
            assert again.usage_stored_bytes == stored
            # The answer's measure time is the new one, kept.
            assert after.public()["used_measured_at"] == again.public()["used_measured_at"] \
                != _storage(owner, usage_checked=checked).public()["used_measured_at"]
        return len(measured) > before

    assert not measured_again(checked=now, stored=5000)          # just measured
    assert measured_again(checked=stale, stored=5000)             # written since, 31 s ago
    assert not measured_again(checked=stale, stored=0)            # nothing written since
    assert measured_again(checked=now - service.USAGE_MAX_AGE_SECONDS - 1, stored=0)
