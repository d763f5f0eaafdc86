"""Directories and names: resolving paths, creating, listing, moving, renaming, deleting."""
from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime, timezone

from cloudstrype import errors
from cloudstrype.tree.store import (
    DIRECTORY,
    FILE,
    MAX_WALK,
    ROOT,
    TRASH,
    BadCursor,
    Changed,
    Entry,
    NameTaken,
    Node,
    tree_store,
)

MAX_NAME_BYTES = 255
MAX_DEPTH = 64
PAGE_LIMIT_MAX = 1000


def now() -> float:
    return time.time()


def iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, timezone.utc).isoformat()


class _RandomIds(threading.local):
    """Random bytes for ids, read from the OS a page at a time per thread: a batch names
    thousands of nodes and versions, and each read of the OS's generator lets go of the GIL,
    which under load costs a wait to get it back. Ids only; keys and nonces read the OS."""
    def __init__(self):
        self.buffer, self.used = b"", 0


_ids = _RandomIds()
_IDS_READ = 4096


def _forget_ids_after_fork() -> None:
    global _ids
    _ids = _RandomIds()         # a forked child must not hand out its parent's ids


os.register_at_fork(after_in_child=_forget_ids_after_fork)


def random_hex(size: int) -> str:
    """`size` random bytes as hex, from this thread's buffer of the OS's generator."""
    ids = _ids
    if ids.used + size > len(ids.buffer):
        ids.buffer, ids.used = os.urandom(max(_IDS_READ, size)), 0
    chunk = ids.buffer[ids.used:ids.used + size]
    ids.used += size
    return chunk.hex()


def new_node_id() -> str:
    """32 hex digits: the millisecond (12) then 80 random bits (20). New nodes, their versions
    and their entries then land at the end of their tables' B-trees, not at random places: a
    batch's commit rewrites a few pages, not one page per file."""
    return f"{int(time.time() * 1000) & 0xFFFFFFFFFFFF:012x}{random_hex(10)}"


# -- names and paths ------------------------------------------------------------------------------

def check_name(name) -> str:
    if not isinstance(name, str) or name == "":
        raise errors.BadRequest("A name must not be empty.", code="invalid_name")
    if "/" in name or "\x00" in name:
        raise errors.BadRequest(f"A name cannot contain '/' or NUL: {name!r}.",
                                code="invalid_name")
    if name in (".", ".."):
        raise errors.BadRequest(f"'{name}' is not a valid name.", code="invalid_name")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise errors.BadRequest(f"A name is at most {MAX_NAME_BYTES} bytes of UTF-8.",
                                code="invalid_name")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise errors.BadRequest("A name must be valid Unicode text.", code="invalid_name") \
            from None
    return name


def split_path(path) -> list[str]:
    """'/a/b' -> ['a', 'b']. Absolute paths only; '.', '..' and empty segments are refused."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise errors.BadRequest(f"Paths are absolute, like /photos/2024; got {path!r}.",
                                code="invalid_path")
    parts = [p for p in path.split("/")]
    segments = parts[1:]
    if segments and segments[-1] == "":
        segments = segments[:-1]          # a trailing slash is harmless
    for segment in segments:
        if segment == "":
            raise errors.BadRequest(f"The path {path!r} has an empty segment ('//').",
                                    code="invalid_path")
        check_name(segment)
    if len(segments) > MAX_DEPTH:
        raise errors.BadRequest(f"Paths are at most {MAX_DEPTH} levels deep.",
                                code="invalid_path")
    return segments



# -- nodes ----------------------------------------------------------------------------------------

def root(owner: str) -> Node:
    return tree_store().ensure_root(owner, now())


def get_node(owner: str, node_id: str) -> Node:
    # In the trash, or under a directory that is: reachable through the trash routes only.
    node = get_nodes(owner, [node_id])[0].get(node_id)
    if node is None:
        raise no_node(node_id)
    return node


def no_node(node_id) -> errors.NotFound:
    """The 404 of an id that names nothing the caller may see."""
    if not _node_id_shaped(node_id):
        return errors.NotFound(f"No file or directory {errors.shown(repr(node_id))}.",
                               code="node_not_found")
    return errors.NotFound(f"No file or directory {node_id}.", code="node_not_found")


def _node_id_shaped(node_id) -> bool:
    return isinstance(node_id, str) and 0 < len(node_id) <= 64


class Lineage:
    """Directories' chains of ancestors (the directory first, the root last), each directory
    read once: a batch of files in a few directories costs a few reads, not a walk per file.
    None for a directory in the trash, under one, or gone."""

    def __init__(self, owner: str):
        self.owner = owner
        self._chains: dict[str, tuple[str, ...] | None] = {ROOT: (ROOT,)}

    def chain(self, directory_id: str | None) -> tuple[str, ...] | None:
        walked, current = [], directory_id
        while current not in self._chains:
            node = tree_store().get_node(self.owner, current) if current else None
            if node is None or node.parent_id in (None, TRASH) or len(walked) > MAX_WALK:
                self._chains[current] = None
                break
            walked.append(current)
            current = node.parent_id
        chain = self._chains[current]
        for directory in reversed(walked):
            chain = None if chain is None else (directory, *chain)
            self._chains[directory] = chain
        return self._chains[directory_id]


def get_nodes(owner: str, node_ids: list[str]) -> tuple[dict[str, Node], Lineage]:
    """The nodes among `node_ids` that get_node would answer (the others, unknown or in the
    trash, left out), read together; and the lineage it walked."""
    lineage = Lineage(owner)
    wanted = [i for i in node_ids if _node_id_shaped(i)]
    found = tree_store().get_nodes(owner, [i for i in wanted if i != ROOT])
    nodes = {node_id: node for node_id, node in found.items()
             if lineage.chain(node.parent_id) is not None}
    if ROOT in wanted:
        nodes[ROOT] = root(owner)
    return nodes, lineage


def child(owner: str, parent_id: str, name: str) -> Entry | None:
    return tree_store().get_entry(owner, parent_id, name)


def resolve(owner: str, path: str, base: Node | None = None) -> Node:
    """The node at `path`, from the owner's root or from `base` (the top of a share)."""
    names = split_path(path)
    if not names:
        return base or root(owner)
    # The entries carry id and type: only the last node is read.
    node_id, node_type = (base.node_id, base.type) if base else (ROOT, DIRECTORY)
    walked = ""
    for name in names:
        walked += "/" + name
        if node_type != DIRECTORY:
            raise errors.Conflict(f"{walked.rsplit('/', 1)[0] or '/'} is a file, not a "
                                  f"directory.", code="not_a_directory")
        entry = child(owner, node_id, name)
        if entry is None:
            raise errors.NotFound(f"Nothing at {walked}.", code="path_not_found")
        node_id, node_type = entry.node_id, entry.type
    return get_node(owner, node_id)


def _parent(owner: str, node: Node) -> Node:
    """The node's directory, read as it is (one read: get_node would check the whole chain
    above it again, and a walk up a deep path would read it depth² times); NotFound when the
    node is in the trash or its directory is gone."""
    parent = tree_store().get_node(owner, node.parent_id) \
        if node.parent_id not in (None, TRASH) else None
    if parent is None:
        raise no_node(node.node_id)
    return parent


def path_of(owner: str, node: Node, base: Node | None = None) -> str:
    """The node's path from the owner's root, or from `base` (a share's top) when given.
    NotFound when it is in the trash, or under a directory that is."""
    names = []
    current = node
    for _ in range(MAX_WALK + 1):
        if current.parent_id is None or (base is not None and current.node_id == base.node_id):
            break
        names.append(current.name)
        current = _parent(owner, current)
    return "/" + "/".join(reversed(names))


def make_dirs(owner: str, path: str, base: Node | None = None) -> tuple[Node, bool]:
    """The directory at `path` (from the root, or from `base`), creating it and missing
    parents; (node, created)."""
    names = split_path(path)
    node = base or root(owner)
    # Walked by the entries (id, type, name): only the last node is read (reading each one
    # checked the chain above it again, depth² reads down a deep path).
    node_id, node_type, node_name = node.node_id, node.type, node.name
    created = False
    for name in names:
        if node_type != DIRECTORY:
            raise errors.Conflict(f"'{node_name}' is a file, not a directory.",
                                  code="not_a_directory")
        entry = child(owner, node_id, name)
        if entry is None:
            node, made = _create_dir(owner, node_id, name)
            created = created or made
            node_id, node_type, node_name = node.node_id, node.type, node.name
        else:
            node_id, node_type, node_name = entry.node_id, entry.type, entry.name
    if node_type != DIRECTORY:
        raise errors.Conflict(f"{path} is a file, not a directory.", code="not_a_directory")
    return (node if node.node_id == node_id else get_node(owner, node_id)), created


def check_dirs(owner: str, path: str, base: Node | None = None) -> str | None:
    """What make_dirs would refuse, without making anything: a file where `path` needs a
    directory (409 not_a_directory). Folders that do not exist yet are fine. The directory's
    id if it exists."""
    start = base or root(owner)
    node_id, node_type, node_name = start.node_id, start.type, start.name
    for name in split_path(path):
        if node_type != DIRECTORY:
            raise errors.Conflict(f"'{node_name}' is a file, not a directory.",
                                  code="not_a_directory")
        entry = child(owner, node_id, name)
        if entry is None:
            return None
        node_id, node_type, node_name = entry.node_id, entry.type, entry.name
    if node_type != DIRECTORY:
        raise errors.Conflict(f"{path} is a file, not a directory.", code="not_a_directory")
    return node_id


def _create_dir(owner: str, parent_id: str, name: str) -> tuple[Node, bool]:
    stamp = now()
    node = Node(owner, new_node_id(), DIRECTORY, name, parent_id, created=stamp,
                modified=stamp)
    try:
        return tree_store().create(node), True
    except NameTaken:
        # Someone created the same name at the same moment: use theirs (its type is checked
        # by the caller).
        existing = child(owner, parent_id, name)
        if existing is None:
            raise errors.Conflict(f"Could not create '{name}'; try again.",
                                  code="concurrent_change") from None
        return get_node(owner, existing.node_id), False


# -- listing --------------------------------------------------------------------------------------

def describe(owner: str, node: Node, path: str | None = None) -> dict:
    info = {"id": node.node_id, "name": node.name, "type": node.type,
            "size": int(node.size or 0), "created": iso(node.created),
            "modified": iso(node.modified), "attributes": node.attributes or {}}
    if path is not None:
        info["path"] = path
    if node.type == FILE:
        info.update({"content_type": node.content_type, "sha256": node.sha256,
                     "etag": node.etag, "version": node.version_id,
                     "durability": node.durability, "encryption": node.encryption})
    return info


def list_children(owner: str, directory_id: str, limit: int, cursor: str | None = None
                  ) -> tuple[list[dict], str | None]:
    try:
        entries, next_cursor = tree_store().list_entries(owner, directory_id, limit,
                                                         cursor or None)
    except BadCursor:
        raise errors.BadRequest("The 'cursor' is not one this API gave out.",
                                code="invalid_cursor") from None
    return [{"id": e.node_id, "name": e.name, "type": e.type, "size": e.size,
             "modified": iso(e.modified), **({"sha256": e.sha256} if e.sha256 else {})}
            for e in entries], next_cursor


def tree(owner: str, node: Node, depth: int, limit: int, cursor: str | None,
         base: Node | None = None) -> dict:
    """A directory with its children to `depth` levels; the first level is paginated."""
    info = describe(owner, node, path_of(owner, node, base))
    if node.type != DIRECTORY or depth <= 0:
        return info
    children, next_cursor = list_children(owner, node.node_id, limit, cursor)
    _expand(owner, children, depth - 1, limit, [MAX_TREE_ENTRIES - len(children)])
    info["children"] = children
    info["next_cursor"] = next_cursor
    return info


# The most entries one answer lists below its first level (a response must stay small).
MAX_TREE_ENTRIES = 5000


def _expand(owner: str, entries: list[dict], levels: int, limit: int, budget: list[int]) -> None:
    """Give each directory among `entries` its children, `levels` deep, each level's first
    `limit`. A directory with more children, or left unexpanded because the answer is full, is
    marked `truncated`: list it by its path for the rest."""
    if levels <= 0:
        return
    for entry in entries:
        if entry["type"] != DIRECTORY:
            continue
        if budget[0] <= 0:
            entry["truncated"] = True
            continue
        sub, more = list_children(owner, entry["id"], min(limit, budget[0]))
        budget[0] -= len(sub)
        entry["children"] = sub
        if more:
            entry["truncated"] = True
        _expand(owner, sub, levels - 1, limit, budget)


# -- changing names and places ---------------------------------------------------------------

def rename_or_move(owner: str, node: Node, new_name: str | None,
                   new_directory: str | None, base: Node | None = None) -> Node:
    """`new_directory` is a path from the root, or from `base` (a share's top: nothing moves
    out of a share)."""
    if node.node_id == ROOT:
        raise errors.BadRequest("The root directory cannot be renamed or moved.",
                                code="invalid_target")
    name = check_name(new_name) if new_name is not None else node.name
    parent_id = node.parent_id
    above: list[Node] = []
    if new_directory is not None:
        parent, _ = make_dirs(owner, new_directory, base)
        if node.type == DIRECTORY:
            above = _refuse_cycle(owner, node, parent)
        refuse_too_deep(owner, node, parent)
        parent_id = parent.node_id
    if parent_id == node.parent_id and name == node.name:
        return node
    try:
        # The target's ancestors must be where they were when no cycle was found: two
        # directories moved into each other at once would otherwise both go, each into the
        # other, a loop cut off from the root with everything in it.
        return tree_store().move(node, parent_id, name, unmoved=above)
    except NameTaken:
        where = path_of(owner, get_node(owner, parent_id), base)
        raise errors.Conflict(f"'{name}' exists already in {where}.",
                              code="name_exists") from None
    except Changed:
        raise errors.Conflict("The item changed while it was being moved; try again.",
                              code="concurrent_change") from None


def _refuse_cycle(owner: str, moving: Node, target: Node) -> list[Node]:
    """Refuse moving a directory under itself; the chain from `target` up to the root (the
    directories that must not move meanwhile)."""
    current, chain = target, []
    for _ in range(MAX_DEPTH + 1):
        if current.node_id == moving.node_id:
            raise errors.BadRequest("A directory cannot be moved into itself or its own "
                                    "subdirectory.", code="invalid_target")
        chain.append(current)
        if current.parent_id is None:
            return chain
        current = _parent(owner, current)
    return chain


# How many folders, and pages of entries, a deepening move may read to find its folder's
# deepest level. Folders are what the walk follows (a level below a file there is none); the
# pages bound the time (a folder of 100,000 files is 100 pages, ~2 s). Counting every entry
# refused to move a flat folder of 30,000 files one level deeper.
DEPTH_CHECK_FOLDERS = 20_000
DEPTH_CHECK_PAGES = 250


def depth_of(owner: str, node: Node) -> int:
    """Levels below the root (the root is 0)."""
    depth, current = 0, node
    while current.parent_id is not None and depth <= MAX_WALK:
        depth += 1
        current = _parent(owner, current)
    return depth


def refuse_too_deep(owner: str, node: Node, parent: Node, depth: int | None = None) -> None:
    """Refuse a move that would put anything deeper than MAX_DEPTH levels: its path could
    not be written (nor its trash item put back where it was). Every path is within the limit
    already, so a move that does not take the item deeper is fine as it is; one that does has
    the folder's levels counted, down to what the new place leaves room for. `depth`: the
    node's depth where it was (default: where it is)."""
    new_depth = depth_of(owner, parent) + 1
    too_deep = errors.BadRequest(f"This move would put items more than {MAX_DEPTH} levels deep, "
                                 f"the most a path may have; move it higher up.",
                                 code="too_deep", details={"max_depth": MAX_DEPTH})
    if new_depth > MAX_DEPTH:
        raise too_deep
    if node.type != DIRECTORY or new_depth <= (depth_of(owner, node) if depth is None
                                               else depth):
        return
    frontier, folders, pages = [node.node_id], 0, 0
    for level in range(MAX_DEPTH - new_depth + 1):
        below = []
        for directory_id in frontier:
            cursor = None
            while True:
                entries, cursor = tree_store().list_entries(owner, directory_id, PAGE_LIMIT_MAX,
                                                            cursor)
                pages += 1
                folders += sum(1 for e in entries if e.type == DIRECTORY)
                if entries and level == MAX_DEPTH - new_depth:
                    raise too_deep
                if folders > DEPTH_CHECK_FOLDERS or pages > DEPTH_CHECK_PAGES:
                    raise errors.BadRequest(
                        f"This folder holds too many items to check, in one request, that "
                        f"moving it deeper keeps every path within {MAX_DEPTH} levels; move it "
                        f"to a folder no deeper than where it is, or move its contents in "
                        f"parts.", code="too_deep", details={"max_depth": MAX_DEPTH})
                below += [e.node_id for e in entries if e.type == DIRECTORY]
                if cursor is None:
                    break
        frontier = below
        if not frontier:
            return


# What one item's custom attributes may hold, all of them together.
MAX_ATTRIBUTES_BYTES = 16 * 1024


def set_attributes(owner: str, node: Node, attributes: dict) -> Node:
    if len(json.dumps(attributes)) > MAX_ATTRIBUTES_BYTES:
        raise errors.BadRequest("Custom attributes are at most 16 KB of JSON.",
                                code="invalid_field", details={"field": "attributes"})
    for key, value in attributes.items():
        if not isinstance(value, (str, int, float, bool)) and value is not None:
            raise errors.BadRequest(f"Attribute '{key}' must be a string, number, boolean or "
                                    f"null.", code="invalid_field",
                                    details={"field": "attributes"})
    merged = {**(node.attributes or {}), **attributes}
    merged = {k: v for k, v in merged.items() if v is not None}
    # The bound is on what the item holds, not on one call: calls adding 15 KB each grew an
    # item past DynamoDB's 400 KB (a 503 that never passed) while SQLite took any size.
    if len(json.dumps(merged)) > MAX_ATTRIBUTES_BYTES:
        raise errors.BadRequest(f"An item's custom attributes are at most "
                                f"{MAX_ATTRIBUTES_BYTES // 1024} KB of JSON in all; these would "
                                f"make {len(json.dumps(merged))} bytes. Remove some (set them to "
                                f"null).", code="invalid_field", details={"field": "attributes"})
    try:
        return tree_store().set_attributes(node, merged)
    except Changed:
        raise errors.Conflict("The item changed while its attributes were being saved; try "
                              "again.", code="concurrent_change") from None


def unlink(owner: str, node: Node) -> None:
    """Remove a node's entry and record (its content is the caller's to free first)."""
    tree_store().remove(node)
