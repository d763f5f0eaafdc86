"""The admin's view of a group (issue 14 #6): the shares granted to it, i.e. what its members
reach through it. Admins only; read-only; paged."""
from __future__ import annotations

from tests.sharing.conftest import membership, mkdir, share, uploaded
from tests.support import assert_error, unique

FS = "/api/filesystem"


def group_shares(admin_api, group: str, **params) -> dict:
    response = admin_api.get(f"{FS}/groups/{group}/shares", params=params or None)
    assert response.status_code == 200, response.text
    return response.json()


def test_admin_sees_the_shares_granted_to_a_group(alice, bob, admin, group):
    admin_api, _ = admin
    assert group_shares(admin_api, group) == {"group": group, "shares": [],
                                              "next_cursor": None}
    membership(admin, group, alice.username, True)
    mkdir(alice, "/team/plans")
    uploaded(alice, "/team", "notes.txt", b"notes")
    folder = share(alice, "/team/plans", "write", group=group)
    file = share(alice, "/team/notes.txt", "read", group=group)
    # A share with a user (even a member) is not the group's.
    share(alice, "/team", "read", user=bob)

    listed = group_shares(admin_api, group)
    assert listed["next_cursor"] is None
    by_id = {s["id"]: s for s in listed["shares"]}
    assert set(by_id) == {folder["id"], file["id"]}
    assert by_id[folder["id"]] == {
        "id": folder["id"], "owner": alice.username, "node_id": folder["node_id"],
        "name": "plans", "type": "directory", "path": "/team/plans", "level": "write",
        "created": folder["created"]}
    assert (by_id[file["id"]]["path"], by_id[file["id"]]["level"],
            by_id[file["id"]]["type"]) == ("/team/notes.txt", "read", "file")

    # Paged: one at a time, both come, each once.
    first = group_shares(admin_api, group, limit=1)
    assert len(first["shares"]) == 1 and first["next_cursor"]
    second = group_shares(admin_api, group, limit=1, cursor=first["next_cursor"])
    assert {first["shares"][0]["id"], second["shares"][0]["id"]} == set(by_id)
    assert_error(admin_api.get(f"{FS}/groups/{group}/shares", params={"cursor": "forged"}),
                 400, "invalid_cursor")

    # What members no longer reach is not listed: a revoked share, an item in the trash.
    assert alice.api.delete(f"{FS}/shares/{folder['id']}").status_code == 204
    assert [s["id"] for s in group_shares(admin_api, group)["shares"]] == [file["id"]]
    assert alice.api.delete(f"{FS}/info/{file['node_id']}").status_code == 204
    assert group_shares(admin_api, group)["shares"] == []


def test_only_admins_and_only_groups_that_exist(alice, admin, group):
    admin_api, _ = admin
    membership(admin, group, alice.username, True)
    # A member is not an admin: 403, whatever the group.
    assert_error(alice.api.get(f"{FS}/groups/{group}/shares"), 403)
    assert_error(alice.api.get(f"{FS}/groups/{unique('nogroup')}/shares"), 403)
    assert_error(admin_api.get(f"{FS}/groups/{unique('nogroup')}/shares"), 404,
                 "group_not_found")
    assert_error(admin_api.get(f"{FS}/groups/a%20b/shares"), 400, "invalid_group")
    assert_error(admin_api.get(f"{FS}/groups/{group}/shares", params={"limit": 0}), 400)
