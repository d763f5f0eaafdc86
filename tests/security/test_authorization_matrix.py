"""The authorization matrix (issue 14, deliverable 4): every route of every service, asked by
every role, through HTTP against the running stack; each answer is the expected one.

Roles (tests/security/authz_world.py): the owner of the items; a reader and a writer (the
owner's /shared folder shared with them as a user); a group member (the group has a write share
of /shared); a removed group member (had access through the group, then the admin took them out:
no access at once); a stranger (another signed-in user); the admin (a member of `admins`, who
manages people, not other users' files); a link holder (the token of a link to /shared, and no
account: tries it as a bearer token on signed-in routes); anonymous (no token).

The rule the expectations keep, never weakened to fit an answer:
- no token, or something that is not a token: 401, before anything is looked up;
- another user's item (id, share, trash item, session, chunk, blob, storage, member, link): 404,
  the same answer as for one that does not exist, never 403 (no existence leak);
- inside a share: reading needs a grant now (404 `share_not_found` otherwise); ids and paths
  outside the share 404; writing needs `write`: a reader gets 403 `read_only_share` before any
  id is looked up, so that answer tells nothing about the item;
- admin-only routes: 403 for other signed-in users (the route's existence is public);
- a refused attempt changes nothing (checked after each refusal on a mutating row);
- public routes answer the same to everyone: the link token (or the password) is the authority.

The table is data: (method, route template, what this row checks, how to make the item under
test, how each role asks about it) -> status per role. `test_every_route_has_a_row` fails when
a service gains a route without a row here.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import quote

import pytest

import functions
from tests.security.authz_world import (
    ACCOUNTS,
    ADMIN,
    ANONYMOUS,
    FS,
    LINK,
    MEMBER,
    OWNER,
    READER,
    ROLES,
    STRANGER,
    WRITER,
    World,
    build,
)
from tests.support import PASSWORD, unique

GRANTED = (READER, WRITER, MEMBER)      # the three roles a share of /shared grants now


@dataclass
class Ask:
    """One request: path parameters, query, body, headers (an Authorization here wins)."""
    path: dict = field(default_factory=dict)
    params: dict | None = None
    json: object = None
    data: bytes | dict | None = None
    files: dict | list | None = None
    headers: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Row:
    method: str
    route: str
    case: str
    expect: dict                                   # role -> status, or a set of statuses
    ask: Callable[[World, str, object], Ask]       # (world, role, item) -> the request
    make: Callable[[World], object] = lambda w: None   # the item under test
    # The item after a refused attempt: still as it was (mutating rows).
    intact: Callable[[World, object], bool] | None = None
    # A success used the item up: make another for the next role.
    consumes: bool = False
    # What must hold after every answer, success or not.
    then: Callable[[World, object], bool] | None = None
    # What a successful answer must say to this role: (world, role, item, response) -> a
    # problem, or None (routes that answer 200 and put each item's own status inside).
    says: Callable[[World, str, object, object], str | None] | None = None

    @property
    def id(self) -> str:
        return f"{self.method} {self.route} [{self.case}]"


# -- expectations --------------------------------------------------------------------------------

def everyone(status) -> dict:
    return dict.fromkeys(ROLES, status)


def signed_in(status) -> dict:
    """Any account, on its own things."""
    return {**dict.fromkeys(ACCOUNTS, status), LINK: 401, ANONYMOUS: 401}


def owner_only(status) -> dict:
    return {**signed_in(404), OWNER: status}


def admins_only(status) -> dict:
    return {**signed_in(403), ADMIN: status}


def in_a_share(status) -> dict:
    """With ?share= naming a share the role is not granted: `status`; the owner, naming its own
    share, is told to leave it out (400 own_share)."""
    return {**signed_in(status), OWNER: 400}


def share_read(status) -> dict:
    """With ?share= (each role naming its grant, see World.share_of): the granted roles."""
    return {**in_a_share(404), **dict.fromkeys(GRANTED, status)}


def share_write(status) -> dict:
    return {**share_read(status), READER: 403}


def granted(status, others) -> dict:
    return {**in_a_share(others), **dict.fromkeys(GRANTED, status)}


# -- how roles ask -------------------------------------------------------------------------------

def plain(path=None, **kw) -> Callable:
    """The same request from every role; `path` maps a path parameter to a function of the
    item."""
    return lambda w, role, item: Ask(path={k: f(item) for k, f in (path or {}).items()}, **kw)


def in_share(path=None, params=None, **kw) -> Callable:
    """Every role names its share (?share=) and asks about the item."""
    def ask(w, role, item):
        return Ask(path={k: f(item) for k, f in (path or {}).items()},
                   params={"share": w.share_of(role), **(params or {})}, **kw)
    return ask


def node_id(item) -> str:
    return item["id"]


def exists(w: World, route: str) -> bool:
    return w.owner.api.get(route).status_code == 200


def read_answer(response) -> tuple[dict, dict[str, bytes]]:
    """A batch read's results and the files' bytes by id."""
    from cloudstrype.api.body import parse_multipart
    boundary = response.headers["Content-Type"].split("boundary=", 1)[1].encode()
    parts = parse_multipart(response.content, boundary)
    results = next(p for p in parts if p.name == "results")
    return json.loads(results.data), {p.name: p.data for p in parts if p.name != "results"}


def reads_for(allowed_roles) -> Callable:
    """A batch read of the item: its bytes to `allowed_roles`, to the others a 404 of their
    own for it and no bytes (the same answer as for an id that does not exist)."""
    def says(w, role, item, response):
        results, data = read_answer(response)
        [result] = results["results"]
        expected = 200 if role in allowed_roles else 404
        if result["status"] != expected:
            return f"the file's own status is {result['status']}, expected {expected}"
        if (item["id"] in data) != (expected == 200):
            return "its bytes were sent" if expected != 200 else "its bytes are missing"
        return None
    return says


def lists_session_to(holder: str) -> Callable:
    """GET /uploads: the session under test is listed to `holder`, and to no one else."""
    def check(w, role, session, response):
        listed = {u["upload_id"] for u in response.json()["uploads"]}
        if (session["upload_id"] in listed) != (role == holder):
            return f"session listed to {role}: {session['upload_id'] in listed}"
        return None
    return check


def node_intact(w, node) -> bool:
    info = w.owner.api.get(f"{FS}/info/{node['id']}")
    return info.status_code == 200 and info.json()["name"] == node["name"]


def old_version_kept(w, node) -> bool:
    info = w.owner.api.get(f"{FS}/info/{node['id']}")
    return info.status_code == 200 and node["old"] in [v["version"]
                                                        for v in info.json()["versions"]]


# -- the table -----------------------------------------------------------------------------------

M = "/api"
AUTH = "/api/auth"
CLOUD = "/api/cloud"
CHUNK = "/api/chunk"
ARRAY = "/api/array"

ROWS: list[Row] = [
    # meta: public
    Row("GET", f"{M}/health", "public", everyone(200), plain()),
    Row("GET", f"{M}/openapi.json", "public", everyone(200), plain()),
    Row("GET", f"{M}/config", "public", everyone(200), plain()),

    # auth: public sign-up and sign-in (the password or token in the body is the authority)
    Row("POST", f"{AUTH}/register", "anyone may sign up", everyone(201),
        lambda w, role, item: Ask(json={"username": (name := unique("reg")),
                                        "email": f"{name}@example.org", "password": PASSWORD})),
    Row("POST", f"{AUTH}/confirm", "a wrong code confirms nobody, whoever asks", everyone(400),
        plain(json={"username": "nobody-" + "x" * 8, "code": "000000"})),
    Row("POST", f"{AUTH}/login", "the owner's password signs in as the owner", everyone(200),
        lambda w, role, item: Ask(json={"username": w.owner.username,
                                        "password": w.owner.password})),
    # A fresh account each time: failed attempts slow an account down (429).
    Row("POST", f"{AUTH}/login", "a wrong password, whoever asks", everyone(401),
        lambda w, role, item: Ask(json={"username": w.register(), "password": "wrong"})),
    Row("POST", f"{AUTH}/refresh", "a refresh token is its own authority", everyone(200),
        lambda w, role, item: Ask(json={"refresh_token": item}),
        make=lambda w: w.api.post(f"{AUTH}/login", json={
            "username": w.owner.username, "password": w.owner.password}).json()["refresh_token"],
        consumes=True),
    Row("POST", f"{AUTH}/logout", "each account ends its own sign-in", signed_in(204),
        lambda w, role, item: Ask(headers={"Authorization": f"Bearer {w.fresh_login(role)}"}
                                  if role in ACCOUNTS else {})),
    Row("POST", f"{AUTH}/password", "one's own only: a wrong current password", signed_in(401),
        plain(json={"old_password": "not-the-password", "new_password": "An0ther-Passw0rd"})),
    Row("GET", f"{AUTH}/me", "own", signed_in(200), plain()),
    Row("GET", f"{AUTH}/validate", "own", signed_in(200), plain()),
    Row("GET", f"{AUTH}/users", "admins", admins_only(200), plain()),
    Row("DELETE", f"{AUTH}/users/{{username}}", "admins", admins_only(204),
        plain(path={"username": lambda item: item}),
        make=lambda w: w.register(),
        consumes=True),
    Row("GET", f"{AUTH}/groups", "admins", admins_only(200), plain()),
    Row("POST", f"{AUTH}/groups", "admins", admins_only(201),
        lambda w, role, item: Ask(json={"name": unique("grp")})),
    Row("DELETE", f"{AUTH}/groups/{{group}}", "admins", admins_only(204),
        plain(path={"group": lambda item: item}), make=lambda w: w.group_with(),
        consumes=True),
    Row("GET", f"{AUTH}/groups/{{group}}/members", "admins", admins_only(200),
        plain(path={"group": lambda item: item}), make=lambda w: w.group),
    Row("PUT", f"{AUTH}/groups/{{group}}/members/{{username}}", "admins: nobody joins by "
        "themselves", admins_only(204),
        lambda w, role, item: Ask(path={"group": item, "username": (
            w.users[role].username if role in ACCOUNTS else w.users[STRANGER].username)}),
        make=lambda w: w.group_with(), consumes=True),
    Row("DELETE", f"{AUTH}/groups/{{group}}/members/{{username}}", "admins", admins_only(204),
        lambda w, role, item: Ask(path={"group": item[0], "username": item[1]}),
        make=lambda w: (w.group_with(w.users[STRANGER].username), w.users[STRANGER].username),
        consumes=True),

    # cloud: storages and connections are each user's own
    Row("GET", f"{CLOUD}/providers", "any account", signed_in(200), plain()),
    Row("POST", f"{CLOUD}/storages", "into one's own account", signed_in(201),
        lambda w, role, item: Ask(json={"kind": "local", "name": unique("s"),
                                        "config": {"path": unique("authz-new")}})),
    Row("GET", f"{CLOUD}/storages", "own list", signed_in(200), plain()),
    Row("GET", f"{CLOUD}/storages/{{storage_id}}", "the owner's storage", owner_only(200),
        plain(path={"storage_id": node_id}), make=lambda w: w.items["storage"]),
    Row("DELETE", f"{CLOUD}/storages/{{storage_id}}", "the owner's storage", owner_only(204),
        plain(path={"storage_id": node_id}), make=lambda w: w.storage(), consumes=True,
        intact=lambda w, s: exists(w, f"{CLOUD}/storages/{s['id']}")),
    Row("POST", f"{CLOUD}/storages/{{storage_id}}/drain", "the owner's storage", owner_only(200),
        plain(path={"storage_id": node_id}), make=lambda w: w.storage(), consumes=True,
        intact=lambda w, s: w.owner.api.get(f"{CLOUD}/storages/{s['id']}").json()["status"]
        == s["status"]),
    Row("DELETE", f"{CLOUD}/storages/{{storage_id}}/drain", "the owner's storage",
        owner_only(200), plain(path={"storage_id": node_id}),
        make=lambda w: w.draining_storage(), consumes=True,
        intact=lambda w, s: w.owner.api.get(f"{CLOUD}/storages/{s['id']}").json()["status"]
        == "draining"),
    Row("GET", f"{CLOUD}/oauth/{{provider}}/authorize", "starts one's own", signed_in(200),
        plain(path={"provider": lambda item: "dropbox"})),
    Row("GET", f"{CLOUD}/oauth/{{provider}}/callback", "the provider's redirect: state and code "
        "are the authority", everyone(302),
        lambda w, role, item: Ask(path={"provider": "dropbox"},
                                  params=dict(p.split("=", 1) for p in
                                              item["callback"].split("?", 1)[1].split("&"))),
        make=lambda w: w.oauth(approved=False), consumes=True),
    Row("POST", f"{CLOUD}/oauth/{{provider}}/finish", "only who started finishes",
        owner_only(201),
        lambda w, role, item: Ask(path={"provider": "dropbox"},
                                  json={"state": item["state"], "code": item["finish_code"]}),
        make=lambda w: w.oauth(), consumes=True),
    Row("POST", f"{CLOUD}/{{chunk_id}}", "the owner's blob id: others write their own, the "
        "owner's stays", {**signed_in(201), OWNER: 409},
        plain(path={"chunk_id": node_id}, data=b"other bytes"), make=lambda w: w.blob("cloud"),
        intact=lambda w, b: w.owner.api.get(f"{CLOUD}/{b['id']}").content == b["data"]),
    Row("GET", f"{CLOUD}/{{chunk_id}}", "the owner's blob", owner_only(200),
        plain(path={"chunk_id": node_id}), make=lambda w: w.items["blob"]),
    Row("DELETE", f"{CLOUD}/{{chunk_id}}", "the owner's blob", owner_only(204),
        plain(path={"chunk_id": node_id}), make=lambda w: w.blob("cloud"), consumes=True,
        intact=lambda w, b: exists(w, f"{CLOUD}/{b['id']}")),

    # chunk
    Row("POST", CHUNK, "into one's own account", signed_in(201),
        plain(files={"file": ("c", b"some chunk")})),
    Row("GET", f"{CHUNK}/{{chunk_id}}", "the owner's chunk", owner_only(200),
        plain(path={"chunk_id": lambda c: c["chunk_id"]}), make=lambda w: w.items["chunk"]),
    Row("GET", f"{CHUNK}/{{chunk_id}}/info", "the owner's chunk", owner_only(200),
        plain(path={"chunk_id": lambda c: c["chunk_id"]}), make=lambda w: w.items["chunk"]),
    Row("DELETE", f"{CHUNK}/{{chunk_id}}", "the owner's chunk", owner_only(204),
        plain(path={"chunk_id": lambda c: c["chunk_id"]}), make=lambda w: w.chunk(),
        consumes=True, intact=lambda w, c: exists(w, f"{CHUNK}/{c['chunk_id']}/info")),
    Row("POST", f"{CHUNK}/{{chunk_id}}/repair", "the owner's chunk", owner_only(200),
        plain(path={"chunk_id": lambda c: c["chunk_id"]}), make=lambda w: w.items["chunk"]),

    # array: members and blobs on them
    Row("GET", f"{ARRAY}/members", "own list", signed_in(200), plain()),
    Row("GET", f"{ARRAY}/members/{{member_id}}", "the owner's member", owner_only(200),
        plain(path={"member_id": lambda m: m}), make=lambda w: w.items["member_id"]),
    Row("DELETE", f"{ARRAY}/members/{{member_id}}", "the owner's member", owner_only(204),
        plain(path={"member_id": lambda m: m}), make=lambda w: w.fake_member(), consumes=True,
        intact=lambda w, m: exists(w, f"{ARRAY}/members/{m}")),
    Row("POST", f"{ARRAY}/members/{{member_id}}/drain", "the owner's member", owner_only(200),
        plain(path={"member_id": lambda m: m}), make=lambda w: w.fake_member(), consumes=True,
        intact=lambda w, m: w.owner.api.get(f"{ARRAY}/members/{m}").json()["status"]
        != "draining"),
    Row("DELETE", f"{ARRAY}/members/{{member_id}}/drain", "the owner's member",
        owner_only(200), plain(path={"member_id": lambda m: m}),
        make=lambda w: w.draining_member(), consumes=True,
        intact=lambda w, m: w.owner.api.get(f"{ARRAY}/members/{m}").json()["status"]
        == "draining"),
    Row("POST", f"{ARRAY}/members/{{member_id}}/verify", "the owner's member", owner_only(200),
        plain(path={"member_id": lambda m: m}), make=lambda w: w.items["member_id"]),
    Row("POST", f"{ARRAY}/{{chunk_id}}", "the owner's blob id: the owner's stays",
        {**signed_in(422), OWNER: 409},
        plain(path={"chunk_id": node_id}, data=b"other bytes"),
        make=lambda w: w.items["array_blob"],
        intact=lambda w, b: w.owner.api.get(f"{ARRAY}/{b['id']}").content == b["data"]),
    Row("GET", f"{ARRAY}/{{chunk_id}}", "the owner's blob", owner_only(200),
        plain(path={"chunk_id": node_id}), make=lambda w: w.items["array_blob"]),
    Row("DELETE", f"{ARRAY}/{{chunk_id}}", "the owner's blob", owner_only(204),
        plain(path={"chunk_id": node_id}), make=lambda w: w.blob("array"), consumes=True,
        intact=lambda w, b: exists(w, f"{ARRAY}/{b['id']}")),

    # filesystem, one's own tree (no ?share=): the owner's paths and ids are nobody else's
    Row("GET", f"{FS}/info", "the owner's path, in each one's own tree", owner_only(200),
        plain(params={"path": "/shared"})),
    Row("GET", f"{FS}/info/{{file_id}}", "the owner's file", owner_only(200),
        plain(path={"file_id": node_id}), make=lambda w: w.items["file"]),
    Row("POST", f"{FS}/info/{{file_id}}", "rename the owner's file", owner_only(200),
        lambda w, role, item: Ask(path={"file_id": item["id"]}, json={"name": unique(role)}),
        make=lambda w: w.upload("/shared"), consumes=True, intact=node_intact),
    Row("DELETE", f"{FS}/info/{{file_id}}", "the owner's file", owner_only(204),
        plain(path={"file_id": node_id}), make=lambda w: w.upload("/shared"), consumes=True,
        intact=node_intact),
    Row("POST", f"{FS}/dirs", "in one's own tree", signed_in(201),
        lambda w, role, item: Ask(json={"path": f"/{unique(role)}"})),
    Row("POST", f"{FS}/data", "into one's own tree", signed_in(201),
        lambda w, role, item: Ask(files={"file": ("x.txt", b"x")},
                                  data={"path": "/", "name": unique(role)})),
    Row("POST", f"{FS}/batch", "into one's own tree", signed_in(207),
        lambda w, role, item: Ask(files=[("file", (unique(role), b"x"))], data={"path": "/"})),
    Row("GET", f"{FS}/data/{{file_id}}", "the owner's file", owner_only(200),
        plain(path={"file_id": node_id}), make=lambda w: w.items["file"]),
    Row("POST", f"{FS}/read", "the owner's file, among many", signed_in(200),
        lambda w, role, item: Ask(json={"ids": [item["id"]]}),
        make=lambda w: w.items["file"], says=reads_for({OWNER})),
    Row("DELETE", f"{FS}/info/{{file_id}}/versions/{{version_id}}",
        "the owner's earlier version", owner_only(204),
        plain(path={"file_id": node_id, "version_id": lambda item: item["old"]}),
        make=lambda w: w.versioned("/shared"), consumes=True, intact=old_version_kept),
    Row("DELETE", f"{FS}/info/{{file_id}}/versions/{{version_id}}",
        "an earlier version in a share: versions are the owner's", signed_in(400),
        in_share(path={"file_id": node_id, "version_id": lambda item: item["old"]}),
        make=lambda w: w.versioned("/shared"), intact=old_version_kept),
    Row("GET", f"{FS}/chunks/{{file_id}}", "where the owner's file is stored", owner_only(200),
        plain(path={"file_id": node_id}), make=lambda w: w.items["file"]),
    Row("GET", f"{FS}/chunks/{{file_id}}", "a file in a share: its storage is the owner's",
        signed_in(400), in_share(path={"file_id": node_id}), make=lambda w: w.items["file"]),

    # filesystem inside the share (?share=: each role names its grant, World.share_of)
    Row("GET", f"{FS}/info", "the shared folder", share_read(200),
        in_share(params={"path": "/"})),
    Row("GET", f"{FS}/info", "the owner's /private, named inside the share", in_a_share(404),
        in_share(params={"path": "/private"})),
    Row("GET", f"{FS}/info", "a path climbing out of the share", granted(400, 404),
        in_share(params={"path": "/../private"})),
    Row("GET", f"{FS}/info/{{file_id}}", "a file in the share", share_read(200),
        in_share(path={"file_id": node_id}), make=lambda w: w.items["file"]),
    Row("GET", f"{FS}/info/{{file_id}}", "the owner's file outside the share", in_a_share(404),
        in_share(path={"file_id": node_id}), make=lambda w: w.items["secret"]),
    Row("POST", f"{FS}/info/{{file_id}}", "rename a file in the share", share_write(200),
        lambda w, role, item: Ask(path={"file_id": item["id"]}, json={"name": unique(role)},
                                  params={"share": w.share_of(role)}),
        make=lambda w: w.upload("/shared"), consumes=True, intact=node_intact),
    # The path is the share's: "/elsewhere" is made inside it, never the owner's /elsewhere.
    Row("POST", f"{FS}/info/{{file_id}}", "move a file to '/elsewhere' (the share's, not the "
        "owner's)", share_write(200),
        in_share(path={"file_id": node_id}, json={"path": "/elsewhere"}),
        make=lambda w: w.upload("/shared"), then=lambda w, node: w.owner.api.get(
            f"{FS}/info/{node['id']}").json()["path"].startswith("/shared/")),
    Row("POST", f"{FS}/info/{{file_id}}", "move a file out of the share by '..'",
        {**share_write(400), READER: 403},
        in_share(path={"file_id": node_id}, json={"path": "/../private"}),
        make=lambda w: w.upload("/shared"), intact=lambda w, node: w.owner.api.get(
            f"{FS}/info/{node['id']}").json().get("path", "").startswith("/shared/")),
    Row("POST", f"{FS}/info/{{file_id}}", "rename the shared folder itself", share_write(403),
        in_share(path={"file_id": node_id}, json={"name": "renamed"}),
        make=lambda w: w.items["shared"], intact=node_intact),
    Row("POST", f"{FS}/info/{{file_id}}", "rename the owner's file outside the share",
        {**in_a_share(404), READER: 403},
        in_share(path={"file_id": node_id}, json={"name": "taken"}),
        make=lambda w: w.items["secret"], intact=node_intact),
    Row("DELETE", f"{FS}/info/{{file_id}}", "a file in the share", share_write(204),
        in_share(path={"file_id": node_id}), make=lambda w: w.upload("/shared"),
        consumes=True, intact=node_intact),
    Row("DELETE", f"{FS}/info/{{file_id}}", "the owner's file outside the share",
        {**in_a_share(404), READER: 403}, in_share(path={"file_id": node_id}),
        make=lambda w: w.upload("/private"), intact=node_intact),
    Row("POST", f"{FS}/dirs", "a folder in the share", share_write(201),
        lambda w, role, item: Ask(json={"path": f"/{unique(role)}"},
                                  params={"share": w.share_of(role)})),
    Row("POST", f"{FS}/data", "a file into the share", share_write(201),
        lambda w, role, item: Ask(files={"file": ("x.txt", b"x")},
                                  data={"path": "/", "name": unique(role)},
                                  params={"share": w.share_of(role)})),
    Row("POST", f"{FS}/batch", "files into the share", share_write(207),
        lambda w, role, item: Ask(files=[("file", (unique(role), b"x"))], data={"path": "/"},
                                  params={"share": w.share_of(role)})),
    Row("GET", f"{FS}/data/{{file_id}}", "a file in the share", share_read(200),
        in_share(path={"file_id": node_id}), make=lambda w: w.items["file"]),
    Row("GET", f"{FS}/data/{{file_id}}", "an earlier version: the owner's only",
        share_read(403),
        lambda w, role, item: Ask(path={"file_id": item["id"]}, params={
            "share": w.share_of(role), "version": item["version"]}),
        make=lambda w: w.items["file"]),
    Row("GET", f"{FS}/data/{{file_id}}", "the owner's file outside the share", in_a_share(404),
        in_share(path={"file_id": node_id}), make=lambda w: w.items["secret"]),
    Row("POST", f"{FS}/read", "a file in the share, among many", share_read(200),
        lambda w, role, item: Ask(json={"ids": [item["id"]]},
                                  params={"share": w.share_of(role)}),
        make=lambda w: w.items["file"], says=reads_for(set(GRANTED))),
    Row("POST", f"{FS}/read", "the owner's file outside the share, among many",
        granted(200, 404),
        lambda w, role, item: Ask(json={"ids": [item["id"]]},
                                  params={"share": w.share_of(role)}),
        make=lambda w: w.items["secret"], says=reads_for(set())),

    # filesystem: upload sessions, settings, usage, the trash: each one's own only
    Row("GET", f"{FS}/uploads", "one's own open sessions", signed_in(200), plain(),
        make=lambda w: w.items["session"], says=lists_session_to(OWNER)),
    Row("GET", f"{FS}/uploads", "one's own sessions in the share", share_write(200),
        in_share(), make=lambda w: w.writer_session(), says=lists_session_to(WRITER)),
    Row("POST", f"{FS}/uploads", "in one's own tree", signed_in(201),
        lambda w, role, item: Ask(json={"path": "/", "name": unique(role), "size": 1})),
    # Through a share: each granted writer opens their own; a session is its opener's alone,
    # through the share it was opened in (the group member, another share: 404).
    Row("POST", f"{FS}/uploads", "a session in the share", share_write(201),
        in_share(json={"path": "/", "name": "n", "size": 1})),
    Row("GET", f"{FS}/uploads/{{upload_id}}", "the owner's session", owner_only(200),
        plain(path={"upload_id": lambda s: s["upload_id"]}), make=lambda w: w.items["session"]),
    Row("PUT", f"{FS}/uploads/{{upload_id}}/parts/{{part}}", "the owner's session",
        owner_only(200), lambda w, role, item: Ask(
            path={"upload_id": item["upload_id"], "part": "0"}, data=b"9876543210"),
        make=lambda w: w.session(), consumes=True,
        intact=lambda w, s: w.owner.api.get(f"{FS}/uploads/{s['upload_id']}").json()
        ["received"] == []),
    Row("POST", f"{FS}/uploads/{{upload_id}}/commit", "the owner's session", owner_only(201),
        plain(path={"upload_id": lambda s: s["upload_id"]}),
        make=lambda w: w.session(filled=True), consumes=True,
        intact=lambda w, s: exists(w, f"{FS}/uploads/{s['upload_id']}")),
    Row("DELETE", f"{FS}/uploads/{{upload_id}}", "the owner's session", owner_only(204),
        plain(path={"upload_id": lambda s: s["upload_id"]}), make=lambda w: w.session(),
        consumes=True, intact=lambda w, s: exists(w, f"{FS}/uploads/{s['upload_id']}")),
    Row("GET", f"{FS}/uploads/{{upload_id}}", "the writer's session in the share",
        {**share_write(404), WRITER: 200},
        in_share(path={"upload_id": lambda s: s["upload_id"]}),
        make=lambda w: w.writer_session()),
    Row("PUT", f"{FS}/uploads/{{upload_id}}/parts/{{part}}", "the writer's session in the share",
        {**share_write(404), WRITER: 200}, lambda w, role, item: Ask(
            path={"upload_id": item["upload_id"], "part": "0"}, data=b"9876543210",
            params={"share": w.share_of(role)}),
        make=lambda w: w.writer_session(), consumes=True,
        intact=lambda w, s: w.users[WRITER].api.get(
            f"{FS}/uploads/{s['upload_id']}", params={"share": w.share_of(WRITER)}).json()
        ["received"] == []),
    Row("POST", f"{FS}/uploads/{{upload_id}}/commit", "the writer's session in the share",
        {**share_write(404), WRITER: 201},
        in_share(path={"upload_id": lambda s: s["upload_id"]}),
        make=lambda w: w.writer_session(filled=True), consumes=True,
        intact=lambda w, s: w.users[WRITER].api.get(
            f"{FS}/uploads/{s['upload_id']}", params={"share": w.share_of(WRITER)}
        ).status_code == 200),
    Row("DELETE", f"{FS}/uploads/{{upload_id}}", "the writer's session in the share",
        {**share_write(404), WRITER: 204},
        in_share(path={"upload_id": lambda s: s["upload_id"]}),
        make=lambda w: w.writer_session(), consumes=True,
        intact=lambda w, s: w.users[WRITER].api.get(
            f"{FS}/uploads/{s['upload_id']}", params={"share": w.share_of(WRITER)}
        ).status_code == 200),
    Row("GET", f"{FS}/settings", "own", signed_in(200), plain()),
    Row("PUT", f"{FS}/settings", "own", signed_in(200),
        plain(json={"trash_retention_days": 30})),
    Row("GET", f"{FS}/usage", "own", signed_in(200), plain()),
    Row("GET", f"{FS}/trash", "own", signed_in(200), plain()),
    Row("DELETE", f"{FS}/trash", "empties one's own", signed_in(200), plain()),
    Row("GET", f"{FS}/trash/{{item_id}}", "the owner's trash item", owner_only(200),
        plain(path={"item_id": node_id}), make=lambda w: w.trashed()),
    Row("DELETE", f"{FS}/trash/{{item_id}}", "the owner's trash item", owner_only(204),
        plain(path={"item_id": node_id}), make=lambda w: w.trashed(), consumes=True,
        intact=lambda w, n: exists(w, f"{FS}/trash/{n['id']}")),
    Row("POST", f"{FS}/trash/{{item_id}}/restore", "the owner's trash item", owner_only(200),
        plain(path={"item_id": node_id}, json={}), make=lambda w: w.trashed(), consumes=True,
        intact=lambda w, n: exists(w, f"{FS}/trash/{n['id']}")),

    # shares: only the owner makes and changes them; a recipient sees its own grant
    Row("POST", f"{FS}/shares", "the owner's folder (recipients cannot reshare)",
        owner_only(201),
        lambda w, role, item: Ask(json={"node_id": item["id"], "level": "read",
                                        "user": w.users[STRANGER].username}),
        make=lambda w: w.mkdir(f"/shared/{unique('d')}"), consumes=True),
    Row("GET", f"{FS}/shares", "own list", signed_in(200), plain()),
    Row("GET", f"{FS}/shares/{{share_id}}", "the reader's share", {**owner_only(200),
                                                                   READER: 200},
        lambda w, role, item: Ask(path={"share_id": w.shares["reader"]["id"]})),
    Row("GET", f"{FS}/shares/{{share_id}}", "the group's share",
        {**owner_only(200), MEMBER: 200},
        lambda w, role, item: Ask(path={"share_id": w.shares["group"]["id"]})),
    Row("PUT", f"{FS}/shares/{{share_id}}", "the owner's share (the recipient cannot raise it)",
        owner_only(200), plain(path={"share_id": node_id}, json={"level": "write"}),
        make=lambda w: w.share("read", to=READER), consumes=True,
        intact=lambda w, s: w.owner.api.get(f"{FS}/shares/{s['id']}").json()["level"]
        == "read"),
    Row("DELETE", f"{FS}/shares/{{share_id}}", "the owner's share", owner_only(204),
        plain(path={"share_id": node_id}), make=lambda w: w.share("read", to=READER),
        consumes=True, intact=lambda w, s: exists(w, f"{FS}/shares/{s['id']}")),
    Row("GET", f"{FS}/shared", "own list", signed_in(200), plain()),
    Row("GET", f"{FS}/groups/{{group}}/shares", "admins: what a group reaches (the group "
        "with the write share)", admins_only(200), plain(path={"group": lambda item: item}),
        make=lambda w: w.group),

    # links: only the owner makes and revokes them
    Row("POST", f"{FS}/links", "the owner's file (recipients cannot link)", owner_only(201),
        lambda w, role, item: Ask(json={"node_id": w.items["file"]["id"]})),
    Row("GET", f"{FS}/links", "own list", signed_in(200), plain()),
    Row("DELETE", f"{FS}/links/{{link_id}}", "the owner's link", owner_only(204),
        plain(path={"link_id": node_id}), make=lambda w: w.link("/shared"), consumes=True,
        intact=lambda w, link: w.api.get(f"{FS}/public/{link['token']}").status_code == 200),

    # public link routes: the token is the authority, Authorization is ignored
    Row("GET", f"{FS}/public/{{token}}", "a live link", everyone(200),
        lambda w, role, item: Ask(path={"token": w.link_token})),
    Row("GET", f"{FS}/public/{{token}}", "a path climbing out of the link", everyone(400),
        lambda w, role, item: Ask(path={"token": w.link_token}, params={"path": "/../private"})),
    Row("GET", f"{FS}/public/{{token}}", "a revoked link", everyone(410),
        lambda w, role, item: Ask(path={"token": w.items["revoked_link"]["token"]})),
    Row("GET", f"{FS}/public/{{token}}", "a password link without the password", everyone(401),
        lambda w, role, item: Ask(path={"token": w.items["password_link"]["token"]})),
    Row("GET", f"{FS}/public/{{token}}/data", "a file under the link", everyone(200),
        lambda w, role, item: Ask(path={"token": w.link_token}, params={"path": "/file.txt"})),
    Row("GET", f"{FS}/public/{{token}}/data", "the owner's /private/secret.txt, named under "
        "the link", everyone(404),
        lambda w, role, item: Ask(path={"token": w.link_token},
                                  params={"path": "/private/secret.txt"})),
]


# -- running it ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def world(stack, api, tmp_path_factory):
    built = build(stack, api, tmp_path_factory.mktemp("authz-members"))
    built.items["file"]["version"] = built.owner.api.get(
        f"{FS}/info/{built.items['file']['id']}").json()["versions"][0]["version"]
    yield built
    built.close()


def send(world: World, row: Row, role: str, ask: Ask):
    url = row.route.format(**{k: quote(str(v), safe="") for k, v in ask.path.items()})
    return world.apis[role].request(row.method, url, params=ask.params, json=ask.json,
                                    data=ask.data, files=ask.files, headers=dict(ask.headers),
                                    allow_redirects=False)


def allowed(expected) -> set:
    return set(expected) if isinstance(expected, (set, frozenset)) else {expected}


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_route_answers_each_role_as_expected(world, row):
    assert set(row.expect) == set(ROLES), f"{row.id}: a status for every role"
    wrong = []
    item = row.make(world)
    for role in ROLES:
        ask = row.ask(world, role, item)
        response = send(world, row, role, ask)
        expected = allowed(row.expect[role])
        if response.status_code not in expected:
            wrong.append(f"{role}: expected {sorted(expected)}, got {response.status_code} "
                         f"{response.text[:300]}")
        elif response.status_code >= 400 and row.intact is not None \
                and not row.intact(world, item):
            wrong.append(f"{role}: answered {response.status_code} but changed the item")
        if row.says is not None and response.status_code < 400:
            problem = row.says(world, role, item, response)
            if problem:
                wrong.append(f"{role}: {problem}")
        if row.then is not None and not row.then(world, item):
            wrong.append(f"{role}: after answering {response.status_code}, the item is not "
                         f"where it must be")
        if response.status_code < 400 and row.consumes:
            item = row.make(world)
    assert not wrong, f"{row.id}\n" + "\n".join(wrong)


def declared_routes() -> set[tuple[str, str]]:
    return {(route.method, route.path) for name in functions.available_services()
            for route in functions.load_app(name).route_info}


def test_every_route_has_a_row():
    covered = {(row.method, row.route) for row in ROWS}
    routes = declared_routes()
    assert routes - covered == set(), "routes without a row in the authorization matrix"
    assert covered - routes == set(), "rows for routes no service declares"

