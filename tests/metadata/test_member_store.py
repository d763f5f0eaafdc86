"""The members store, on every engine: members coming online together with their storage,
connections, and requests answered at most once — each owner's items reachable by that owner
only."""
from __future__ import annotations

import threading
import time

import pytest
from cloudstrype.array.store import ABANDONED, DONE, PENDING, MemberStore
from cloudstrype.storages.store import (
    ACTIVE,
    DRAINING,
    MEMBER_KIND,
    OFFLINE,
    StorageStore,
    member_storage_id,
)

MEMBER = "member-0001"


@pytest.fixture
def members(engine) -> MemberStore:
    made = MemberStore()
    assert made.engine is engine
    return made


@pytest.fixture
def storages(engine) -> StorageStore:
    return StorageStore()


def connect(members: MemberStore, connection_id: str = "conn-1", owner: str = "alice",
            member_id: str | None = None):
    return members.open_connection(connection_id, owner, f"{owner}-name", member_id)


def hello(members, conn, member_id=MEMBER, name="desk", **kwargs):
    if conn.member_id is None:
        assert members.bind_connection(conn, member_id)
    return members.register(conn, member_id, name=name, **kwargs)


# -- members and their storage -------------------------------------------------------------

def test_first_hello_registers_the_member_and_an_active_member_storage(members, storages):
    conn = connect(members)
    member = hello(members, conn, version="1.2", protocol=1, now=1000.0)
    assert (member.owner, member.member_id, member.name) == ("alice", MEMBER, "desk")
    assert member.storage_id == member_storage_id(MEMBER)
    assert member.connection_id == "conn-1" and member.last_seen == 1000.0
    assert member.created == 1000.0 and member.version == "1.2"
    storage = storages.get("alice", member.storage_id)
    assert storage.kind == MEMBER_KIND and storage.status == ACTIVE
    assert storage.settings == {"member_id": MEMBER}
    assert members.list_members("alice") == [member]


def test_a_second_hello_keeps_created_and_moves_the_member_to_the_new_connection(members):
    hello(members, connect(members, "conn-1"), now=1000.0)
    again = hello(members, connect(members, "conn-2"), name="renamed", now=2000.0)
    assert again.created == 1000.0 and again.last_seen == 2000.0
    assert again.connection_id == "conn-2" and again.name == "renamed"
    assert again.version is None


def test_disconnect_takes_member_and_storage_offline_together(members, storages):
    hello(members, connect(members))
    assert members.mark_offline("alice", MEMBER, "conn-1", now=3000.0)
    member = members.get_member("alice", MEMBER)
    assert member.connection_id is None and member.last_seen == 3000.0
    assert storages.get("alice", member_storage_id(MEMBER)).status == OFFLINE
    # Hello again: both come back.
    hello(members, connect(members, "conn-2"))
    assert storages.get("alice", member_storage_id(MEMBER)).status == ACTIVE


def test_the_disconnect_of_an_old_connection_changes_nothing(members, storages):
    hello(members, connect(members, "conn-1"))
    hello(members, connect(members, "conn-2"))
    assert not members.mark_offline("alice", MEMBER, "conn-1")
    assert members.get_member("alice", MEMBER).connection_id == "conn-2"
    assert storages.get("alice", member_storage_id(MEMBER)).status == ACTIVE


def test_a_draining_storage_stays_draining_whatever_the_member_does(members, storages):
    hello(members, connect(members, "conn-1"))
    assert storages.set_status("alice", member_storage_id(MEMBER), DRAINING)
    assert members.mark_offline("alice", MEMBER, "conn-1")
    assert members.get_member("alice", MEMBER).connection_id is None
    assert storages.get("alice", member_storage_id(MEMBER)).status == DRAINING
    member = hello(members, connect(members, "conn-2"))
    assert member.connection_id == "conn-2"
    assert storages.get("alice", member_storage_id(MEMBER)).status == DRAINING


def test_a_ping_counts_only_on_the_members_current_connection(members):
    hello(members, connect(members, "conn-1"), now=1000.0)
    assert members.touch("alice", MEMBER, "conn-1", now=1500.0)
    assert members.get_member("alice", MEMBER).last_seen == 1500.0
    assert not members.touch("alice", MEMBER, "conn-other", now=1600.0)
    assert not members.touch("alice", "member-unknown", "conn-1")
    assert members.get_member("alice", "member-unknown") is None      # not created by a ping
    assert members.get_member("alice", MEMBER).last_seen == 1500.0


def test_delete_member(members):
    hello(members, connect(members))
    assert not members.was_removed("alice", MEMBER)
    members.delete_member("alice", MEMBER)
    assert members.get_member("alice", MEMBER) is None
    assert members.list_members("alice") == []
    # Remembered as removed (its program is told so if it comes back), for its owner only.
    assert members.was_removed("alice", MEMBER)
    assert not members.was_removed("bob", MEMBER)


# -- connections -------------------------------------------------------------------------------

def test_a_connection_keeps_who_opened_it_and_is_bound_to_one_member(members):
    conn = connect(members, "conn-1", member_id=None)
    assert members.connection("conn-1") == conn and conn.member_id is None
    assert members.bind_connection(conn, MEMBER)
    assert members.connection("conn-1").member_id == MEMBER
    assert members.bind_connection(members.connection("conn-1"), MEMBER)     # idempotent
    assert not members.bind_connection(members.connection("conn-1"), "member-9999")
    assert members.connection("conn-1").member_id == MEMBER
    assert members.delete_connection("conn-1").owner == "alice"
    assert members.connection("conn-1") is None
    assert not members.bind_connection(conn, MEMBER)                          # gone
    assert members.connection("conn-1") is None                              # not recreated


def test_a_connection_opened_for_a_member_cannot_be_rebound(members):
    conn = connect(members, "conn-1", member_id=MEMBER)
    assert not members.bind_connection(conn, "member-9999")


def test_an_expired_connection_is_gone(members):
    members.open_connection("conn-old", "alice", None, MEMBER, now=time.time() - 100, ttl=50)
    members.open_connection("conn-new", "alice", None, MEMBER)
    assert members.connection("conn-old") is None
    assert members.connection("conn-new") is not None


# -- requests ----------------------------------------------------------------------------------

def test_a_request_is_answered_once_by_its_member(members):
    request = members.create_request("alice", MEMBER, "put", "key-1")
    assert members.get_request("alice", request.request_id).status == PENDING
    assert members.answer_request("alice", MEMBER, request.request_id, {"ok": True, "size": 3})
    assert not members.answer_request("alice", MEMBER, request.request_id, {"ok": False})
    done = members.get_request("alice", request.request_id)
    assert done.status == DONE and done.result == {"ok": True, "size": 3}
    assert (done.op, done.key, done.member_id) == ("put", "key-1", MEMBER)


def test_only_the_member_the_request_went_to_can_answer(members):
    request = members.create_request("alice", MEMBER, "get", "key-1")
    assert not members.answer_request("alice", "member-9999", request.request_id, {"ok": True})
    assert not members.answer_request("mallory", MEMBER, request.request_id, {"ok": True})
    assert not members.answer_request("alice", MEMBER, "no-such-request", {"ok": True})
    assert members.get_request("alice", "no-such-request") is None           # not created
    assert members.get_request("alice", request.request_id).status == PENDING


def race_answer_and_abandon(members: MemberStore) -> tuple[dict, object]:
    request = members.create_request("alice", MEMBER, "put", "key-1")
    barrier = threading.Barrier(2)
    outcome = {}

    def answer():
        barrier.wait()
        outcome["answered"] = members.answer_request("alice", MEMBER, request.request_id,
                                                     {"ok": True})

    def abandon():
        barrier.wait()
        outcome["abandoned"] = members.abandon_request("alice", request.request_id)

    threads = [threading.Thread(target=answer), threading.Thread(target=abandon)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcome, members.get_request("alice", request.request_id)


def test_abandon_and_answer_race_exactly_one_wins(members):
    for _ in range(10):
        outcome, final = race_answer_and_abandon(members)
        if outcome["answered"]:
            # The answer won: abandon reports it, so the waiting side uses the result.
            assert final.status == DONE and outcome["abandoned"].status == DONE
            assert outcome["abandoned"].result == {"ok": True}
        else:
            assert final.status == ABANDONED and outcome["abandoned"].status == ABANDONED


def test_many_answers_racing_exactly_one_is_recorded(members):
    request = members.create_request("alice", MEMBER, "stat", "key-1")
    barrier = threading.Barrier(6)
    won = []

    def answer(n):
        barrier.wait()
        if members.answer_request("alice", MEMBER, request.request_id, {"ok": True, "size": n}):
            won.append(n)

    threads = [threading.Thread(target=answer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    assert members.get_request("alice", request.request_id).result["size"] == won[0]


def test_an_abandoned_request_takes_no_answer(members):
    request = members.create_request("alice", MEMBER, "put", "key-1")
    assert members.abandon_request("alice", request.request_id).status == ABANDONED
    assert not members.answer_request("alice", MEMBER, request.request_id, {"ok": True})
    assert members.get_request("alice", request.request_id).status == ABANDONED


def test_an_expired_request_is_gone(members):
    old = members.create_request("alice", MEMBER, "put", "k", now=time.time() - 100, ttl=50)
    assert members.get_request("alice", old.request_id) is None
    assert not members.answer_request("alice", MEMBER, old.request_id, {"ok": True})


# -- owners ------------------------------------------------------------------------------------

def test_owners_see_only_their_own_members_and_requests(members, storages):
    hello(members, connect(members, "conn-a", owner="alice"))
    hello(members, connect(members, "conn-b", owner="bob"), member_id="member-bob1",
          name="bobs")
    assert [m.member_id for m in members.list_members("alice")] == [MEMBER]
    assert [m.member_id for m in members.list_members("bob")] == ["member-bob1"]
    assert members.get_member("bob", MEMBER) is None
    assert storages.get("bob", member_storage_id(MEMBER)) is None
    # The same member id under another owner is another member, with its own storage.
    hello(members, connect(members, "conn-b2", owner="bob"), name="bob's copy")
    assert members.get_member("alice", MEMBER).name == "desk"
    assert storages.get("alice", member_storage_id(MEMBER)).name == "desk"
    assert not members.mark_offline("bob", MEMBER, "conn-a")
    assert members.get_member("alice", MEMBER).connection_id == "conn-a"

    request = members.create_request("alice", MEMBER, "get", "key-1")
    assert members.get_request("bob", request.request_id) is None
    assert members.abandon_request("bob", request.request_id) is None
    assert members.get_request("alice", request.request_id).status == PENDING
