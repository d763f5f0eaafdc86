"""Repair tells a share that is lost (missing, corrupt, on a storage removed) from one whose
storage does not answer now (a folder not mounted, a member away, a storage marked down): the
first is rebuilt, the second waited for - neither rebuilt elsewhere nor blocking the repair of
the others. In process: SQLite engine, local directory storages."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from cloudstrype import errors

from tests.pipeline.test_chunk_pipeline import add_disks, share_files
from tests.support import embedded_library

OWNER = "alice"


@pytest.fixture
def pipeline(tmp_path, monkeypatch):
    from cloudstrype.pipeline import store
    with embedded_library(tmp_path, monkeypatch, CLOUDSTRYPE_LOCAL_STORAGE_ENABLED="true"):
        yield store


def _away(folder: Path) -> Path:
    """Unmount a storage's folder, as far as the server can tell."""
    moved = folder.with_name(folder.name + ".away")
    folder.rename(moved)
    return moved


def _holders(pipeline, chunk_id: str) -> dict[int, str]:
    from cloudstrype.pipeline.chunk_store import chunk_store
    return {s.index: s.storage_id for s in chunk_store().get(OWNER, chunk_id).shares}


def _one_away_one_lost(pipeline, tmp_path, storages: int, durability: str):
    """A chunk on `storages` folders, share 0's folder unmounted and share 1's file deleted:
    (the folders, the chunk's record, its holders by index, where share 0's folder went)."""
    disks = add_disks(OWNER, tmp_path, storages)
    record = pipeline.put_chunk(OWNER, os.urandom(100_000), "aes256-gcm", durability).record
    holders = _holders(pipeline, record.chunk_id)
    away = _away(disks[holders[0]])
    share_files(disks[holders[1]], record.chunk_id, 1)[0].unlink()
    return disks, record, holders, away


def test_a_read_queues_lost_shares_for_repair_not_unreachable_ones(pipeline, tmp_path):
    from cloudstrype.pipeline.chunk_store import chunk_store
    disks, record, holders, away = _one_away_one_lost(pipeline, tmp_path, 3, "raid1(3)")
    # Copy 2 not asked: the read meets the unmounted copy 0 and the missing copy 1 alone.
    with pytest.raises(errors.ServiceUnavailable) as caught:
        pipeline.get_chunk(OWNER, record.chunk_id, frozenset({holders[2]}))
    assert caught.value.code == "not_enough_shares", caught.value.message
    # The storage out of reach is named, with why, and the answer says when to try again; so
    # is the one not asked (`skip` holds those a ranged read has just found not answering).
    from cloudstrype import storages
    away_name = storages.get_storage(OWNER, holders[0]).name
    skipped_name = storages.get_storage(OWNER, holders[2]).name
    assert f"{away_name}: " in caught.value.message, caught.value.message
    assert f"{skipped_name}: " in caught.value.message, caught.value.message
    assert "not this storage's folder now" in caught.value.message
    assert 1 <= int(caught.value.headers["Retry-After"]) <= 60
    assert chunk_store().get(OWNER, record.chunk_id).damaged == {1}
    away.rename(disks[holders[0]])


def test_repair_rebuilds_what_is_lost_and_leaves_what_is_unreachable(pipeline, tmp_path):
    from cloudstrype.pipeline.chunk_store import chunk_store
    disks = add_disks(OWNER, tmp_path, 6)
    data = os.urandom(200_000)
    record = pipeline.put_chunk(OWNER, data, "aes256-gcm", "rs(2,3)").record
    holders = _holders(pipeline, record.chunk_id)
    away = _away(disks[holders[0]])                             # not mounted: share 0 waits
    share_files(disks[holders[1]], record.chunk_id, 1)[0].unlink()      # share 1 is lost
    [bad] = share_files(disks[holders[2]], record.chunk_id, 2)          # share 2 is corrupt
    bad.write_bytes(b"\x00" * bad.stat().st_size)
    pipeline.mark_damaged(OWNER, record.chunk_id, {1, 2})
    repaired = pipeline.repair_chunk(OWNER, record.chunk_id)
    assert repaired["repaired"] == [1, 2] and "remaining" not in repaired, repaired
    after = _holders(pipeline, record.chunk_id)
    assert (after[0], after[3], after[4]) == (holders[0], holders[3], holders[4]), after
    assert not chunk_store().get(OWNER, record.chunk_id).damaged
    away.rename(disks[holders[0]])
    assert share_files(disks[holders[0]], record.chunk_id, 0)    # never deleted
    info = pipeline.chunk_info(OWNER, record.chunk_id)
    assert info["healthy_shares"] == 5 and not info["needs_repair"], info
    assert pipeline.get_chunk(OWNER, record.chunk_id) == data


def test_too_few_shares_answering_to_repair_moves_nothing(pipeline, tmp_path):
    disks, record, holders, away = _one_away_one_lost(pipeline, tmp_path, 4, "rs(2,1)")
    with pytest.raises(errors.ServiceUnavailable) as caught:
        pipeline.repair_chunk(OWNER, record.chunk_id)
    # One good share of the two needed answers: not yet (the unmounted one may come back).
    assert caught.value.code == "not_enough_shares", caught.value.message
    assert "1 good share of the 2 needed is reachable" in caught.value.message
    assert ".;" not in caught.value.message                 # reasons joined as a list
    assert _holders(pipeline, record.chunk_id) == holders
    away.rename(disks[holders[0]])
    assert pipeline.repair_chunk(OWNER, record.chunk_id)["repaired"] == [1]


def test_repair_does_what_it_can_now_and_leaves_the_rest_marked(pipeline, tmp_path):
    from cloudstrype import storages
    from cloudstrype.pipeline.chunk_store import chunk_store
    disks = add_disks(OWNER, tmp_path, 3)
    data = os.urandom(50_000)
    record = pipeline.put_chunk(OWNER, data, "aes256-gcm", "raid1(3)").record
    holders = _holders(pipeline, record.chunk_id)
    for index in (0, 1):
        share_files(disks[holders[index]], record.chunk_id, index)[0].unlink()
    spare = storages.add_storage(OWNER, "local", "spare",
                                 {"path": str(tmp_path / "spare")}).storage_id
    # Share 0's and 1's storages are down for a while: only the new one can take a copy now.
    for index in (0, 1):
        storages.mark_down(storages.get_storage(OWNER, holders[index]), "a test's outage")
    repaired = pipeline.repair_chunk(OWNER, record.chunk_id)
    assert repaired["repaired"] == [0] and repaired["remaining"] == [1], repaired
    assert _holders(pipeline, record.chunk_id)[0] == spare
    assert chunk_store().get(OWNER, record.chunk_id).damaged == {1}
    assert pipeline.get_chunk(OWNER, record.chunk_id) == data


def test_repair_past_the_redundancy_with_every_storage_answering_says_so(pipeline, tmp_path):
    disks = add_disks(OWNER, tmp_path, 4)
    record = pipeline.put_chunk(OWNER, os.urandom(90_000), "aes256-gcm", "rs(2,2)").record
    holders = _holders(pipeline, record.chunk_id)
    for index in (0, 1, 3):
        share_files(disks[holders[index]], record.chunk_id, index)[0].unlink()
    with pytest.raises(errors.ServiceUnavailable) as caught:
        pipeline.repair_chunk(OWNER, record.chunk_id)
    assert caught.value.code == "chunk_damaged", caught.value.message
    assert "repaired now" in caught.value.message


def test_the_owner_asking_now_has_an_unreachable_share_rebuilt_elsewhere(pipeline, tmp_path):
    """"Repair now" (POST /api/chunk/{id}/repair) does not wait: a share whose folder is not
    mounted is re-created on another storage, and its old copy goes once the folder is back.
    The scrub's repair waits instead."""
    import time
    disks = add_disks(OWNER, tmp_path, 5)
    data = os.urandom(120_000)
    record = pipeline.put_chunk(OWNER, data, "aes256-gcm", "rs(2,2)").record
    holders = _holders(pipeline, record.chunk_id)
    spare = next(sid for sid in disks if sid not in holders.values())
    away = _away(disks[holders[0]])
    assert pipeline.repair_chunk(OWNER, record.chunk_id)["repaired"] == []
    assert pipeline.repair_chunk(OWNER, record.chunk_id, unreachable_too=True)["repaired"] == [0]
    assert _holders(pipeline, record.chunk_id)[0] == spare
    away.rename(disks[holders[0]])
    assert share_files(disks[holders[0]], record.chunk_id, 0)     # not deleted while away
    pipeline.retry_pending_deletes(time.monotonic() + 30)
    assert not share_files(disks[holders[0]], record.chunk_id, 0)
    assert pipeline.get_chunk(OWNER, record.chunk_id) == data
