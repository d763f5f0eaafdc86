"""One user's members never see another user's shares, requests or members."""
from __future__ import annotations

import json
import os

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.array.conftest import listing
from tests.support import Api, assert_error, register_and_login, unique


def test_members_only_ever_hold_their_own_users_shares(trio, api, members):
    alice, _group, alice_members = trio
    bob = register_and_login(api)
    bobs = members.start(bob)
    alice_chunks = []
    for durability in ("raid1(3)", "rs(2,1)"):
        response = alice.api.post("/api/chunk", files={"file": ("c", os.urandom(60_000))},
                                  data={"durability": durability})
        assert response.status_code == 201, response.text
        alice_chunks.append(response.json()["chunk_id"])
        blob = unique("alice")
        assert alice.api.post(f"/api/array/{blob}?replicas=3", data=b"alice's").status_code \
            == 201
        alice_chunks.append(blob)
    bob_blob = unique("bob")
    stored = bob.api.post(f"/api/array/{bob_blob}?replicas=1", data=b"bob's bytes")
    assert stored.status_code == 201, stored.text
    assert [m["id"] for m in stored.json()["members"]] == [bobs.member_id]

    # Share keys begin with the owner's id: every file in a folder belongs to its member's user.
    assert bobs.share_files() and all(p.name.startswith(bob.user_id.lower())
                                      for p in bobs.share_files())
    for member in alice_members:
        assert member.share_files()
        assert all(p.name.startswith(alice.user_id.lower()) for p in member.share_files())
    # Each sees only their own members, chunks and blobs.
    assert set(listing(bob)) == {bobs.member_id}
    assert bobs.member_id not in listing(alice)
    for chunk_id in alice_chunks:
        assert_error(bob.api.get(f"/api/chunk/{chunk_id}"), 404, "chunk_not_found")
        assert_error(bob.api.get(f"/api/array/{chunk_id}"), 404, "chunk_not_found")
    assert_error(alice.api.get(f"/api/array/{bob_blob}"), 404, "chunk_not_found")
    assert_error(bob.api.delete(f"/api/array/members/{alice_members[0].member_id}"), 404,
                 "member_not_found")
    assert_error(bob.api.post(f"/api/array/members/{alice_members[0].member_id}/drain"), 404)
    assert listing(alice)[alice_members[0].member_id]["online"]


def test_another_users_connection_cannot_take_over_or_answer_for_a_member(trio, api, stack):
    alice, _group, alice_members = trio
    mallory = register_and_login(api)
    target = alice_members[1].member_id
    auth = {"Authorization": f"Bearer {mallory.access_token}"}
    with connect(stack.ws_url, additional_headers=auth, open_timeout=10) as ws:
        # Not a member yet: it cannot answer anything.
        ws.send(json.dumps({"type": "result", "request_id": "0" * 32, "ok": True}))
        assert json.loads(ws.recv(timeout=10))["code"] == "no_hello"
    with connect(f"{stack.ws_url}?member_id={target}", additional_headers=auth,
                 open_timeout=10) as ws:
        ws.send(json.dumps({"type": "hello", "member_id": target, "name": "impostor",
                            "capacity": 10**9, "used": 0, "free": 10**9}))
        welcome = json.loads(ws.recv(timeout=10))
        assert welcome["type"] == "welcome"
        ws.send(json.dumps({"type": "result", "request_id": "0" * 32, "ok": True,
                            "size": 1, "sha256": "0" * 64}))
        assert json.loads(ws.recv(timeout=10))["code"] == "unknown_request"
        # The same member id under another user is another member: Alice's is untouched.
        assert listing(mallory)[target]["name"] == "impostor"
        alices = listing(alice)[target]
        assert alices["online"] and alices["name"] == alice_members[1].name
        response = alice.api.post(f"/api/array/{unique('still')}?replicas=3", data=b"ok")
        assert response.status_code == 201, response.text


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_a_member_with_a_bad_token_cannot_connect(members, user, how):
    if how == "flag":
        member = members.start(user, token="not-a-token", wait=False)
    else:
        member = members.start(user, token=None, wait=False,
                               env={"CLOUDSTRYPE_TOKEN": "eyJhbGciOiJub25lIn0.e30."})
    code = member.process.wait(timeout=30)
    assert code == 2, member.log()
    assert "refused the token" in member.log()
    assert member.member_id not in listing(user)


def test_the_saved_login_is_used_when_no_token_or_server_is_given(members, user, stack,
                                                                   tmp_path):
    name = unique("saved")
    home = tmp_path / f"{name}-home"            # where MemberProcess points HOME
    saved = home / ".config" / "cloudstrype" / "credentials.json"
    saved.parent.mkdir(parents=True)
    saved.write_text(json.dumps({"server": stack.url, "access_token": user.access_token,
                                 "refresh_token": user.tokens.get("refresh_token")}))
    member = members.start(user, name=name, token=None, server=None)
    assert listing(user)[member.member_id]["online"]


def test_a_raw_websocket_with_a_bad_token_is_refused(stack):
    with pytest.raises(InvalidStatus) as refused:
        with connect(f"{stack.ws_url}?member_id=abcdefgh12345678&token=forged.jwt.here",
                     open_timeout=10):
            pass
    assert refused.value.response.status_code == 401


def test_a_bad_member_id_is_refused_at_connect(stack, user):
    with pytest.raises(InvalidStatus) as refused:
        with connect(f"{stack.ws_url}?member_id=../../etc",
                     additional_headers={"Authorization": f"Bearer {user.access_token}"},
                     open_timeout=10):
            pass
    assert refused.value.response.status_code == 400


def test_a_rejected_saved_token_is_renewed_with_the_saved_refresh_token(members, user, stack,
                                                                        tmp_path):
    name = unique("renew")
    saved = tmp_path / f"{name}-home" / ".config" / "cloudstrype" / "credentials.json"
    saved.parent.mkdir(parents=True)
    saved.write_text(json.dumps({"server": stack.url, "access_token": "expired.or.revoked",
                                 "refresh_token": user.tokens["refresh_token"]}))
    member = members.start(user, name=name, token=None, server=None)
    assert listing(user)[member.member_id]["online"]
    # Saved back for the CLI, whose sign-in it is: the CLI's next refresh takes the new token
    # (kept by the member alone, the CLI's replaced one would end the sign-in).
    renewed = json.loads(saved.read_text())
    assert renewed["access_token"] != "expired.or.revoked"
    if stack.stack_info().get("mode", "local") == "local":     # (Cognito keeps its own)
        assert renewed["refresh_token"] != user.tokens["refresh_token"]
    again = Api(stack.url).post("/api/auth/refresh",
                                json={"refresh_token": renewed["refresh_token"]})
    assert again.status_code == 200, again.text


@pytest.mark.parametrize("version", [True, 1.0, "1", [1]])
def test_a_hello_with_a_protocol_not_an_integer_is_refused_and_leaves_nothing(api, stack,
                                                                             version):
    """true and 1.0 equal 1 in Python: they passed the version check, then failed in the store
    (an internal error) after the member's storage was made, which placement then chose."""
    user = register_and_login(api)
    member_id = unique("proto").replace(".", "-")[:40]
    auth = {"Authorization": f"Bearer {user.access_token}"}
    with connect(f"{stack.ws_url}?member_id={member_id}", additional_headers=auth,
                 open_timeout=10) as ws:
        ws.send(json.dumps({"type": "hello", "member_id": member_id, "protocol": version,
                            "capacity": 10**9, "used": 0, "free": 10**9}))
        answer = json.loads(ws.recv(timeout=10))
    assert answer.get("code") == "unsupported_protocol", answer
    assert member_id not in listing(user)
    storages = user.api.get("/api/cloud/storages").json()["storages"]
    assert not [s for s in storages if member_id in s["id"]], storages


def test_a_member_named_as_another_storage_is_numbered(api, stack, tmp_path):
    """A user's storages have distinct names (the CLI names them in commands): a member whose
    name another storage of the user has (case aside) connects numbered, as a connected account
    is, and keeps its own name when it says hello again."""
    user = register_and_login(api)
    assert user.api.post("/api/cloud/storages", json={
        "kind": "local", "name": "disk-a", "config": {"path": str(tmp_path / "a")}}
    ).status_code == 201
    auth = {"Authorization": f"Bearer {user.access_token}"}
    ids = [unique("named").replace(".", "-")[:40] for _ in range(2)]

    def hello(member_id: str, name: str) -> dict:
        with connect(f"{stack.ws_url}?member_id={member_id}", additional_headers=auth,
                     open_timeout=10) as ws:
            ws.send(json.dumps({"type": "hello", "member_id": member_id, "name": name,
                                "capacity": 10**9, "used": 0, "free": 10**9}))
            return json.loads(ws.recv(timeout=10))

    assert hello(ids[0], "DISK-A")["type"] == "welcome"
    assert hello(ids[1], "Disk-A")["type"] == "welcome"
    assert hello(ids[0], "DISK-A")["type"] == "welcome"             # again: unchanged
    names = sorted(s["name"] for s in user.api.get("/api/cloud/storages").json()["storages"])
    assert names == ["DISK-A 2", "Disk-A 3", "disk-a"], names
