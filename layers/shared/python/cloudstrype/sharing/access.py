"""Who may do what with an item: its owner, or a share on it or on a folder above it.

Group membership is read live from the identity provider (never from the token's claims), so
adding or removing a member counts at that member's next request; a `Viewer` caches it for one
request only.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from cloudstrype import errors
from cloudstrype.identity import get_identity
from cloudstrype.sharing.store import GROUP, READ, USER, WRITE, Share, sharing_store
from cloudstrype.tree import tree

OWNER = "owner"
NONE = None
_RANK = {None: 0, READ: 1, WRITE: 2, OWNER: 3}
# Deeper than any path may be (tree.MAX_DEPTH is 64): a walk stops here whatever the data says.
MAX_WALK = 70


@dataclass
class Viewer:
    """The caller of one request: user id and username, and their groups once looked up."""
    user_id: str
    username: str
    _groups: frozenset[str] | None = field(default=None, repr=False)
    _group_created: dict = field(default_factory=dict, repr=False)
    _owners: dict = field(default_factory=dict, repr=False)
    _owner_groups: dict = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, principal) -> "Viewer":
        return cls(principal.user_id, principal.username)

    @property
    def groups(self) -> frozenset[str]:
        if self._groups is None:
            try:
                self._groups = frozenset(get_identity().groups_of(self.username))
            except errors.NotFound:
                self._groups = frozenset()          # deleted meanwhile: no groups
        return self._groups

    def owner_active(self, owner: str) -> bool:
        """Whether the account that owns a share is still there: a deleted owner's shares grant
        nothing (nor their links open; links.open_link asks owner_active too)."""
        if owner not in self._owners:
            self._owners[owner] = owner_active(owner)
        return self._owners[owner]

    def is_granted(self, share: Share) -> bool:
        if share.grantee_kind == USER:
            return share.grantee == self.user_id
        if share.grantee_kind != GROUP or share.grantee not in self.groups:
            return False
        if share.grantee not in self._group_created:
            self._group_created[share.grantee] = get_identity().group_created(share.grantee)

        def owner_groups() -> frozenset[str]:
            if share.owner not in self._owner_groups:
                self._owner_groups[share.owner] = groups_of_owner(share)
            return self._owner_groups[share.owner]
        return group_share_void(share, self._group_created[share.grantee], owner_groups) is None


def best(levels) -> str | None:
    return max(levels, key=_RANK.__getitem__, default=None)


def at_least(level: str | None, wanted: str) -> bool:
    return _RANK[level] >= _RANK[wanted]


def level(viewer: Viewer, owner: str, node_id: str) -> str | None:
    """OWNER, WRITE, READ or None for `viewer` on the owner's node: the owner, else the best
    level any share on the node or a folder above it grants the viewer (as a user, or through a
    group they are in now). A node in the trash, or missing, grants nothing."""
    if viewer.user_id == owner:
        return OWNER
    shares = sharing_store()
    found: list[str] = []
    current = node_id
    for _ in range(MAX_WALK):
        try:
            node = tree.get_node(owner, current)
        except errors.NotFound:
            return None
        found += [s.level for s in shares.shares_of_node(owner, current) if viewer.is_granted(s)]
        if WRITE in found:
            return WRITE
        if node.parent_id is None:
            break
        current = node.parent_id
    return best(found)


def owner_active(owner: str) -> bool:
    """Whether the account `owner` (a user id) still exists."""
    return get_identity().user_exists(owner)


def groups_of_owner(share: Share) -> frozenset[str]:
    """The groups the share's owner is in now (none once their account is gone)."""
    try:
        return frozenset(get_identity().groups_of(share.owner_name))
    except errors.NotFound:
        return frozenset()


def owner_may_share_with(share: Share, owner_groups: frozenset[str]) -> bool:
    """Whether a group share's owner may share with its group now: a member of it (or an
    admin), as when it was made. An owner taken out of the group stops sharing with it, and
    it grants again if they are put back."""
    return share.grantee in owner_groups or "admins" in owner_groups


def group_share_void(share: Share, group_created: float | None,
                     owner_groups: Callable[[], frozenset[str]]) -> str | None:
    """Why a group share grants its group's members nothing now (None: it grants), in words
    for its owner: the group deleted; made again since the share (a group deleted and made
    again under the same name is another group, and inherits nothing); the owner no longer
    in it. `group_created`: when the group of that name was made (None: there is none);
    `owner_groups()`, the owner's groups now, is asked only when the rest holds."""
    if group_created is None:
        return f"the group {share.grantee_name} is deleted"
    if not made_to_the_group_now(share, group_created):
        return (f"made to an earlier group named {share.grantee_name}, deleted since; "
                f"share the item with the group again")
    if not owner_may_share_with(share, owner_groups()):
        return f"you are no longer in the group {share.grantee_name}"
    return None


def made_to_the_group_now(share: Share, group_created: float | None) -> bool:
    """Whether a group share was made to the group of its name that exists now (created at
    `group_created`; None: there is none), not to one deleted since and made again."""
    return group_created is not None and group_created <= share.created
