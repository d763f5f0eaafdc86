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
