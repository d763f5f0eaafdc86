"""Shares and links: their tables and `SharingStore`, the one module that reads and writes them.

- `shares` (node_ref = owner#node_id, grantee_ref = "user:<id>" | "group:<name>"): who may
  read or write one of the owner's items. An access check reads one partition per node on the
  way up (strongly consistent, so a revoke counts at once). Secondary paths: `by-grantee`
  ("shared with me", one query per grantee ref), `by-owner` (an owner's shares) and `by-id`
  (a share named in a request; confirmed by a get on the main key before use).
- `links` (link_id = SHA-256 of the token): a public read link. The token itself is never
  stored. `by-owner` lists an owner's links.
- `link-hits` (bucket): fixed-window request counters of the public link routes, per link and
  per client address, gone with their window (expiry).

Times are Unix seconds.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from cloudstrype.metadata import schema
from cloudstrype.metadata.engine import Change, Condition, ConditionFailed, Engine, get_engine
from cloudstrype.metadata.schema import BOOL, INT, STR, Index

USER, GROUP = "user", "group"
READ, WRITE = "read", "write"
LEVELS = (READ, WRITE)
# A listing of shares or links (an owner's, or those shared with a user) answers at most this
# many, the newest, and says whether there were more (`truncated`): one answer stays ~300 KB,
# far below a response's 6 MB, however many an owner makes or others grant a user.
MAX_LISTED = 1000

SHARES = schema.table(
    "shares", hash_key="node_ref", range_key="grantee_ref", owner_module=__name__,
    fields={"node_ref": STR, "grantee_ref": STR, "owner": STR, "owner_name": STR,
            "node_id": STR, "share_id": STR, "grantee_kind": STR, "grantee": STR,
            "grantee_name": STR, "level": STR, "created": INT, "modified": INT},
    indexes=(Index("by-grantee", hash_key="grantee_ref", range_key="share_id"),
             Index("by-owner", hash_key="owner", range_key="share_id"),
             Index("by-id", hash_key="share_id")))

LINKS = schema.table(
    "links", hash_key="link_id", owner_module=__name__,
    fields={"link_id": STR, "owner": STR, "node_id": STR, "password_hash": STR,
            "expires_at": INT, "revoked": BOOL, "created": INT},
    indexes=(Index("by-owner", hash_key="owner", range_key="created"),))

LINK_HITS = schema.table(
    "link-hits", hash_key="bucket", owner_module=__name__,
    fields={"bucket": STR, "count": INT, "purge_at": INT}, expires="purge_at")


@dataclass
class Share:
    owner: str
    owner_name: str
    node_id: str
    share_id: str
    grantee_kind: str          # USER or GROUP
    grantee: str               # a user id, or a group name
    grantee_name: str          # the username (for a user), or the group name
    level: str                 # READ or WRITE
    created: float              # to the microsecond (shares.create)
    modified: int

    @property
    def grantee_ref(self) -> str:
        return grantee_ref(self.grantee_kind, self.grantee)


@dataclass
class Link:
    link_id: str
    owner: str
    node_id: str
    created: int
    password_hash: str | None = None
    expires_at: int | None = None
    revoked: bool = False


def grantee_ref(kind: str, grantee: str) -> str:
    return f"{kind}:{grantee}"


def _node_ref(owner: str, node_id: str) -> str:
    return f"{owner}#{node_id}"


def _share(item: dict) -> Share:
    return Share(owner=item["owner"], owner_name=item.get("owner_name", ""),
                 node_id=item["node_id"], share_id=item["share_id"],
                 grantee_kind=item["grantee_kind"], grantee=item["grantee"],
                 grantee_name=item.get("grantee_name", item["grantee"]), level=item["level"],
                 created=float(item["created"]), modified=int(item.get("modified",
                                                                       item["created"])))


def _link(item: dict) -> Link:
    return Link(link_id=item["link_id"], owner=item["owner"], node_id=item["node_id"],
                created=int(item["created"]), password_hash=item.get("password_hash"),
                expires_at=int(item["expires_at"]) if "expires_at" in item else None,
                revoked=bool(item.get("revoked", False)))


class SharingStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    # -- shares -------------------------------------------------------------------------------

    def put_share(self, share: Share) -> Share:
        """Create the share, or (same item and grantee) set the existing one's level: the
        existing share keeps its id. Returns the share as stored."""
        key = {"node_ref": _node_ref(share.owner, share.node_id),
               "grantee_ref": share.grantee_ref}
        item = dict(dataclasses.asdict(share), **key)
        try:
            self.engine.put(SHARES, item, Condition.absent())
            return share
        except ConditionFailed:
            pass
        updated = self.engine.update(SHARES, key, Change(set={"level": share.level,
                                                              "modified": share.modified}),
                                     Condition.exists())
        return _share(updated)

    def shares_of_node(self, owner: str, node_id: str) -> list[Share]:
        """Every share of one item (strongly consistent: what access checks read)."""
        return [_share(item) for item in
                self.engine.query_all(SHARES, _node_ref(owner, node_id))
                if item.get("owner") == owner]

    def get_share(self, share_id: str) -> Share | None:
        """The share with this id, as it is now (found through the index, then read by key,
        so a revoked share is never returned)."""
        page = self.engine.query_index(SHARES, "by-id", share_id, limit=2)
        for found in page.items:
            item = self.engine.get(SHARES, {"node_ref": found["node_ref"],
                                            "grantee_ref": found["grantee_ref"]})
            if item is not None and item.get("share_id") == share_id:
                return _share(item)
        return None

    def set_level(self, share: Share, level: str, now: int) -> Share:
        try:
            item = self.engine.update(
                SHARES, {"node_ref": _node_ref(share.owner, share.node_id),
                         "grantee_ref": share.grantee_ref},
                Change(set={"level": level, "modified": now}),
                Condition.eq("share_id", share.share_id))
        except ConditionFailed:
            raise KeyError(share.share_id) from None
        return _share(item)

    def delete_share(self, share: Share) -> bool:
        """False if it was gone already."""
        try:
            self.engine.delete(SHARES, {"node_ref": _node_ref(share.owner, share.node_id),
                                        "grantee_ref": share.grantee_ref},
                               Condition.eq("share_id", share.share_id))
        except ConditionFailed:
            return False
        return True

    def shares_by_owner(self, owner: str) -> list[Share]:
        return [_share(item) for item in self._index_all("by-owner", owner)]

    def shares_for(self, kind: str, grantee: str) -> list[Share]:
        """Shares granted to one user or one group (through the index: for listings only)."""
        return [_share(item) for item in self._index_all("by-grantee",
                                                         grantee_ref(kind, grantee))]

    def shares_for_page(self, kind: str, grantee: str, limit: int,
                        cursor: str | None) -> tuple[list[Share], str | None]:
        """One page of `shares_for` (by share id) and the cursor of the next (None: the last).
        BadCursor for a cursor this query did not hand out."""
        page = self.engine.query_index(SHARES, "by-grantee", grantee_ref(kind, grantee),
                                       limit=limit, cursor=cursor)
        return [_share(item) for item in page.items], page.cursor

    def _index_all(self, index: str, value: str, table=SHARES):
        return self.engine.query_index_all(table, index, value, limit=200)

    # -- links --------------------------------------------------------------------------------

    def create_link(self, link: Link) -> None:
        item = {k: v for k, v in dataclasses.asdict(link).items() if v is not None}
        self.engine.put(LINKS, item, Condition.absent())

    def get_link(self, link_id: str) -> Link | None:
        item = self.engine.get(LINKS, {"link_id": link_id})
        return _link(item) if item is not None else None

    def links_by_owner(self, owner: str) -> list[Link]:
        return [_link(item) for item in self._index_all("by-owner", owner, LINKS)
                if item.get("owner") == owner]

    def delete_link(self, owner: str, link_id: str) -> bool:
        """The link's record gone (its item deleted for good); False if it was gone already."""
        try:
            self.engine.delete(LINKS, {"link_id": link_id}, Condition.eq("owner", owner))
        except ConditionFailed:
            return False
        return True

    def revoke_link(self, owner: str, link_id: str) -> bool:
        """False if the owner has no such link."""
        try:
            self.engine.update(LINKS, {"link_id": link_id}, Change(set={"revoked": True}),
                               Condition.eq("owner", owner))
        except ConditionFailed:
            return False
        return True

    # -- rate limits --------------------------------------------------------------------------

    def hit(self, bucket: str, limit: int, purge_at: int) -> bool:
        """Count one request in a window's bucket; False (nothing counted) once it holds
        `limit`. Atomic, so concurrent requests cannot overshoot together."""
        key = {"bucket": bucket}
        change = Change(add={"count": 1}, set={"purge_at": purge_at})
        # Twice at most: a request that found no counter and then lost the race to create it
        # counts against the counter the winner made (it used to be refused, under the limit).
        for _ in range(2):
            try:
                self.engine.update(LINK_HITS, key, change, Condition.compare("count", "lt", limit))
                return True
            except ConditionFailed:
                pass
            try:
                # The window's first request: no counter yet.
                self.engine.update(LINK_HITS, key, change, Condition.missing("count"))
                return True
            except ConditionFailed:
                continue
        return False


def sharing_store() -> SharingStore:
    return SharingStore(get_engine())
