"""Stopping a drain (storages.stop_draining): the moving stops, the scrub does not start it
again, and the storage takes shares again. In process on the SQLite engine and local
directories."""
from __future__ import annotations

import os

from tests.pipeline.test_chunk_pipeline import add_disks, pipeline  # noqa: F401


def test_a_stopped_drain_stays_stopped(pipeline, tmp_path, monkeypatch):  # noqa: F811
    from cloudstrype import storages
    disks = add_disks("alice", tmp_path, 3)
    first = next(iter(disks))
    for _ in range(20):
        pipeline.put_chunk("alice", os.urandom(2000), "aes256-gcm", "raid1(2)")
    held = len(pipeline.shares_on("alice", first))
    assert held > 8, "enough shares on it to be stopped part-way"

    # The owner stops the drain while it moves shares: it stops within a few chunks.
    real_repair, moved = pipeline.repair_chunk, []

    def repair_then_stop(owner, chunk_id, move_off=None):
        result = real_repair(owner, chunk_id, move_off=move_off)
        moved.append(chunk_id)
        if len(moved) == 3:
            storages.stop_draining("alice", first)
        return result
    monkeypatch.setattr(pipeline, "repair_chunk", repair_then_stop)
    result = pipeline.drain_storage("alice", first)
    assert result["status"] == storages.ACTIVE and result["remaining"] > 0, result
    assert len(moved) <= 8, moved
    monkeypatch.undo()

    # The scrub goes on only with drains under way: this one it leaves alone.
    left = len(pipeline.shares_on("alice", first))
    assert pipeline.scrub(budget_seconds=60)["moved_shares"] == 0
    assert storages.get_storage("alice", first).status == storages.ACTIVE
    assert len(pipeline.shares_on("alice", first)) == left

    assert storages.stop_draining("alice", first).status == storages.ACTIVE   # idempotent


def test_a_members_drain_is_stopped_through_its_member(pipeline):  # noqa: F811
    import pytest
    from cloudstrype import errors, storages
    from cloudstrype.storages.store import StorageStore
    member = StorageStore().ensure_member_storage("alice", "m1", "laptop")
    storages.start_draining("alice", member.storage_id)
    with pytest.raises(errors.BadRequest) as refused:
        storages.stop_draining("alice", member.storage_id)
    assert refused.value.code == "member_storage"
    assert "/api/array/members/m1/drain" in refused.value.message
    # Not connected: offline until it says hello again (then active, as any member).
    stopped = storages.stop_draining("alice", member.storage_id, member_online=False)
    assert stopped.status == storages.OFFLINE
    storages.start_draining("alice", member.storage_id)
    assert storages.stop_draining("alice", member.storage_id,
                                  member_online=True).status == storages.ACTIVE


def test_a_removed_storage_keeps_no_leftover_of_a_stopped_server(pipeline, tmp_path):  # noqa: F811
    """A write a stopped server left half done is deleted by the scrub only after its grace
    (hours): a storage drained and removed before then kept it for good."""
    import time

    from cloudstrype import storages
    from cloudstrype.backends.local import TEMP_PREFIX
    from cloudstrype.pipeline import store
    from cloudstrype.pipeline.chunk_store import chunk_store
    disks = add_disks("alice", tmp_path, 3)
    for _ in range(5):
        pipeline.put_chunk("alice", os.urandom(2000), "aes256-gcm", "raid1(2)")
    doomed, folder = next(iter(disks.items()))
    key = store._share_key("alice", "v0123456789abcdef-0", 1)
    chunk_store().plan_share_writes("alice", [(doomed, key)], due=time.time() + 6 * 3600)
    storages.backend_for(storages.get_storage("alice", doomed)).put(key, os.urandom(3000))
    (folder / f"{TEMP_PREFIX}half").write_bytes(os.urandom(100))
    pipeline.drain_storage("alice", doomed)
    assert pipeline.shares_on("alice", doomed) == []
    other = [p for p in chunk_store().pending_deletes("alice") if p.storage_id != doomed]

    # As DELETE /api/cloud/storages/{id} does for a storage that holds no share:
    assert store.delete_leftovers_on("alice", doomed) == 1
    storages.delete_storage("alice", doomed, 0)

    assert list(folder.iterdir()) == []
    assert [p for p in chunk_store().pending_deletes("alice")] == other
