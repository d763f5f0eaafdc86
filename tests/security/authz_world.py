"""The authorization matrix's world: the people (one per role), what the owner has, and fresh
items made on demand, all through HTTP against a running stack (tests/security/
test_authorization_matrix.py)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import requests
from websockets.sync.client import connect as ws_connect

from tests.array.conftest import Members
from tests.security.test_oauth_csrf import approve_in_browser
from tests.support import PASSWORD, Api, User, cli, login, register_and_login, unique

# Who asks. `link` holds a link's token and no account: on the signed-in routes it tries that
# token as a bearer token; `anonymous` sends no token at all.
OWNER, READER, WRITER, MEMBER, REMOVED = "owner", "reader", "writer", "member", "removed"
STRANGER, ADMIN, LINK, ANONYMOUS = "stranger", "admin", "link", "anonymous"
ROLES = (OWNER, READER, WRITER, MEMBER, REMOVED, STRANGER, ADMIN, LINK, ANONYMOUS)
ACCOUNTS = ROLES[:7]
NO_ACCOUNT = (LINK, ANONYMOUS)

FS = "/api/filesystem"


def ok(response, status: int = 200):
    assert response.status_code == status, f"{response.request.method} {response.url}: " \
                                           f"{response.status_code} {response.text}"
    return response.json() if response.content else None


def with_storages(user: User) -> User:
    """Two local storages (relative paths land under the stack's storage root) and raid1(2)."""
    for n in range(2):
        ok(user.api.post("/api/cloud/storages", json={
            "kind": "local", "name": f"disk{n}", "config": {"path": unique("authz-disk")}}), 201)
    ok(user.api.put(f"{FS}/settings", json={"durability": "raid1(2)"}))
    return user


@dataclass
class World:
    stack: object
    api: Api
    users: dict            # role -> User (the admin too: username, password, api)
    apis: dict             # role -> Api (with that role's credentials, or none)
    group: str
    shares: dict = field(default_factory=dict)      # "reader"/"writer"/"group" -> share
    items: dict = field(default_factory=dict)       # name -> what the owner has
    link_token: str = ""
    members: Members | None = None

    # -- people -----------------------------------------------------------------------------
    @property
    def owner(self) -> User:
        return self.users[OWNER]

    @property
    def admin_api(self) -> Api:
        return self.apis[ADMIN]

    def share_of(self, role: str) -> str:
        """The share a role names with ?share=: its own grant, or, for roles granted nothing
        (and the owner, who works on their own tree without one), the reader's."""
        return {WRITER: self.shares["writer"]["id"], MEMBER: self.shares["group"]["id"],
                REMOVED: self.shares["group"]["id"]}.get(role, self.shares["reader"]["id"])

    def register(self) -> str:
        """A new account nobody uses: its username."""
        return register_and_login(self.api).username

    def fresh_login(self, role: str) -> str:
        """A new access token of this role's account (for logout, which ends it)."""
        user = self.users[role]
        return login(self.api, user.username, user.password)["access_token"]

    # -- fresh items of the owner's -----------------------------------------------------------
    def upload(self, directory: str, name: str | None = None, data: bytes = b"payload") -> dict:
        name = name or unique("f") + ".txt"
        return ok(self.owner.api.post(f"{FS}/data", files={"file": (name, data)},
                                      data={"path": directory, "name": name}), 201)

    def versioned(self, directory: str) -> dict:
        """A file of two versions; `old` is the earlier one's id."""
        name = unique("v") + ".txt"
        first = self.upload(directory, name, b"first version")
        return {**self.upload(directory, name, b"second version"), "old": first["version"]}

    def mkdir(self, path: str) -> dict:
        return ok(self.owner.api.post(f"{FS}/dirs", json={"path": path}), 201)

    def trashed(self) -> dict:
        node = self.upload("/private")
        ok(self.owner.api.delete(f"{FS}/info/{node['id']}"), 204)
        return node

    def session(self, filled: bool = False) -> dict:
        data = b"0123456789"
        session = ok(self.owner.api.post(f"{FS}/uploads", json={
            "path": "/private", "name": unique("s") + ".bin", "size": len(data)}), 201)
        session["data"] = data
        if filled:
            ok(self.owner.api.put(f"{FS}/uploads/{session['upload_id']}/parts/0", data=data))
        return session

    def writer_session(self, filled: bool = False) -> dict:
        """An upload session the writer opened through their share of /shared."""
        data, through = b"0123456789", {"share": self.share_of(WRITER)}
        writer = self.users[WRITER]
        session = ok(writer.api.post(f"{FS}/uploads", params=through, json={
            "path": "/", "name": unique("w") + ".bin", "size": len(data)}), 201)
        session["data"] = data
        if filled:
            ok(writer.api.put(f"{FS}/uploads/{session['upload_id']}/parts/0", params=through,
                              data=data))
        return session

    def share(self, level: str = "read", to: str = READER) -> dict:
        folder = self.mkdir(f"/private/{unique('shared')}")
        return ok(self.owner.api.post(f"{FS}/shares", json={
            "node_id": folder["id"], "user": self.users[to].username, "level": level}), 201)

    def link(self, target: str = "/shared", **extra) -> dict:
        return ok(self.owner.api.post(f"{FS}/links", json={"path": target, **extra}), 201)

    def chunk(self, data: bytes = b"chunk data") -> dict:
        return ok(self.owner.api.post("/api/chunk", files={"file": ("c", data)}), 201)

    def blob(self, service: str = "cloud", data: bytes = b"blob data") -> dict:
        chunk_id = unique("blob")
        params = {"replicas": 1} if service == "array" else None
        ok(self.owner.api.post(f"/api/{service}/{chunk_id}", data=data, params=params), 201)
        return {"id": chunk_id, "data": data}

    def storage(self) -> dict:
        return ok(self.owner.api.post("/api/cloud/storages", json={
            "kind": "local", "name": unique("spare"), "config": {"path": unique("authz-spare")}}),
            201)

    def draining_storage(self) -> dict:
        """An empty storage its owner started draining."""
        made = self.storage()
        ok(self.owner.api.post(f"/api/cloud/storages/{made['id']}/drain"), 200)
        return ok(self.owner.api.get(f"/api/cloud/storages/{made['id']}"), 200)

    def draining_member(self) -> str:
        member_id = self.fake_member()
        ok(self.owner.api.post(f"/api/array/members/{member_id}/drain"), 200)
        return member_id

    def fake_member(self) -> str:
        """A member that said hello over the WebSocket and hung up: offline, holding nothing."""
        member_id = unique("fake").replace("-", "")
        with ws_connect(f"{self.stack.ws_url}?token={self.owner.access_token}",
                        open_timeout=10) as socket:
            socket.send(json.dumps({"type": "hello", "id": 1, "member_id": member_id,
                                    "capacity": 10 ** 9, "used": 0, "free": 10 ** 9}))
            reply = json.loads(socket.recv(timeout=10))
            assert reply["type"] == "welcome", reply
        return member_id

    def oauth(self, approved: bool = True) -> dict:
        """An OAuth connection the owner started at the fake Dropbox: its state, and (approved)
        the callback URL the provider sends the browser to, or the finish code it gave."""
        started = ok(self.owner.api.get("/api/cloud/oauth/dropbox/authorize"))
        if not approved:
            consent = requests.get(started["authorize_url"], allow_redirects=False, timeout=10)
            assert consent.status_code == 302, consent.text
            return {**started, "callback": consent.headers["Location"]}
        _, back = approve_in_browser(started["authorize_url"])
        return {**started, "finish_code": back["finish_code"]}

    def group_with(self, username: str | None = None) -> str:
        name = unique("grp")
        ok(self.admin_api.post("/api/auth/groups", json={"name": name}), 201)
        if username:
            ok(self.admin_api.put(f"/api/auth/groups/{name}/members/{username}"), 204)
        return name

    def close(self) -> None:
        if self.members is not None:
            self.members.stop_all()


def make_admin(stack, api: Api) -> User:
    """An admin of this module's own (every account here has storages, this one too)."""
    username = unique("admin")
    done = cli("admin", "create", username, "--email", f"{username}@example.org",
               "--password", PASSWORD, "--data-dir", str(stack.data_dir))
    assert done.returncode == 0, done.stderr
    tokens = login(api, username, PASSWORD)
    return User(username, f"{username}@example.org", PASSWORD, "", tokens,
                api.as_user(tokens["access_token"]))


def build(stack, api: Api, tmp: Path) -> World:
    users = {role: with_storages(register_and_login(api)) for role in ACCOUNTS if role != ADMIN}
    users[ADMIN] = with_storages(make_admin(stack, api))
    admin_api = users[ADMIN].api
    apis = {role: user.api for role, user in users.items()}
    apis[ANONYMOUS] = Api(api.base_url)
    world = World(stack, api, users, apis, group="")
    owner = world.owner

    world.group = world.group_with(owner.username)
    for role in (MEMBER, REMOVED):
        ok(admin_api.put(f"/api/auth/groups/{world.group}/members/{users[role].username}"), 204)

    shared = world.mkdir("/shared")
    world.mkdir("/private")
    world.mkdir("/elsewhere")
    world.items.update(shared=shared, file=world.upload("/shared", "file.txt", b"shared bytes"),
                       secret=world.upload("/private", "secret.txt", b"private bytes"))
    for key, role, level in (("reader", READER, "read"), ("writer", WRITER, "write")):
        world.shares[key] = ok(owner.api.post(f"{FS}/shares", json={
            "path": "/shared", "user": users[role].username, "level": level}), 201)
    world.shares["group"] = ok(owner.api.post(f"{FS}/shares", json={
        "path": "/shared", "group": world.group, "level": "write"}), 201)

    # The removed member had access through the group; then the admin takes them out.
    removed = users[REMOVED].api
    ok(removed.get(f"{FS}/info", params={"share": world.shares["group"]["id"], "path": "/"}))
    ok(admin_api.delete(f"/api/auth/groups/{world.group}/members/{users[REMOVED].username}"), 204)

    created = world.link("/shared")
    world.link_token = created["token"]
    apis[LINK] = Api(api.base_url, created["token"])
    world.items.update(
        link=created, trash=world.trashed(), session=world.session(), chunk=world.chunk(),
        storage=ok(owner.api.get("/api/cloud/storages"))["storages"][0],
        revoked_link=world.link("/shared"), password_link=world.link("/shared", password="pw"))
    ok(owner.api.delete(f"{FS}/links/{world.items['revoked_link']['id']}"), 204)
    world.items["blob"] = world.blob("cloud")

    # One real member program holds the owner's array blob.
    world.members = Members(stack, tmp)
    member = world.members.start(owner)
    world.items["array_blob"] = world.blob("array")
    world.items["member_id"] = member.member_id
    return world
