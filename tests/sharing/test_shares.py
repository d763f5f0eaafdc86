"""Shares through HTTP against the running stack: users and groups, read and write, both ways,
and nothing reaching beyond a share."""
from __future__ import annotations

import hashlib
import os

from tests.sharing.conftest import (
    QUOTA,
    membership,
    mkdir,
    share,
    upload,
    uploaded,
    usage,
    with_storages,
)
from tests.support import Api, assert_error, register_and_login, unique

FS = "/api/filesystem"


def listing(user, share_id: str, path: str = "/") -> dict:
    response = user.api.get(f"{FS}/info", params={"share": share_id, "path": path})
    assert response.status_code == 200, response.text
    return response.json()


def names(info: dict) -> list[str]:
    return [child["name"] for child in info["children"]]


def test_a_read_share_lets_the_recipient_list_and_read_inside_and_write_nothing(alice, bob):
    mkdir(alice, "/docs/sub")
    report = uploaded(alice, "/docs", "report.txt", b"quarterly numbers")
    uploaded(alice, "/docs/sub", "deep.txt", b"deeper")
    made = share(alice, "/docs", "read", user=bob)
    assert made["grantee"] == {"kind": "user", "name": bob.username}
    assert made["path"] == "/docs" and made["level"] == "read"

    mine = bob.api.get(f"{FS}/shared").json()["shares"]
    assert [(s["id"], s["name"], s["owner"], s["level"]) for s in mine] == \
        [(made["id"], "docs", alice.username, "read")]

    top = listing(bob, made["id"])
    assert top["path"] == "/" and names(top) == ["report.txt", "sub"]
    assert names(listing(bob, made["id"], "/sub")) == ["deep.txt"]
    info = bob.api.get(f"{FS}/info/{report['id']}", params={"share": made["id"]}).json()
    assert info["path"] == "/report.txt" and info["size"] == 17
    # Versions and how the content is stored stay the owner's.
    assert not {"versions", "version", "durability", "encryption"} & set(info)
    data = bob.api.get(f"{FS}/data/{report['id']}", params={"share": made["id"]})
    assert data.status_code == 200 and data.content == b"quarterly numbers"
    ranged = bob.api.get(f"{FS}/data/{report['id']}", params={"share": made["id"]},
                         headers={"Range": "bytes=0-8"})
    assert ranged.status_code == 206 and ranged.content == b"quarterly"

    s = made["id"]
    assert_error(upload(bob, "/", "mine.txt", b"x", share=s), 403, "read_only_share")
    assert_error(mkdir(bob, "/new", share=s), 403, "read_only_share")
    assert_error(bob.api.post(f"{FS}/info/{report['id']}", params={"share": s},
                              json={"name": "renamed.txt"}), 403, "read_only_share")
    assert_error(bob.api.delete(f"{FS}/info/{report['id']}", params={"share": s}), 403,
                 "read_only_share")
    assert names(alice.api.get(f"{FS}/info", params={"path": "/docs"}).json()) == \
        ["report.txt", "sub"]


def test_both_ways_a_write_share_stores_on_the_owner_and_charges_the_owner(alice, bob):
    # Alice shares with Bob, and Bob shares with Alice.
    mkdir(alice, "/inbox")
    to_bob = share(alice, "/inbox", "write", user=bob)
    mkdir(bob, "/music")
    uploaded(bob, "/music", "song.ogg", b"la la la")
    to_alice = share(bob, "/music", "write", user=alice)

    before_alice, before_bob = usage(alice), usage(bob)
    body = os.urandom(100_000)
    made = uploaded(bob, "/drop", "photo.jpg", body, share=to_bob["id"])
    assert made["path"] == "/drop/photo.jpg"
    assert not {"versions", "durability", "encryption"} & set(made)
    # In Alice's tree, under the shared folder, counted against Alice alone.
    own = alice.api.get(f"{FS}/info", params={"path": "/inbox/drop"}).json()
    assert names(own) == ["photo.jpg"]
    assert alice.api.get(f"{FS}/data/{made['id']}").content == body
    assert usage(alice) == before_alice + len(body)
    assert usage(bob) == before_bob

    # The other way round.
    song = listing(alice, to_alice["id"])["children"][0]
    assert alice.api.get(f"{FS}/data/{song['id']}",
                         params={"share": to_alice["id"]}).content == b"la la la"
    uploaded(alice, "/", "remix.ogg", b"la la LA", share=to_alice["id"])
    assert names(bob.api.get(f"{FS}/info", params={"path": "/music"}).json()) == \
        ["remix.ogg", "song.ogg"]


def test_a_writer_stores_with_the_owners_durability_and_encryption_only(alice, bob):
    """A recipient naming a scheme is refused (it would have them store the owner's data
    unencrypted, or with less redundancy): one file and a batch, each field alone."""
    assert alice.api.put(f"{FS}/settings", json={"durability": "raid1(2)",
                                                 "encryption": "aes256-gcm"}).status_code == 200
    mkdir(alice, "/scheme")
    to_bob = share(alice, "/scheme", "write", user=bob)
    params = {"share": to_bob["id"]}
    for field, value in (("encryption", "none"), ("durability", "raid1(1)")):
        one = bob.api.post(f"{FS}/data", params=params, files={"file": ("a.txt", b"mine")},
                           data={"path": "/", "name": "a.txt", field: value})
        error = assert_error(one, 403, "owners_scheme")
        assert error["details"]["field"] == field and "owner's" in error["message"]
        many = bob.api.post(f"{FS}/batch", params=params, data={"path": "/", field: value},
                            files=[("file", ("b.txt", b"b")), ("file", ("c.txt", b"c"))])
        assert_error(many, 403, "owners_scheme")
    assert names(alice.api.get(f"{FS}/info", params={"path": "/scheme"}).json()) == []
    # Left out, the owner's defaults apply.
    made = uploaded(bob, "/", "a.txt", b"mine", share=to_bob["id"])
    info = alice.api.get(f"{FS}/info/{made['id']}").json()
    assert (info["durability"], info["encryption"]) == ("raid1(2)", "aes256-gcm")
    # The owner, in their own tree, chooses as before.
    own = alice.api.post(f"{FS}/data", files={"file": ("o.txt", b"o")},
                         data={"path": "/scheme", "name": "o.txt", "encryption": "none"})
    assert own.status_code == 201 and own.json()["encryption"] == "none"


def test_a_writer_renames_moves_and_deletes_inside_but_not_the_share_itself(alice, bob):
    mkdir(alice, "/project/a")
    mkdir(alice, "/project/b")
    note = uploaded(alice, "/project/a", "note.txt", b"note")
    s = share(alice, "/project", "write", user=bob)
    top = next(c for c in listing(bob, s["id"], "/")["children"] if c["name"] == "a")

    moved = bob.api.post(f"{FS}/info/{note['id']}", params={"share": s["id"]},
                         json={"path": "/b", "name": "renamed.txt"})
    assert moved.status_code == 200, moved.text
    assert moved.json()["path"] == "/b/renamed.txt"
    assert names(alice.api.get(f"{FS}/info", params={"path": "/project/b"}).json()) == \
        ["renamed.txt"]
    # "Moving out" names a path inside the share: it lands there, never in the owner's root.
    out = bob.api.post(f"{FS}/info/{note['id']}", params={"share": s["id"]},
                       json={"path": "/"})
    assert out.status_code == 200 and out.json()["path"] == "/renamed.txt"
    assert "renamed.txt" not in names(alice.api.get(f"{FS}/info", params={"path": "/"}).json())

    assert bob.api.delete(f"{FS}/info/{top['id']}", params={"share": s["id"]}).status_code == 204
    assert names(alice.api.get(f"{FS}/info", params={"path": "/project"}).json()) == \
        ["b", "renamed.txt"]

    project_id = alice.api.get(f"{FS}/info", params={"path": "/project"}).json()["id"]
    assert_error(bob.api.delete(f"{FS}/info/{project_id}", params={"share": s["id"]}), 403,
                 "share_root")
    assert_error(bob.api.post(f"{FS}/info/{project_id}", params={"share": s["id"]},
                              json={"name": "mine"}), 403, "share_root")
    # Nor its attributes (sharing sweep: a write recipient could set them); inside, they can.
    assert_error(bob.api.post(f"{FS}/info/{project_id}", params={"share": s["id"]},
                              json={"attributes": {"color": "red"}}), 403, "share_root")
    assert "color" not in (alice.api.get(f"{FS}/info/{project_id}").json().get("attributes")
                           or {})
    tagged = bob.api.post(f"{FS}/info/{note['id']}", params={"share": s["id"]},
                          json={"attributes": {"color": "red"}})
    assert tagged.status_code == 200 and tagged.json()["attributes"] == {"color": "red"}


def test_nothing_outside_the_share_resolves_for_the_recipient(alice, bob, carol):
    mkdir(alice, "/shared")
    inside = uploaded(alice, "/shared", "in.txt", b"in")
    secret = uploaded(alice, "/private", "secret.txt", b"secret")
    bobs = uploaded(bob, "/", "bobs.txt", b"bob's own")
    s = share(alice, "/shared", "write", user=bob)["id"]

    # Ids outside the shared folder, the recipient's own ids, and no share at all: 404.
    for node_id in (secret["id"], bobs["id"], "root"):
        assert_error(bob.api.get(f"{FS}/info/{node_id}", params={"share": s}), 404)
        assert bob.api.get(f"{FS}/data/{node_id}", params={"share": s}).status_code in (400, 404)
    for method in ("post", "delete"):
        call = getattr(bob.api, method)
        kwargs = {"json": {"name": "x"}} if method == "post" else {}
        assert_error(call(f"{FS}/info/{secret['id']}", params={"share": s}, **kwargs), 404)
    assert_error(bob.api.get(f"{FS}/info/{inside['id']}"), 404)    # not in Bob's own tree
    # Moving one of the recipient's own items (or the owner's others) into the share: 404.
    assert_error(bob.api.post(f"{FS}/info/{bobs['id']}", params={"share": s},
                              json={"path": "/"}), 404)
    # Paths cannot climb out.
    for path in ("/..", "/../private", "/./x", "//private"):
        assert_error(bob.api.get(f"{FS}/info", params={"share": s, "path": path}), 400)
        assert_error(mkdir(bob, path, share=s), 400)
    # Earlier versions of a shared file are the owner's.
    uploaded(alice, "/shared", "in.txt", b"in, again")
    versions = alice.api.get(f"{FS}/info/{inside['id']}").json()["versions"]
    assert len(versions) == 2
    assert_error(bob.api.get(f"{FS}/data/{inside['id']}",
                             params={"share": s, "version": versions[0]["version"]}), 403,
                 "versions_not_shared")
    # A share id is no key for anyone else; its owner is told to leave it out (a 400).
    assert_error(carol.api.get(f"{FS}/info", params={"share": s}), 404, "share_not_found")
    assert_error(alice.api.get(f"{FS}/info", params={"share": s}), 400, "own_share")
    assert_error(bob.api.get(f"{FS}/info", params={"share": "0" * 24}), 404, "share_not_found")
    assert_error(bob.api.get(f"{FS}/info", params={"share": "nope"}), 404, "share_not_found")


def test_group_membership_counts_at_once_both_ways(alice, bob, carol, admin, group):
    assert_error(alice.api.post(f"{FS}/shares", json={"path": "/", "group": group,
                                                      "level": "read"}), 400)
    mkdir(alice, "/team")
    uploaded(alice, "/team", "plan.txt", b"plan")
    # Only a group one is in.
    assert_error(alice.api.post(f"{FS}/shares", json={"path": "/team", "group": group,
                                                      "level": "read"}), 403, "not_a_member")
    membership(admin, group, alice.username, True)
    s = share(alice, "/team", "write", group=group)
    assert s["grantee"] == {"kind": "group", "name": group}

    assert_error(bob.api.get(f"{FS}/info", params={"share": s["id"]}), 404, "share_not_found")
    assert bob.api.get(f"{FS}/shared").json()["shares"] == []
    membership(admin, group, bob.username, True)
    # Bob's token is unchanged (it names no groups); the membership counts at once.
    assert names(listing(bob, s["id"])) == ["plan.txt"]
    shared = bob.api.get(f"{FS}/shared").json()["shares"]
    assert [(x["id"], x["via"]) for x in shared] == [(s["id"], {"kind": "group",
                                                                "name": group})]
    assert upload(bob, "/", "bob.txt", b"from bob", share=s["id"]).status_code == 201
    # Alice lists her own share neither as shared with her.
    assert alice.api.get(f"{FS}/shared").json()["shares"] == []

    membership(admin, group, bob.username, False)
    assert_error(bob.api.get(f"{FS}/info", params={"share": s["id"]}), 404, "share_not_found")
    assert_error(upload(bob, "/", "late.txt", b"late", share=s["id"]), 404, "share_not_found")
    assert bob.api.get(f"{FS}/shared").json()["shares"] == []
    assert_error(carol.api.get(f"{FS}/info", params={"share": s["id"]}), 404)
    assert names(alice.api.get(f"{FS}/info", params={"path": "/team"}).json()) == \
        ["bob.txt", "plan.txt"]


def test_an_owner_taken_out_of_the_group_stops_sharing_with_it(alice, bob, admin, group):
    """Sharing with a group needs the owner in it: not only when the share is made but for as
    long as it grants (and an owner taken out cannot raise it to write meanwhile)."""
    admin_api, _ = admin
    for user in (alice, bob):
        membership(admin, group, user.username, True)
    mkdir(alice, "/fam")
    uploaded(alice, "/fam", "note.txt", b"for the family")
    s = share(alice, "/fam", "read", group=group)["id"]
    assert names(listing(bob, s)) == ["note.txt"]

    membership(admin, group, alice.username, False)
    assert_error(bob.api.get(f"{FS}/info", params={"share": s}), 404, "share_not_found")
    assert_error(bob.api.get(f"{FS}/shares/{s}"), 404, "share_not_found")
    assert bob.api.get(f"{FS}/shared").json()["shares"] == []
    listed = admin_api.get(f"{FS}/groups/{group}/shares").json()["shares"]
    assert s not in {x["id"] for x in listed}
    assert_error(alice.api.put(f"{FS}/shares/{s}", json={"level": "write"}), 403,
                 "not_a_member")
    assert_error(upload(bob, "/", "in.txt", b"x", share=s), 404, "share_not_found")
    # Its owner sees why it grants nothing.
    (mine,) = alice.api.get(f"{FS}/shares").json()["shares"]
    assert mine["grants"] is False and "no longer in the group" in mine["not_granting"]

    # Put back, the share grants again, as it was (read).
    membership(admin, group, alice.username, True)
    assert names(listing(bob, s)) == ["note.txt"]
    assert alice.api.get(f"{FS}/shares/{s}").json()["grants"] is True
    assert_error(upload(bob, "/", "in.txt", b"x", share=s), 403)
    assert alice.api.delete(f"{FS}/shares/{s}").status_code == 204


def test_a_group_deleted_and_made_again_inherits_nothing(alice, bob, admin, group):
    admin_api, _ = admin
    for user in (alice, bob):
        membership(admin, group, user.username, True)
    mkdir(alice, "/old-team")
    uploaded(alice, "/old-team", "secret.txt", b"for the old group")
    s = share(alice, "/old-team", "read", group=group)
    assert names(listing(bob, s["id"])) == ["secret.txt"]

    # At once: made again within the second the share was made in, it is still another group.
    assert admin_api.delete(f"/api/auth/groups/{group}").status_code == 204
    assert admin_api.post("/api/auth/groups", json={"name": group}).status_code == 201
    membership(admin, group, bob.username, True)
    # Same name, another group: the old group's share grants its new members nothing, and
    # the admins' view of what the group reaches does not list it.
    assert_error(bob.api.get(f"{FS}/info", params={"share": s["id"]}), 404, "share_not_found")
    assert bob.api.get(f"{FS}/shared").json()["shares"] == []
    assert admin_api.get(f"{FS}/groups/{group}/shares").json()["shares"] == []
    # Its owner is told it grants nothing (it looked like a working share), and cannot set
    # its level as if it did (sharing sweep: 200).
    membership(admin, group, alice.username, True)
    (mine,) = alice.api.get(f"{FS}/shares").json()["shares"]
    assert mine["grants"] is False and "earlier group" in mine["not_granting"]
    assert alice.api.get(f"{FS}/shares/{s['id']}").json()["grants"] is False
    assert_error(alice.api.put(f"{FS}/shares/{s['id']}", json={"level": "read"}), 409,
                 "share_not_granting")
    membership(admin, group, alice.username, False)
    # Shared again by its owner (one of the new group too), it is a share of the new group.
    membership(admin, group, alice.username, True)
    again = share(alice, "/old-team", "read", group=group)
    assert again["id"] != s["id"] and again["grants"] is True and "not_granting" not in again
    assert names(listing(bob, again["id"])) == ["secret.txt"]
    assert [x["id"] for x in admin_api.get(f"{FS}/groups/{group}/shares").json()["shares"]] \
        == [again["id"]]


def test_the_owner_lists_changes_and_revokes_shares(alice, bob, carol):
    mkdir(alice, "/album")
    photo = uploaded(alice, "/album", "cat.jpg", b"meow")
    s = share(alice, "/album", "read", user=bob)
    file_share = share(alice, "/album/cat.jpg", "read", user=carol)

    listed = alice.api.get(f"{FS}/shares").json()["shares"]
    assert {x["id"] for x in listed} == {s["id"], file_share["id"]}
    only = alice.api.get(f"{FS}/shares", params={"node_id": photo["id"]}).json()["shares"]
    assert [x["id"] for x in only] == [file_share["id"]]
    assert bob.api.get(f"{FS}/shares").json()["shares"] == []          # Bob owns none
    assert alice.api.get(f"{FS}/shares/{s['id']}").json()["grantee"]["name"] == bob.username
    assert bob.api.get(f"{FS}/shares/{s['id']}").json()["owner"] == alice.username
    assert_error(carol.api.get(f"{FS}/shares/{s['id']}"), 404, "share_not_found")

    # A recipient cannot change, revoke or reshare.
    assert_error(bob.api.put(f"{FS}/shares/{s['id']}", json={"level": "write"}), 404)
    assert_error(bob.api.delete(f"{FS}/shares/{s['id']}"), 404)
    album_id = s["node_id"]
    assert_error(bob.api.post(f"{FS}/shares", json={"node_id": album_id, "user": carol.username,
                                                    "level": "read"}), 404)

    assert_error(upload(bob, "/", "x.txt", b"x", share=s["id"]), 403, "read_only_share")
    changed = alice.api.put(f"{FS}/shares/{s['id']}", json={"level": "write"})
    assert changed.status_code == 200 and changed.json()["level"] == "write"
    assert upload(bob, "/", "x.txt", b"x", share=s["id"]).status_code == 201
    again = alice.api.post(f"{FS}/shares", json={"path": "/album", "user": bob.username,
                                                 "level": "read"})
    assert again.status_code == 200 and again.json()["id"] == s["id"]
    assert_error(upload(bob, "/", "y.txt", b"y", share=s["id"]), 403, "read_only_share")

    assert alice.api.delete(f"{FS}/shares/{s['id']}").status_code == 204
    assert_error(bob.api.get(f"{FS}/info", params={"share": s["id"]}), 404, "share_not_found")
    assert_error(alice.api.delete(f"{FS}/shares/{s['id']}"), 404, "share_not_found")

    # Mistakes, each named.
    def refused(body, status, code):
        assert_error(alice.api.post(f"{FS}/shares", json=body), status, code)
    refused({"path": "/album", "user": alice.username, "level": "read"}, 400, "invalid_target")
    refused({"path": "/album/cat.jpg", "user": bob.username, "level": "write"}, 409,
            "write_needs_folder")
    refused({"path": "/album", "user": "nobody-" + os.urandom(4).hex(), "level": "read"}, 404,
            "user_not_found")
    refused({"path": "/album", "user": bob.username, "level": "admin"}, 400, "invalid_field")
    refused({"path": "/album", "level": "read"}, 400, "missing_field")
    refused({"path": "/album", "node_id": album_id, "user": bob.username, "level": "read"}, 400,
            "missing_field")
    refused({"path": "/nowhere", "user": bob.username, "level": "read"}, 404, "path_not_found")
    # A deleted shared item disappears from "shared with me".
    assert carol.api.get(f"{FS}/shared").json()["shares"] != []
    assert alice.api.delete(f"{FS}/info/{photo['id']}").status_code == 204
    assert carol.api.get(f"{FS}/shared").json()["shares"] == []
    assert_error(carol.api.get(f"{FS}/info", params={"share": file_share["id"]}), 404)
    # A file's share stays read-only while the file is in the trash, and after its restore.
    error = assert_error(alice.api.put(f"{FS}/shares/{file_share['id']}",
                                       json={"level": "write"}), 409, "item_in_trash")
    assert "restore it first" in error["message"]
    assert alice.api.put(f"{FS}/shares/{file_share['id']}",
                         json={"level": "read"}).status_code == 200
    assert alice.api.post(f"{FS}/trash/{photo['id']}/restore").status_code == 200
    assert_error(alice.api.put(f"{FS}/shares/{file_share['id']}", json={"level": "write"}),
                 409, "write_needs_folder")
    assert alice.api.get(f"{FS}/shares/{file_share['id']}").json()["level"] == "read"


def test_what_a_recipient_writes_counts_against_the_owners_quota(limited):
    api = Api(limited.url)
    owner, writer = (with_storages(api, register_and_login(api)) for _ in range(2))
    mkdir(owner, "/inbox")
    uploaded(owner, "/", "own.bin", os.urandom(QUOTA // 2 + 1000))
    s = share(owner, "/inbox", "write", user=writer)["id"]
    half = os.urandom(QUOTA // 2)
    # The owner's quota is nearly full; the writer's own is empty, and does not count here.
    error = assert_error(upload(writer, "/", "big.bin", half, share=s), 413, "quota_exceeded")
    # Told it is the owner's quota, and not the owner's figures nor advice only they can follow.
    assert "owner's storage quota is full" in error["message"], error
    assert str(QUOTA) not in error["message"] and "details" not in error, error
    assert usage(writer) == 0
    uploaded(writer, "/", "big.bin", half)                  # in the writer's own tree: fits
    small = uploaded(writer, "/", "small.bin", b"x" * 1000, share=s)
    assert small["path"] == "/small.bin"
    assert usage(owner) == QUOTA // 2 + 2000 and usage(writer) == QUOTA // 2
    # An upload session through the share opens whatever size it declares (refusing sizes over
    # the owner's free space would let the writer search for it, byte by byte); the part that
    # does not fit is refused, in the same words, and nothing is charged for it.
    opened = writer.api.post(f"{FS}/uploads", params={"share": s},
                             json={"name": "huge.bin", "size": QUOTA})
    assert opened.status_code == 201, opened.text
    upload_id = opened.json()["upload_id"]
    error = assert_error(writer.api.put(f"{FS}/uploads/{upload_id}/parts/0",
                                        params={"share": s}, data=os.urandom(QUOTA)),
                         413, "quota_exceeded")
    assert "owner's storage quota is full" in error["message"] and str(QUOTA) not in \
        error["message"], error
    assert writer.api.delete(f"{FS}/uploads/{upload_id}", params={"share": s}
                             ).status_code == 204
    assert usage(owner) == QUOTA // 2 + 2000
    # The owner's own session is refused up front, with the figures (they are hers).
    assert_error(owner.api.post(f"{FS}/uploads", json={"name": "huge.bin", "size": QUOTA}),
                 413, "quota_exceeded")


def test_a_recipient_cannot_share_or_link_inside_a_share_and_is_told_so(alice, bob, carol):
    mkdir(alice, "/team")
    made = share(alice, "/team", "write", user=bob)
    s = made["id"]
    for method, path, body in (
            ("POST", f"{FS}/shares", {"path": "/", "user": carol.username, "level": "read"}),
            ("GET", f"{FS}/shares", None),
            ("GET", f"{FS}/shares/{s}", None),
            ("PUT", f"{FS}/shares/{s}", {"level": "read"}),
            ("DELETE", f"{FS}/shares/{s}", None),
            ("POST", f"{FS}/links", {"path": "/"}),
            ("GET", f"{FS}/links", None)):
        response = bob.api.request(method, path, params={"share": s}, json=body)
        error = assert_error(response, 400, "not_in_a_share")
        assert "owner" in error["message"], (method, path)
    # Nothing changed: the share is still bob's to use, at the level alice gave.
    assert alice.api.get(f"{FS}/shares/{s}").json()["level"] == "write"
    assert carol.api.get(f"{FS}/shared").json()["shares"] == []


def test_a_share_to_a_deleted_account_says_so_and_its_namesake_gets_nothing(api, admin, alice):
    admin_api, _ = admin
    mkdir(alice, "/kept")
    gone = register_and_login(api)
    made = share(alice, "/kept", "read", user=gone)
    assert "deleted" not in made["grantee"]
    assert admin_api.delete(f"/api/auth/users/{gone.username}").status_code == 204
    namesake = register_and_login(api, gone.username)
    again = share(alice, "/kept", "read", user=namesake)
    listed = {s["id"]: s["grantee"] for s in alice.api.get(f"{FS}/shares").json()["shares"]}
    assert listed[made["id"]] == {"kind": "user", "name": gone.username, "deleted": True}
    assert listed[again["id"]] == {"kind": "user", "name": gone.username}
    shown = alice.api.get(f"{FS}/shares/{made['id']}").json()
    assert shown["grantee"]["deleted"] is True
    assert [s["id"] for s in namesake.api.get(f"{FS}/shared").json()["shares"]] == [again["id"]]


def test_a_recipient_is_not_shown_the_owners_storages_when_they_cannot_take_a_write(alice, bob):
    mkdir(alice, "/drop")
    s = share(alice, "/drop", "write", user=bob)["id"]
    # Alice asks for more copies than she has storages: nothing of hers can take a write.
    assert alice.api.put(f"{FS}/settings", json={"durability": "raid1(3)"}).status_code == 200
    own = alice.api.post(f"{FS}/data", files={"file": ("a.txt", b"a")}, data={"path": "/drop"})
    assert own.status_code == 422 and "your" in own.json()["error"]["message"], own.text

    single = upload(bob, "/", "b.txt", b"b", share=s)
    error = assert_error(single, 422, own.json()["error"]["code"])
    assert "owner" in error["message"] and "your" not in error["message"], error
    assert alice.user_id not in single.text and "disk" not in single.text, single.text
    batch = bob.api.post(f"{FS}/batch", params={"share": s}, data={"path": "/"},
                         files=[("file", ("c.txt", b"c")), ("file", ("d.txt", b"d"))])
    assert batch.status_code == 207, batch.text
    for result in batch.json()["results"]:
        assert result["status"] == 422 and "owner" in result["error"]["message"], result
        assert alice.user_id not in batch.text, batch.text


def test_share_is_refused_on_every_route_that_works_in_your_own_files_only(alice, bob):
    """`?share=` on a route that does not work inside a share would be ignored, and the route
    would act on the caller's own files (a recipient emptying the share's trash emptied their
    own): every such route of the service refuses it, naming why, and nothing happens."""
    import re

    from cloudstrype.api.service import ADMINS, PUBLIC
    from cloudstrype.sharing.scope import SHARE_ROUTES

    import functions

    mkdir(alice, "/given")
    to_bob = share(alice, "/given", "write", user=bob)
    kept = uploaded(bob, "/", "bobs-precious.txt", b"mine")
    assert bob.api.delete(f"{FS}/info/{kept['id']}").status_code == 204
    before = bob.api.get(f"{FS}/trash").json()["items"]
    assert [item["name"] for item in before] == ["bobs-precious.txt"]
    own_tree = [(r.method, r.path) for r in functions.load_app("filesystem").route_info
                if (r.method, r.path.removeprefix("/api/filesystem")) not in SHARE_ROUTES
                and r.auth not in (ADMINS, PUBLIC)]
    assert ("DELETE", "/api/filesystem/trash") in own_tree and len(own_tree) >= 15
    for method, path in own_tree:
        url = re.sub(r"\{[a-z_]+\}", "0" * 24, path)
        answer = bob.api.request(method, url, params={"share": to_bob["id"]}, json={})
        error = assert_error(answer, 400, "not_in_a_share")
        assert "share" in error["message"], (method, path, error)
    assert bob.api.get(f"{FS}/trash").json()["items"] == before
    # A public link's routes say what a link takes instead.
    link = alice.api.post(f"{FS}/links", json={"path": "/given"})
    assert link.status_code == 201, link.text
    for suffix in ("", "/data"):
        error = assert_error(bob.api.get(f"{FS}/public/{link.json()['token']}{suffix}",
                                         params={"share": to_bob["id"]}), 400,
                             "not_in_a_share")
        assert "token" in error["message"] and "own files" not in error["message"], error
    # Inside the share, the routes that take it go on working.
    assert listing(bob, to_bob["id"])["children"] == []


def test_a_deleted_owners_shares_and_links_stop(api, admin, stack, bob):
    """Once an owner's account is deleted, nothing they shared grants anything: their shares
    are neither listed nor usable (no one could revoke them any more, and a writer would go on
    filling their storages), and their links no longer open."""
    import requests

    admin_api, _ = admin
    owner = with_storages(api, register_and_login(api))
    mkdir(owner, "/given")
    uploaded(owner, "/given", "doc.txt", b"the owner's")
    given = share(owner, "/given", "write", user=bob)
    link = owner.api.post(f"{FS}/links", json={"path": "/given/doc.txt"})
    assert link.status_code == 201, link.text
    opened = f"{stack.url}{FS}/public/{link.json()['token']}/data"
    assert requests.get(opened, timeout=30).content == b"the owner's"
    assert names(listing(bob, given["id"])) == ["doc.txt"]

    assert admin_api.delete(f"/api/auth/users/{owner.username}").status_code == 204
    assert_error(bob.api.get(f"{FS}/info", params={"share": given["id"]}), 404,
                 "share_not_found")
    assert_error(upload(bob, "/", "more.txt", b"x", share=given["id"]), 404, "share_not_found")
    assert given["id"] not in {s["id"] for s in bob.api.get(f"{FS}/shared").json()["shares"]}
    # The share itself, asked for by id, is gone for the recipient too (the CLI asks first).
    assert_error(bob.api.get(f"{FS}/shares/{given['id']}"), 404, "share_not_found")
    gone = assert_error(requests.get(opened, timeout=30), 410, "link_owner_gone")
    assert "no longer has an account" in gone["message"]


def test_a_writer_puts_a_large_file_into_a_share_through_an_upload_session(alice, bob, carol):
    mkdir(alice, "/team")
    s = share(alice, "/team", "write", user=bob)["id"]
    data = os.urandom(4 * 1024 * 1024 + 5)
    opened = bob.api.post(f"{FS}/uploads", params={"share": s},
                          json={"path": "/sub", "name": "big.bin", "size": len(data)})
    assert opened.status_code == 201, opened.text
    session = opened.json()
    upload_id = session["upload_id"]
    # Paths start at the shared folder; how the owner stores it is not shown, nor chosen.
    assert session["path"] == "/sub" and session["parts"] == 2
    assert "durability" not in session and "encryption" not in session
    # It counts among Bob's open sessions (max_open_uploads), not the owner's: she can neither
    # see nor abort it, so his could not block her uploads.
    open_sessions = lambda user: user.api.get(f"{FS}/usage").json()["open_uploads"]  # noqa: E731
    assert (open_sessions(alice), open_sessions(bob)) == (0, 1)
    assert_error(bob.api.post(f"{FS}/uploads", params={"share": s},
                              json={"name": "x", "size": 1, "durability": "raid1(1)"}),
                 403, "owners_scheme")
    part_size = session["part_size"]
    for part in range(2):
        sent = bob.api.put(f"{FS}/uploads/{upload_id}/parts/{part}", params={"share": s},
                           data=data[part * part_size:(part + 1) * part_size])
        assert sent.status_code == 200, sent.text

    # The session is Bob's, through this share only: not the owner's, not Bob's own tree's,
    # not another user's (whom the share does not include).
    assert_error(alice.api.get(f"{FS}/uploads/{upload_id}"), 404, "upload_not_found")
    assert_error(alice.api.post(f"{FS}/uploads/{upload_id}/commit", json={}), 404,
                 "upload_not_found")
    assert_error(bob.api.get(f"{FS}/uploads/{upload_id}"), 404, "upload_not_found")
    assert_error(bob.api.delete(f"{FS}/uploads/{upload_id}"), 404, "upload_not_found")
    assert_error(carol.api.get(f"{FS}/uploads/{upload_id}", params={"share": s}), 404,
                 "share_not_found")
    status = bob.api.get(f"{FS}/uploads/{upload_id}", params={"share": s}).json()
    assert status["received"] == [0, 1] and status["missing"] == []
    # Listed to Bob through the share only; the owner's list is hers.
    listed = bob.api.get(f"{FS}/uploads", params={"share": s}).json()["uploads"]
    assert [(u["upload_id"], u["path"], u["name"], u["parts"]) for u in listed] == [
        (upload_id, "/sub", "big.bin", 2)]
    assert bob.api.get(f"{FS}/uploads").json()["uploads"] == []
    assert alice.api.get(f"{FS}/uploads").json()["uploads"] == []
    assert_error(carol.api.get(f"{FS}/uploads", params={"share": s}), 404, "share_not_found")

    committed = bob.api.post(f"{FS}/uploads/{upload_id}/commit", params={"share": s},
                             json={"sha256": hashlib.sha256(data).hexdigest()})
    assert committed.status_code == 201, committed.text
    assert committed.json()["path"] == "/sub/big.bin"
    assert (open_sessions(alice), open_sessions(bob)) == (0, 0)
    assert bob.api.get(f"{FS}/uploads", params={"share": s}).json()["uploads"] == []
    # It is the owner's file, where the share put it, with every byte.
    mine = alice.api.get(f"{FS}/info", params={"path": "/team/sub/big.bin"}).json()
    assert mine["size"] == len(data) and mine["sha256"] == hashlib.sha256(data).hexdigest()
    got = b"".join(alice.api.get(f"{FS}/data/{mine['id']}", headers={
        "Range": f"bytes={start}-{min(len(data), start + part_size) - 1}"}).content
        for start in range(0, len(data), part_size))
    assert got == data
    assert_error(bob.api.get(f"{FS}/info", params={"path": "/sub/big.bin"}), 404)  # his own

    # Read only now: no new session, and the parts of an open one are refused.
    again = bob.api.post(f"{FS}/uploads", params={"share": s},
                         json={"name": "second.bin", "size": 10}).json()["upload_id"]
    assert alice.api.put(f"{FS}/shares/{s}", json={"level": "read"}).status_code == 200
    assert_error(bob.api.post(f"{FS}/uploads", params={"share": s},
                              json={"name": "third.bin", "size": 10}), 403, "read_only_share")
    assert_error(bob.api.put(f"{FS}/uploads/{again}/parts/0", params={"share": s},
                             data=b"0123456789"), 403, "read_only_share")
    # Revoked: the share is gone for Bob, and so is what he could do through it.
    assert alice.api.delete(f"{FS}/shares/{s}").status_code == 204
    assert_error(bob.api.post(f"{FS}/uploads/{again}/commit", params={"share": s}, json={}),
                 404, "share_not_found")
    names_there = [c["name"] for c in alice.api.get(
        f"{FS}/info", params={"path": "/team/sub"}).json()["children"]]
    assert names_there == ["big.bin"]


def test_what_a_recipient_writes_is_stored_apart_whether_or_not_the_owner_has_it(alice, bob):
    """Were a recipient's write to meet the owner's copy of the same bytes (content stored
    once), the upload would go differently (it read the owner's copy, and took longer): the
    recipient could tell what the owner stores. Every way in stores the recipient's bytes as a
    copy of their own, which outlives the owner's."""
    mkdir(alice, "/drop")
    s = share(alice, "/drop", "write", user=bob)["id"]
    small, big = os.urandom(100_000), os.urandom(4 * 1024 * 1024 + 10)
    mine = {"small": uploaded(alice, "/", "small.bin", small),
            "big": uploaded(alice, "/", "big.bin", big[:4 * 1024 * 1024])}
    session = alice.api.post(f"{FS}/uploads", json={"name": "big2.bin", "size": len(big)}).json()
    for part in range(2):
        assert alice.api.put(f"{FS}/uploads/{session['upload_id']}/parts/{part}",
                             data=big[part * 4 * 1024 * 1024:(part + 1) * 4 * 1024 * 1024]
                             ).status_code == 200
    assert alice.api.post(f"{FS}/uploads/{session['upload_id']}/commit", json={}
                          ).status_code == 201
    stored = usage(alice)

    # The same bytes through the share: one request, a batch, and an upload session.
    uploaded(bob, "/", "small.bin", small, share=s)
    assert usage(alice) == stored + len(small)
    batch = bob.api.post(f"{FS}/batch", params={"share": s}, data={"path": "/"},
                         files=[("file", ("a.bin", small)), ("file", ("b.bin", small))])
    assert batch.status_code == 207 and [r["status"] for r in batch.json()["results"]] == \
        [201, 201], batch.text
    # (a batch packs its small files: each blob counts its few bytes of encryption too)
    after_batch = usage(alice)
    assert stored + 3 * len(small) <= after_batch < stored + 3 * len(small) + 1000
    opened = bob.api.post(f"{FS}/uploads", params={"share": s},
                          json={"name": "big.bin", "size": len(big)}).json()
    for part in range(2):
        assert bob.api.put(f"{FS}/uploads/{opened['upload_id']}/parts/{part}",
                           params={"share": s},
                           data=big[part * 4 * 1024 * 1024:(part + 1) * 4 * 1024 * 1024]
                           ).status_code == 200
    assert bob.api.post(f"{FS}/uploads/{opened['upload_id']}/commit", params={"share": s},
                        json={}).status_code == 201
    assert usage(alice) == after_batch + len(big)

    # The owner's own copies go for good; what came through the share still reads whole.
    for node in mine.values():
        assert alice.api.delete(f"{FS}/info/{node['id']}").status_code == 204
    big2 = alice.api.get(f"{FS}/info", params={"path": "/big2.bin"}).json()
    assert alice.api.delete(f"{FS}/info/{big2['id']}").status_code == 204
    assert alice.api.delete(f"{FS}/trash").json()["complete"] is True
    listing_now = {c["name"]: c for c in alice.api.get(
        f"{FS}/info", params={"path": "/drop"}).json()["children"]}
    assert sorted(listing_now) == ["a.bin", "b.bin", "big.bin", "small.bin"]
    for name in ("small.bin", "a.bin", "b.bin"):
        assert alice.api.get(f"{FS}/data/{listing_now[name]['id']}").content == small
    half = 4 * 1024 * 1024
    got = b"".join(alice.api.get(f"{FS}/data/{listing_now['big.bin']['id']}", headers={
        "Range": f"bytes={first}-{last}"}).content
        for first, last in ((0, half - 1), (half, len(big) - 1)))
    assert got == big


def test_a_file_share_is_read_only_for_every_write_through_it(alice, bob):
    """A file share grants read only: a write through it is 403 read_only_share (what to ask
    for), not an answer about paths inside a file; with write on a folder above, the same
    write is about the path (a file holds nothing)."""
    mkdir(alice, "/files")
    top = uploaded(alice, "/files", "top.txt", b"one file")
    s = share(alice, "/files/top.txt", "read", user=bob)["id"]
    assert_error(mkdir(bob, "/x", share=s), 403, "read_only_share")
    assert_error(upload(bob, "/", "x.txt", b"x", share=s), 403, "read_only_share")
    assert_error(bob.api.post(f"{FS}/uploads", params={"share": s},
                              json={"path": "/", "name": "x.bin", "size": 5}), 403,
                 "read_only_share")
    read = bob.api.get(f"{FS}/data/{top['id']}", params={"share": s})
    assert read.status_code == 200 and read.content == b"one file"
    share(alice, "/files", "write", user=bob)
    assert_error(mkdir(bob, "/x", share=s), 409, "not_a_directory")


def test_a_promotion_lets_one_share_with_any_group_at_the_next_request(alice, admin, group):
    """An admin may share with any group (not only their own); promoted, with the token from
    before, the next request counts it, as the admin routes do (found by a README walk: it
    waited for the next sign-in), and a demotion likewise."""
    admin_api, _ = admin
    mkdir(alice, "/for-all")
    ask = {"path": "/for-all", "group": group, "level": "read"}
    assert_error(alice.api.post(f"{FS}/shares", json=ask), 403, "not_a_member")
    membership(admin, "admins", alice.username, True)
    try:
        made = alice.api.post(f"{FS}/shares", json=ask)
        assert made.status_code == 201, made.text
        assert_error(alice.api.post(f"{FS}/shares", json={**ask, "group": unique("nogroup")}),
                     404, "group_not_found")
    finally:
        membership(admin, "admins", alice.username, False)
    assert_error(alice.api.post(f"{FS}/shares", json={**ask, "level": "write"}), 403,
                 "not_a_member")


def session_through(recipient, share_id: str) -> str:
    """An upload session the recipient opens through the share, one 4 MiB part sent; its id."""
    opened = recipient.api.post(f"{FS}/uploads", params={"share": share_id},
                                json={"path": "/", "name": "big.bin",
                                      "size": 4 * 1024 * 1024 + 1})
    assert opened.status_code == 201, opened.text
    upload_id = opened.json()["upload_id"]
    sent = recipient.api.put(f"{FS}/uploads/{upload_id}/parts/0", params={"share": share_id},
                             data=os.urandom(4 * 1024 * 1024))
    assert sent.status_code == 200, sent.text
    assert recipient.api.get(f"{FS}/usage").json()["open_uploads"] >= 1
    return upload_id


def test_the_owner_sees_and_ends_the_uploads_recipients_have_open_in_their_tree(alice, bob):
    """A recipient's session counts in the owner's bytes, and the owner could neither see it
    nor end it but by revoking the share for everyone; a recipient who lost access (removed
    from the group, account deleted) left it there for a week (accounts sweep)."""
    mkdir(alice, "/inbox")
    s = share(alice, "/inbox", "write", user=bob)["id"]
    upload_id = session_through(bob, s)
    own = alice.api.get(f"{FS}/uploads").json()["uploads"]
    assert upload_id not in [u["upload_id"] for u in own]
    theirs = alice.api.get(f"{FS}/uploads", params={"recipients": "1"}).json()["uploads"]
    (listed,) = [u for u in theirs if u["upload_id"] == upload_id]
    assert (listed["share_id"], listed["name"], listed["path"]) == (s, "big.bin", "/")
    # Not a holder of it otherwise: no parts, no commit, no status without `recipients`.
    assert_error(alice.api.delete(f"{FS}/uploads/{upload_id}"), 404, "upload_not_found")
    assert_error(alice.api.delete(f"{FS}/uploads/{upload_id}", params={"recipients": "2"}),
                 400, "invalid_parameter")
    assert_error(bob.api.get(f"{FS}/uploads", params={"recipients": "1", "share": s}), 400,
                 "invalid_parameter")
    assert bob.api.get(f"{FS}/uploads", params={"recipients": "1"}).json()["uploads"] == []

    ended = alice.api.delete(f"{FS}/uploads/{upload_id}", params={"recipients": "1"})
    assert ended.status_code == 204, ended.text
    assert bob.api.get(f"{FS}/usage").json()["open_uploads"] == 0
    assert_error(bob.api.put(f"{FS}/uploads/{upload_id}/parts/1", params={"share": s},
                             data=b"x"), 404, "upload_not_found")
    assert alice.api.get(f"{FS}/uploads", params={"recipients": "1"}).json()["uploads"] == []


def test_a_share_made_read_only_ends_the_uploads_under_way_through_it(alice, bob):
    """As a revoke does: the writer can no longer commit or abort them, and their parts are the
    owner's bytes (found by an attacker sweep: they stayed counted for a week)."""
    mkdir(alice, "/drop")
    s = share(alice, "/drop", "write", user=bob)["id"]
    upload_id = session_through(bob, s)
    assert bob.api.get(f"{FS}/usage").json()["open_uploads"] == 1

    assert alice.api.put(f"{FS}/shares/{s}", json={"level": "read"}).status_code == 200
    # Closed at once (its parts are freed by the scheduled sweep, as an abort's are).
    assert bob.api.get(f"{FS}/usage").json()["open_uploads"] == 0
    assert_error(bob.api.get(f"{FS}/uploads/{upload_id}", params={"share": s}), 403,
                 "read_only_share")


def test_sharing_again_read_only_ends_the_uploads_under_way_as_put_does(alice, bob):
    """POST /shares with the same grantee sets the level (what `cloudstrype share` without
    --write sends): made read-only so, the session stayed, and came back whole (and was
    committed) when the share was made writable again (sharing sweep)."""
    mkdir(alice, "/drop2")
    s = share(alice, "/drop2", "write", user=bob)["id"]
    upload_id = session_through(bob, s)

    again = alice.api.post(f"{FS}/shares", json={"path": "/drop2", "user": bob.username,
                                                  "level": "read"})
    assert again.status_code == 200 and again.json()["id"] == s, again.text
    assert bob.api.get(f"{FS}/usage").json()["open_uploads"] == 0
    assert alice.api.put(f"{FS}/shares/{s}", json={"level": "write"}).status_code == 200
    assert_error(bob.api.get(f"{FS}/uploads/{upload_id}", params={"share": s}), 404,
                 "upload_not_found")


def test_an_item_deleted_for_good_takes_its_shares_links_and_sessions_with_it(alice, bob):
    """They stayed: the shares and links listed as active though they opened nothing, and the
    sessions recipients had open through them held the owner's bytes for a week, which
    neither could see or abort (sharing sweep). In the trash they are kept (restored, it is
    shared again as it was)."""
    mkdir(alice, "/gone")
    uploaded(alice, "/gone", "a.txt", b"a")
    s = share(alice, "/gone", "write", user=bob)["id"]
    link = alice.api.post(f"{FS}/links", json={"path": "/gone/a.txt"})
    assert link.status_code == 201, link.text
    session_through(bob, s)

    folder = alice.api.get(f"{FS}/info", params={"path": "/gone"}).json()["id"]
    assert alice.api.delete(f"{FS}/info/{folder}").status_code == 204
    # In the trash: kept.
    assert [x["id"] for x in alice.api.get(f"{FS}/shares").json()["shares"]] == [s]
    assert bob.api.get(f"{FS}/usage").json()["open_uploads"] == 1
    (item,) = alice.api.get(f"{FS}/trash").json()["items"]
    assert alice.api.delete(f"{FS}/trash/{item['id']}").status_code == 204

    assert alice.api.get(f"{FS}/shares").json()["shares"] == []
    assert alice.api.get(f"{FS}/links").json()["links"] == []
    assert bob.api.get(f"{FS}/usage").json()["open_uploads"] == 0
    assert_error(bob.api.get(f"{FS}/shares/{s}"), 404, "share_not_found")


def test_listings_of_shares_and_links_keep_to_their_newest_and_say_so(alice, bob):
    """Unbounded, a listing outgrew a response's 6 MB (23,000 links, 30,000 shares): the owner
    could not list them, nor the recipient anything shared with them."""
    from cloudstrype.sharing.store import MAX_LISTED
    count = MAX_LISTED + 2
    made = []
    for first in range(0, count, 500):
        names = [f"f{n:05d}.txt" for n in range(first, min(count, first + 500))]
        answer = alice.api.post("/api/filesystem/batch", data={"path": "/many"},
                                files=[("file", (name, name.encode())) for name in names])
        assert answer.status_code == 207, answer.text
        made += [r["file"]["id"] for r in answer.json()["results"]]
    shares = []
    for node_id in made:
        shared = alice.api.post("/api/filesystem/shares", json={
            "node_id": node_id, "user": bob.username, "level": "read"})
        assert shared.status_code == 201, shared.text
        shares.append(shared.json()["id"])
    links = []
    for _ in range(count):
        linked = alice.api.post("/api/filesystem/links", json={"node_id": made[0]})
        assert linked.status_code == 201, linked.text
        links.append(linked.json()["id"])

    own = alice.api.get("/api/filesystem/shares").json()
    assert own["truncated"] is True and len(own["shares"]) == MAX_LISTED
    assert {s["id"] for s in own["shares"]} == set(shares[2:])          # the newest
    mine = bob.api.get("/api/filesystem/shared").json()
    assert mine["truncated"] is True and {s["id"] for s in mine["shares"]} == set(shares[2:])
    listed = alice.api.get("/api/filesystem/links").json()
    assert listed["truncated"] is True and len(listed["links"]) == MAX_LISTED
    # (A link's time is whole seconds: of those made in the same second, any may be kept.)
    assert links[-1] in {x["id"] for x in listed["links"]} <= set(links)
    one = alice.api.get("/api/filesystem/shares", params={"node_id": made[0]}).json()
    assert (one["truncated"], [s["id"] for s in one["shares"]]) == (False, [shares[0]])
