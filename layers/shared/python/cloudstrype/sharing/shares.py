"""Shares: an owner gives a user or a group read or write access to a folder or a file."""
from __future__ import annotations

import os
import time

from cloudstrype import errors
from cloudstrype.auth.users import validate_group
from cloudstrype.identity import get_identity
from cloudstrype.metadata.engine import BadCursor
from cloudstrype.sharing.access import (
    Viewer,
    group_share_void,
    groups_of_owner,
    made_to_the_group_now,
    owner_active,
)
from cloudstrype.sharing.scope import SHARE_ID_RE, share_not_found
from cloudstrype.sharing.store import (
    GROUP,
    LEVELS,
    MAX_LISTED,
    USER,
    WRITE,
    Share,
    sharing_store,
)
from cloudstrype.tree import files, tree
from cloudstrype.tree.store import FILE, ROOT, Node, tree_store


def own_item(owner: str, path: str | None, node_id: str | None) -> Node:
    """The caller's own item named by `path` or `node_id` (exactly one), never the root."""
    if (path is None) == (node_id is None):
        raise errors.BadRequest("Name the item with exactly one of 'path' or 'node_id'.",
                                code="missing_field", details={"field": "path"})
    node = tree.resolve(owner, path) if path is not None else tree.get_node(owner, node_id)
    if node.node_id == ROOT:
        raise errors.BadRequest("Your whole tree cannot be shared; share a folder or a file.",
                                code="invalid_target")
    return node


def check_level(level, node: Node | None) -> str:
    if level not in LEVELS:
        raise errors.BadRequest(f"Field 'level' must be one of {', '.join(LEVELS)}.",
                                code="invalid_field", details={"field": "level"})
    if level == WRITE and node is not None and node.type == FILE:
        raise errors.Conflict("Write access is for folders; share the folder that holds this "
                                "file, or share the file read-only.", code="write_needs_folder",
                                details={"field": "level"})
    return level


def create(principal, path: str | None, node_id: str | None, user: str | None,
           group: str | None, level) -> tuple[dict, bool]:
    """Share the caller's item; (share, created). Sharing it again with the same grantee sets
    the level of the existing share."""
    viewer = Viewer.of(principal)
    node = own_item(viewer.user_id, path, node_id)
    level = check_level(level, node)
    if (user is None) == (group is None):
        raise errors.BadRequest("Name the recipient with exactly one of 'user' or 'group'.",
                                code="missing_field", details={"field": "user"})
    if user is not None:
        grantee = get_identity().describe(user)         # 404 user_not_found
        if grantee.user_id == viewer.user_id:
            raise errors.BadRequest("You have your own items already; share with someone else.",
                                    code="invalid_target", details={"field": "user"})
        kind, grantee_id, grantee_name = USER, grantee.user_id, grantee.username
    else:
        _check_group(viewer, group)
        kind, grantee_id, grantee_name = GROUP, group, group
    # The creation time to the microsecond: a group grant is good only for a group made
    # before it (access.Viewer.is_granted), and a group can be deleted and made again within
    # one second.
    now = time.time()
    wanted = Share(owner=viewer.user_id, owner_name=viewer.username, node_id=node.node_id,
                   share_id=os.urandom(12).hex(), grantee_kind=kind, grantee=grantee_id,
                   grantee_name=grantee_name, level=level, created=now, modified=int(now))
    store = sharing_store()
    stored = store.put_share(wanted)
    if kind == GROUP and stored.share_id != wanted.share_id and \
            not _made_to_the_group_now(stored):
        # A share to an earlier group of that name, which grants this one nothing: replaced,
        # and what was being uploaded through it ends as with a revoke.
        store.delete_share(stored)
        files.abort_sessions_through(stored.owner, stored.share_id)
        stored = store.put_share(wanted)
    created = stored.share_id == wanted.share_id
    if not created and stored.level != WRITE:
        # Shared again read-only: as PUT /shares/{id} making it read-only, the recipients'
        # sessions through it end (they could no longer commit or abort them, and their parts
        # are the owner's bytes).
        files.abort_sessions_through(stored.owner, stored.share_id)
    return for_owner(stored, node), created


def _made_to_the_group_now(share: Share) -> bool:
    return made_to_the_group_now(share, get_identity().group_created(share.grantee))


def _check_group(viewer: Viewer, group) -> None:
    if not isinstance(group, str) or not group:
        raise errors.BadRequest("Field 'group' must be a group name.", code="invalid_field",
                                details={"field": "group"})
    if group in viewer.groups:
        return
    # Only groups one is in (so a user cannot probe or spam every group); admins manage groups
    # and may share with any. Admin by the groups as they are now, as the admin routes judge
    # (a promotion counts at the next request, not at the next sign-in).
    if "admins" not in viewer.groups:
        raise errors.Forbidden(f"You can share with groups you are a member of; you are not in "
                               f"'{group}'.", code="not_a_member", details={"field": "group"})
    _require_group(group)


def _require_group(group: str) -> None:
    if group not in {g.name for g in get_identity().list_groups()}:
        raise errors.NotFound(f"No group {errors.shown(group)}.", code="group_not_found")


def _owned(principal, share_id: str) -> Share:
    share = find(share_id)
    if share is None or share.owner != principal.user_id:
        raise share_not_found(share_id)
    return share


def find(share_id) -> Share | None:
    if not isinstance(share_id, str) or not SHARE_ID_RE.fullmatch(share_id):
        return None
    return sharing_store().get_share(share_id)


def _node_or_none(owner: str, node_id: str) -> Node | None:
    try:
        return tree.get_node(owner, node_id)
    except errors.NotFound:
        return None          # deleted (or in the trash): the share waits for it


def for_owner(share: Share, node: Node | None, gone: bool = False,
              not_granting: str | None = None) -> dict:
    """`gone`: the user granted has deleted their account (a new account of the same name is
    another user, and gets nothing from this share); `not_granting`: why a group share grants
    nothing now (_not_granting)."""
    if gone:
        not_granting = "the account it was made to is deleted"
    return {"id": share.share_id, "node_id": share.node_id,
            "name": node.name if node else None, "type": node.type if node else None,
            "path": tree.path_of(share.owner, node) if node else None,
            "grantee": {"kind": share.grantee_kind, "name": share.grantee_name,
                        **({"deleted": True} if gone else {})},
            "level": share.level, "created": tree.iso(int(share.created)),
            "modified": tree.iso(share.modified), "grants": not_granting is None,
            **({"not_granting": not_granting} if not_granting else {})}


class _GrantsNow:
    """Why each of one owner's group shares grants nothing now, if it does not (the checks of
    access.Viewer.is_granted, as the owner sees them); each group and the owner read once."""

    def __init__(self):
        self._created: dict[str, float | None] = {}
        self._owner_groups: frozenset[str] | None = None

    def why_not(self, share: Share) -> str | None:
        if share.grantee_kind != GROUP:
            return None
        if share.grantee not in self._created:
            self._created[share.grantee] = get_identity().group_created(share.grantee)

        def owner_groups() -> frozenset[str]:
            if self._owner_groups is None:
                self._owner_groups = groups_of_owner(share)
            return self._owner_groups
        return group_share_void(share, self._created[share.grantee], owner_groups)


def for_recipient(share: Share, node: Node) -> dict:
    return {"id": share.share_id, "node_id": share.node_id, "name": node.name,
            "type": node.type, "level": share.level, "owner": share.owner_name,
            "via": {"kind": share.grantee_kind, "name": share.grantee_name},
            "created": tree.iso(int(share.created))}


def _newest(found: list[Share]) -> list[Share]:
    return sorted(found, key=lambda share: share.created, reverse=True)[:MAX_LISTED]


def list_own(principal, node_id: str | None) -> dict:
    """{"shares": the owner's newest MAX_LISTED shares (of one item: `node_id`); "truncated":
    whether there are more}."""
    owner = principal.user_id
    store = sharing_store()
    if node_id is not None:
        node = tree.get_node(owner, node_id)
        found = store.shares_of_node(owner, node.node_id)
        kept = _newest(found)
        gone, grants = _deleted_grantees(kept), _GrantsNow()
        return {"shares": [for_owner(s, node, s.grantee in gone, grants.why_not(s))
                           for s in kept],
                "truncated": len(found) > len(kept)}
    nodes: dict[str, Node | None] = {}
    listed = []
    found = store.shares_by_owner(owner)
    kept = _newest(found)
    gone, grants = _deleted_grantees(kept), _GrantsNow()
    for share in kept:
        if share.node_id not in nodes:
            nodes[share.node_id] = _node_or_none(owner, share.node_id)
        listed.append(for_owner(share, nodes[share.node_id], share.grantee in gone,
                                grants.why_not(share)))
    return {"shares": listed, "truncated": len(found) > len(kept)}


def _deleted_grantees(found: list[Share]) -> set[str]:
    """The ids of the users granted among `found` whose accounts are gone."""
    gone = set()
    for user_id in {s.grantee for s in found if s.grantee_kind == USER}:
        try:
            get_identity().describe_by_id(user_id)
        except errors.NotFound:
            gone.add(user_id)
    return gone


def show(principal, share_id: str) -> dict:
    share = find(share_id)
    if share is not None:
        if share.owner == principal.user_id:
            return for_owner(share, _node_or_none(share.owner, share.node_id),
                             share.grantee in _deleted_grantees([share]),
                             _GrantsNow().why_not(share))
        viewer = Viewer.of(principal)
        node = _node_or_none(share.owner, share.node_id)
        if node is not None and viewer.is_granted(share) and viewer.owner_active(share.owner):
            return for_recipient(share, node)
    raise share_not_found(share_id)


def set_level(principal, share_id: str, level) -> dict:
    share = _owned(principal, share_id)
    if share.grantee_kind == GROUP:
        # As when it was made: one shares with groups one is in.
        _check_group(Viewer.of(principal), share.grantee)
        if not _made_to_the_group_now(share):
            raise errors.Conflict(
                f"This share was made to an earlier group named {share.grantee_name} (deleted "
                f"since) and grants nothing; share the item with the group again (that "
                f"replaces it), or revoke it.", code="share_not_granting")
    node = _node_or_none(share.owner, share.node_id)
    check_level(level, node)
    if level == WRITE and node is None and share.level != WRITE:
        # In the trash (or deleted for good): whether it is a folder cannot be read until it
        # is back, and a file must not come back with a writable share.
        raise errors.Conflict("The shared item is in the trash (or deleted), so its share can "
                              "be revoked or left as it is, not made writable; restore it "
                              "first.", code="item_in_trash", details={"field": "level"})
    try:
        changed = sharing_store().set_level(share, level, int(time.time()))
    except KeyError:
        raise share_not_found(share_id) from None
    if share.level == WRITE and changed.level != WRITE:
        # Made read-only: what recipients were uploading through it can no longer be committed
        # or aborted by them, so it ends here, as with a revoke.
        files.abort_sessions_through(share.owner, share.share_id)
    return for_owner(changed, node, not_granting=_GrantsNow().why_not(changed))


def forget_items_gone(owner: str) -> dict:
    """After items of `owner` were deleted for good: their shares and links go too (they
    granted nothing, yet were listed as if they did), and so do the upload sessions recipients
    had opened through those shares (their parts are the owner's bytes, which neither the owner
    nor the recipient could see or abort any more). An item in the trash keeps them: restored,
    it is shared again as it was."""
    store, trees = sharing_store(), tree_store()
    present: dict[str, bool] = {}

    def gone(node_id: str) -> bool:
        if node_id not in present:
            present[node_id] = trees.get_node(owner, node_id) is not None
        return not present[node_id]

    shares_gone = links_gone = 0
    for share in store.shares_by_owner(owner):
        if gone(share.node_id) and store.delete_share(share):
            files.abort_sessions_through(owner, share.share_id)
            shares_gone += 1
    for link in store.links_by_owner(owner):
        if gone(link.node_id) and store.delete_link(owner, link.link_id):
            links_gone += 1
    return {"shares_forgotten": shares_gone, "links_forgotten": links_gone}


def revoke(principal, share_id: str) -> None:
    share = _owned(principal, share_id)
    if not sharing_store().delete_share(share):
        raise share_not_found(share_id)
    # What recipients were uploading through it ends with it (its parts are the owner's bytes,
    # and the owner can neither see nor abort those sessions).
    files.abort_sessions_through(share.owner, share.share_id)


def shared_with_me(principal) -> dict:
    """{"shares": the newest MAX_LISTED shares granted to the caller or a group they are in
    now, whose item exists; "truncated": whether more may be (others can grant a user any
    number: unbounded, the answer outgrew a response and the user saw none)}."""
    viewer = Viewer.of(principal)
    store = sharing_store()
    found = store.shares_for(USER, viewer.user_id)
    for group in sorted(viewer.groups):
        found += store.shares_for(GROUP, group)
    listed, seen, truncated = [], set(), False
    for share in sorted(found, key=lambda s: s.created, reverse=True):
        if len(listed) >= MAX_LISTED:
            truncated = True
            break
        if share.share_id in seen or share.owner == viewer.user_id:
            continue
        seen.add(share.share_id)
        # The index may lag a revoke: re-read the share itself.
        current = store.get_share(share.share_id)
        granted = current is not None and viewer.is_granted(current) and \
            viewer.owner_active(current.owner)
        node = _node_or_none(share.owner, share.node_id) if granted else None
        if node is not None:
            listed.append(for_recipient(current, node))
    return {"shares": sorted(listed, key=lambda s: (s["owner"], s["name"], s["id"])),
            "truncated": truncated}


def for_admin(share: Share, node: Node) -> dict:
    return {"id": share.share_id, "owner": share.owner_name, "node_id": share.node_id,
            "name": node.name, "type": node.type, "path": tree.path_of(share.owner, node),
            "level": share.level, "created": tree.iso(int(share.created))}


def granted_to_group(group, limit: int, cursor: str | None) -> dict:
    """For admins: one page of the shares granted to `group` whose item exists, i.e. what its
    members reach through it (the by-grantee index, one page; a page may come out short when
    items are in their owners' trash)."""
    validate_group(group, "group")
    _require_group(group)
    store = sharing_store()
    try:
        found, next_cursor = store.shares_for_page(GROUP, group, limit, cursor or None)
    except BadCursor:
        raise errors.BadRequest("The 'cursor' is not one this API gave out.",
                                code="invalid_cursor", details={"field": "cursor"}) from None
    listed = []
    created = get_identity().group_created(group)
    for share in found:
        # The index may lag a revoke: re-read the share itself.
        current = store.get_share(share.share_id)
        node = _node_or_none(share.owner, share.node_id) if current and \
            owner_active(current.owner) and group_share_void(
                current, created, lambda held=current: groups_of_owner(held)) is None else None
        if node is not None:
            listed.append(for_admin(current, node))
    return {"group": group, "shares": listed, "next_cursor": next_cursor}
