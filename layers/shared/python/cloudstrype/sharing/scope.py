"""Where one filesystem request may reach: the caller's own tree, or the inside of one share.

Every filesystem route builds a `Scope` first (from the optional `share` parameter) and then
reads and writes only through it: ids resolve only inside the scope's top item, paths are
relative to it, and writes need the share's `write` level. A recipient's requests work on the
owner's tree, so what they write is the owner's (storages, keys, quota).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from cloudstrype import errors
from cloudstrype.sharing import access
from cloudstrype.sharing.access import OWNER, Viewer
from cloudstrype.sharing.store import READ, WRITE, Share, sharing_store
from cloudstrype.tree import tree
from cloudstrype.tree.store import Node

SHARE_ID_RE = re.compile(r"^[0-9a-f]{24}$")

# The filesystem routes (method, path under /api/filesystem) that work inside a share, with
# `?share=`: the API description lists the parameter on these, and every other route of the
# service refuses it (ignored, it would have a recipient act on their own files, e.g. empty
# their own trash, believing they act in the share).
SHARE_ROUTES = frozenset({
    ("GET", "/info"), ("GET", "/info/{file_id}"), ("POST", "/info/{file_id}"),
    ("DELETE", "/info/{file_id}"), ("POST", "/dirs"), ("POST", "/data"), ("POST", "/batch"),
    ("POST", "/read"), ("GET", "/data/{file_id}"),
    # Upload sessions, each the recipient's own, through the share it was opened in.
    ("POST", "/uploads"), ("GET", "/uploads"), ("GET", "/uploads/{upload_id}"),
    ("PUT", "/uploads/{upload_id}/parts/{part}"), ("POST", "/uploads/{upload_id}/commit"),
    ("DELETE", "/uploads/{upload_id}")})

# What recipients are not shown of an item: its versions and how its content is stored.
HIDDEN_FROM_RECIPIENTS = ("versions", "version", "durability", "encryption")


def share_not_found(share_id) -> errors.ApiError:
    return errors.NotFound(f"No share {errors.shown(share_id)} for you: it does not exist, was "
                           f"revoked, or no longer includes you.", code="share_not_found")


# What the owner's storages answer for a write they cannot take: not enough of them usable (422),
# a write that failed (503), full (507).
STORAGE_STATUSES = frozenset({422, 503, 507})


@dataclass
class Scope:
    viewer: Viewer
    owner: str                  # whose tree the request works on
    top: Node | None            # the shared item (None: the caller's own tree, all of it)
    level: str                  # OWNER, WRITE or READ
    share: Share | None = None

    @property
    def shared(self) -> bool:
        return self.share is not None

    def require_write(self) -> None:
        if not access.at_least(self.level, WRITE):
            raise errors.Forbidden("This share is read-only for you; ask its owner for write "
                                   "access.", code="read_only_share")

    def node(self, node_id: str) -> Node:
        """The item with this id, only if it is the top item or below it (outside the share:
        the same answer as for an id that does not exist)."""
        node = self.nodes([node_id]).get(node_id)
        if node is None:
            raise tree.no_node(node_id)
        return node

    def nodes(self, node_ids: list[str]) -> dict[str, Node]:
        """What node() would answer for each id, read together (by id; the others, answered
        404 by node(), left out)."""
        found, lineage = tree.get_nodes(self.owner, node_ids)
        if not self.shared:
            return found
        top = self.top.node_id
        return {node_id: node for node_id, node in found.items()
                if node_id == top or top in (lineage.chain(node.parent_id) or ())}

    def owners_scheme(self, durability: str | None, encryption: str | None) -> None:
        """What a recipient writes into a share is stored as its owner chose (their defaults):
        the owner's data, the owner's storages. A recipient naming a durability or an
        encryption is refused, not ignored, so no one believes a file stored as they asked."""
        if self.shared and (durability or encryption):
            field = "durability" if durability else "encryption"
            raise errors.Forbidden("Files written into a share are stored with its owner's "
                                   "durability and encryption; leave out 'durability' and "
                                   "'encryption'.", code="owners_scheme",
                                   details={"field": field})

    def not_top(self, node: Node, doing: str) -> None:
        """A recipient cannot rename, move, delete or set the attributes of the shared item
        itself."""
        if self.shared and node.node_id == self.top.node_id:
            raise errors.Forbidden(f"The shared item itself cannot be {doing} by a recipient; "
                                   f"only its owner can.", code="share_root")

    @property
    def base(self) -> Node | None:
        """Where paths start (None: the owner's root, as for every unshared request)."""
        return self.top if self.shared else None

    def resolve(self, path: str) -> Node:
        return tree.resolve(self.owner, path, self.base)

    def path_of(self, node: Node) -> str:
        return tree.path_of(self.owner, node, self.base)

    def make_dirs(self, path: str) -> tuple[Node, bool]:
        return tree.make_dirs(self.owner, path, self.base)

    def shown(self, info: dict) -> dict:
        """An answer about an item, without what recipients are not shown."""
        if self.shared:
            for key in HIDDEN_FROM_RECIPIENTS:
                info.pop(key, None)
        return info

    def told(self, error: errors.ApiError) -> errors.ApiError:
        """An error as the caller may read it. A recipient whose write the owner's storages
        could not take is told so, not which storages, their keys (the owner's user id) or
        advice only the owner can follow ("add storages")."""
        if self.shared and error.code == "quota_exceeded":
            # The quota and its figures are the owner's; freeing space is theirs to do.
            return type(error)("The owner's storage quota is full, so this share cannot take "
                               "this file now; tell the owner (freeing space or a larger "
                               "quota is theirs to arrange).", code=error.code)
        if not self.shared or error.status not in STORAGE_STATUSES:
            return error
        return type(error)("The owner's storages cannot take this file now; try again later, "
                           "or tell the owner (adding storages is theirs to do).",
                           code=error.code, headers=error.headers)


def scope_for(principal, share_id: str | None) -> Scope:
    """The caller's own tree (no share named), or the inside of the share `share_id` if it
    grants the caller now (directly or through a group they are in); else 404."""
    viewer = Viewer.of(principal)
    if share_id is None:
        return Scope(viewer, viewer.user_id, None, OWNER)
    if not isinstance(share_id, str) or not SHARE_ID_RE.fullmatch(share_id):
        raise share_not_found(share_id)
    share = sharing_store().get_share(share_id)
    if share is not None and share.owner == viewer.user_id:
        # An owner works on their own tree without `share`; naming it is a mistake, not a way in.
        raise errors.BadRequest(f"Share {share_id} is one of yours: work on your own files "
                                f"without 'share'.", code="own_share")
    if share is None or not viewer.is_granted(share) or not viewer.owner_active(share.owner):
        raise share_not_found(share_id)
    try:
        top = tree.get_node(share.owner, share.node_id)
    except errors.NotFound:
        raise share_not_found(share_id) from None
    # A share on a folder above can grant more than this one.
    level = access.level(viewer, share.owner, top.node_id) or READ
    return Scope(viewer, share.owner, top, level, share)
