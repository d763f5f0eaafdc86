"""Members coming and going: clean stops, lost connections, mid-transfer deaths, removal."""
from __future__ import annotations

import os
import signal
import threading
import time

from cloudstrype.array.store import MEMBERS
from cloudstrype.metadata.engine import Change, Condition

from tests.array.conftest import listing, wait_for
from tests.support import assert_error, register_and_login, unique


def test_sigterm_stops_cleanly_and_the_member_is_shown_offline(members, user):
    member = members.start(user)
    assert member.stop() == 0, member.log()
    assert "stopped" in member.log()
    info = members.wait_online(user, member, online=False, timeout=10)
    assert info["connected_since"] is None and info["last_seen"]


def test_a_member_holding_shares_cannot_be_removed_until_drained(members, api):
    user = register_and_login(api)
    first, second = members.start(user, wait=False), members.start(user, wait=False)
    for member in (first, second):
        members.wait_online(user, member)
    data = os.urandom(90_000)
    blob = unique("drain")
    stored = user.api.post(f"/api/array/{blob}?replicas=1", data=data)
    assert stored.status_code == 201, stored.text
    [holder_id] = [m["id"] for m in stored.json()["members"]]
    holder, other = (first, second) if first.member_id == holder_id else (second, first)

    error = assert_error(user.api.delete(f"/api/array/members/{holder.member_id}"), 409,
                         "member_not_empty")
    assert "drain" in error["message"].lower()
    drained = user.api.post(f"/api/array/members/{holder.member_id}/drain")
    assert drained.status_code == 200 and drained.json()["remaining"] == 0, drained.text
    assert listing(user)[holder.member_id]["status"] == "draining"
    assert [f.read_bytes() for f in other.chunk_files(blob)] == [data]
    wait_for(lambda: not holder.chunk_files(blob), 10, "the drained share to be deleted")

    assert user.api.delete(f"/api/array/members/{holder.member_id}").status_code == 204
    _assert_removed(user, holder)
    assert user.api.get(f"/api/array/{blob}").content == data
    assert_error(user.api.delete(f"/api/array/members/{holder.member_id}"), 404)


def _assert_removed(user, member) -> None:
    """The program was told it was removed and stopped instead of reconnecting; neither the
    member nor its storage is listed."""
    assert member.process.wait(timeout=15) == 0, member.log()
    assert "removed" in member.log()
    assert member.member_id not in listing(user)
    assert member.storage_id not in {s["id"] for s in
                                     user.api.get("/api/cloud/storages").json()["storages"]}


def test_removing_a_members_storage_removes_the_member(members, api):
    """DELETE /api/cloud/storages/mb-… (what `cloudstrype storages remove` sends) is the
    member's removal: its program is told and stops; it does not register itself again."""
    user = register_and_login(api)
    member = members.start(user)
    assert user.api.delete(f"/api/cloud/storages/{member.storage_id}").status_code == 204
    _assert_removed(user, member)
    assert_error(user.api.delete(f"/api/cloud/storages/{member.storage_id}"), 404,
                 "storage_not_found")


def test_a_copy_of_a_members_folder_takes_it_over_and_the_first_program_stops(members, api):
    """Two programs with one member id (a folder copied to another machine) would take the
    member from each other at every ping: the later one keeps it, the earlier is told, says
    why and stops (exit 2) instead of reconnecting."""
    import shutil
    user = register_and_login(api)
    first = members.start(user)
    copy = first.folder.parent / (first.folder.name + "-copy")
    shutil.copytree(first.folder, copy, ignore=shutil.ignore_patterns(".lock"))
    second = members.start(user, name=first.name + "-copy", folder=copy, wait=False)
    assert first.process.wait(timeout=30) == 2, first.log()
    assert "Another program connected as this member" in first.log()
    assert "folder copied to another machine" in first.log()
    info = wait_for(lambda: (i := listing(user).get(first.member_id, {})).get("online") and
                    i.get("name") == second.name and i, 15, "the copy online as the member")
    assert info["status"] == "active"
    time.sleep(1.5)
    assert second.alive() and listing(user)[first.member_id]["name"] == second.name


def test_a_stale_connection_takes_the_member_offline_and_it_registers_again(members, api,
                                                                             metadata):
    user = register_and_login(api)
    member = members.start(user, extra=("--ping-interval", "1"))
    # As if the $disconnect of its connection had been lost: the registry points at a
    # connection API Gateway no longer has. (The program is paused meanwhile, so its pings
    # cannot repair the registry before the write below has run into the stale connection.)
    member.process.send_signal(signal.SIGSTOP)
    metadata.update(MEMBERS, {"owner": user.user_id, "member_id": member.member_id},
                    Change(set={"connection_id": "GoneConnId0="}), Condition.exists())
    started = time.monotonic()
    response = user.api.post(f"/api/array/{unique('stale')}?replicas=1", data=b"data")
    assert_error(response, 503, "storages_unavailable")
    assert int(response.headers["Retry-After"]) >= 1
    assert time.monotonic() - started < 5           # GoneException: no waiting for an answer
    assert "gone" in response.json()["error"]["message"]
    assert listing(user)[member.member_id]["online"] is False
    # The member's next ping learns it is not registered; it says hello again.
    member.process.send_signal(signal.SIGCONT)
    members.wait_online(user, member, timeout=15)
    blob = unique("again")
    assert user.api.post(f"/api/array/{blob}?replicas=1", data=b"again").status_code == 201
    assert [f.read_bytes() for f in member.chunk_files(blob)] == [b"again"]


def test_a_member_killed_mid_transfer_loses_nothing_that_was_acknowledged(members, api):
    user = register_and_login(api)
    steady = [members.start(user, wait=False) for _ in range(2)]
    # This one holds every share it downloads for a while before making it durable.
    slow = members.start(user, wait=False, env={"CLOUDSTRYPE_MEMBER_PUT_DELAY": "8"})
    for member in (*steady, slow):
        members.wait_online(user, member)
    acknowledged: dict[str, tuple[bytes, list]] = {}
    failures = []
    stop = threading.Event()

    def writer():
        while not stop.is_set():
            blob, data = unique("mid"), os.urandom(40_000)
            response = user.api.post(f"/api/array/{blob}?replicas=2", data=data)
            if response.status_code == 201:
                acknowledged[blob] = (data, [s["storage_id"] for s in response.json()["shares"]])
            else:
                failures.append(response.text)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        # Wait until the slow member is in the middle of a put, then kill it.
        wait_for(lambda: list((slow.folder / "tmp").glob("*.part")), 30,
                 "the slow member to be mid-transfer")
        slow.kill()
        count = len(acknowledged)
        wait_for(lambda: len(acknowledged) >= count + 2, 30, "writes after the kill")
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not failures, failures
    # The write that was on the slow member when it died went to another member instead.
    assert not slow.share_files()
    for blob, (data, placed) in acknowledged.items():
        assert slow.storage_id not in placed
        got = user.api.get(f"/api/array/{blob}")
        assert got.status_code == 200 and got.content == data


def test_several_transfers_at_once_and_never_beyond_the_size(members, api):
    user = register_and_login(api)
    # 1 MB of room; every put is held 1.5 s after its download, so the puts below overlap.
    member = members.start(user, size="1MB", extra=("--transfers", "4"),
                           env={"CLOUDSTRYPE_MEMBER_PUT_DELAY": "1.5"})
    outcomes: dict[str, int] = {}
    refusals = []

    def write(blob):
        response = user.api.post(f"/api/array/{blob}?replicas=1", data=os.urandom(400_000))
        outcomes[blob] = response.status_code
        if response.status_code != 201:
            refusals.append(response.json()["error"]["message"])

    threads = [threading.Thread(target=write, args=(unique("fill"),)) for _ in range(3)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    elapsed = time.monotonic() - started
    # The server saw 1 MB free for each of the three and sent them all: the member itself took
    # two and refused the third (full, not down: 422, naming why).
    assert sorted(outcomes.values()) == [201, 201, 422], (outcomes, refusals)
    assert "no room" in refusals[0]
    assert elapsed < 4, "the puts were not handled at the same time"
    on_disk = sum(p.stat().st_size for p in member.share_files())
    assert on_disk == 800_000
    info = wait_for(lambda: (i := listing(user)[member.member_id])["used"] == 800_000 and i,
                    10, "the member to report its space")
    assert info["capacity"] == 1_000_000 and info["free"] == 200_000


def test_a_member_reconnects_by_itself_when_the_server_comes_back(tmp_path):
    from tests.array.conftest import MemberProcess
    from tests.support import Api, free_port, start_stack

    port = free_port()
    own = start_stack(tmp_path / "data", port=port)
    member = None
    try:
        user = register_and_login(Api(own.url))
        member = MemberProcess(own.url, tmp_path / "m", user.access_token, unique("phoenix"))
        member.start()
        online = wait_for(lambda: listing(user).get(member.member_id, {}).get("online") and
                          listing(user)[member.member_id], 30, "the member online")
        # Taken before the restart: read after it, the member may already be back on its new
        # connection, and no later one would differ from it.
        first = online["connected_since"]
        blob = unique("kept")
        # The first put right after the member shows online (it may reach the member before
        # the server's welcome does).
        stored = user.api.post(f"/api/array/{blob}?replicas=1", data=b"kept")
        assert stored.status_code == 201, stored.text
        assert own.stop() == 0
        wait_for(lambda: "reconnecting" in member.log() or "cannot reach" in member.log(), 15,
                 "the member to notice")
        assert member.alive()
        own = start_stack(tmp_path / "data", port=port)

        def reconnected():
            # A new connection, not the record of the one the old server had (which can still
            # look online for a moment after the restart).
            now = listing(user).get(member.member_id, {})
            return now.get("online") and now.get("connected_since") != first and now
        back = wait_for(reconnected, 45, "the member back online on a new connection")
        assert back["status"] == "active"
        # The first read right after the member shows online again.
        read = user.api.get(f"/api/array/{blob}")
        assert read.status_code == 200, read.text
        assert read.content == b"kept"
    finally:
        if member is not None and member.alive():
            member.kill()
        own.stop()


def test_a_member_removed_while_away_is_told_so_when_it_comes_back(members, api):
    """Removed while its program was stopped (drained from its other copies, then removed),
    the member started again is told it was removed and stops; it is not registered anew as a
    storage the user did not add (found by the members sweep)."""
    user = register_and_login(api)
    member = members.start(user)
    assert member.stop() == 0, member.log()
    members.wait_online(user, member, online=False, timeout=10)
    assert user.api.delete(f"/api/array/members/{member.member_id}").status_code == 204
    assert member.member_id not in listing(user)

    member.start()                          # the same folder and member id, as before
    assert member.process.wait(timeout=20) == 0, member.log()
    assert "removed from the account while it was away" in member.log()
    assert member.member_id not in listing(user)
    assert member.storage_id not in {s["id"] for s in
                                     user.api.get("/api/cloud/storages").json()["storages"]}
