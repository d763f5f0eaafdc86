"""Directories and names: resolving paths, creating, listing, moving, renaming, deleting."""
from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime, timezone

from pynamodb.exceptions import PutError, TransactWriteError

from cloudstrype import db, errors
from cloudstrype.tree.models import DIRECTORY, FILE, ROOT, EntryRecord, NodeRecord

MAX_NAME_BYTES = 255
MAX_DEPTH = 64
PAGE_LIMIT_MAX = 1000


def now() -> datetime:
    return datetime.now(timezone.utc)


def new_node_id() -> str:
    return uuid.uuid4().hex


def parent_ref(owner: str, parent_id: str) -> str:
    return f"{owner}#{parent_id}"


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

def root(owner: str) -> NodeRecord:
    try:
        return NodeRecord.get(owner, ROOT)
    except NodeRecord.DoesNotExist:
        record = NodeRecord(owner, ROOT, type=DIRECTORY, name="", parent_id=None,
                            created=now(), modified=now())
        try:
            record.save(condition=NodeRecord.node_id.does_not_exist())
        except PutError:
            return NodeRecord.get(owner, ROOT, consistent_read=True)
        return record


def get_node(owner: str, node_id: str) -> NodeRecord:
    if not isinstance(node_id, str) or not node_id or len(node_id) > 64:
        raise errors.NotFound(f"No file or directory {node_id!r}.", code="node_not_found")
    if node_id == ROOT:
        return root(owner)
    try:
        return NodeRecord.get(owner, node_id, consistent_read=True)
    except NodeRecord.DoesNotExist:
        raise errors.NotFound(f"No file or directory {node_id}.", code="node_not_found") \
            from None


def child(owner: str, parent_id: str, name: str) -> EntryRecord | None:
    try:
        return EntryRecord.get(parent_ref(owner, parent_id), name, consistent_read=True)
    except EntryRecord.DoesNotExist:
        return None


def resolve(owner: str, path: str) -> NodeRecord:
    node = root(owner)
    walked = ""
    for name in split_path(path):
        walked += "/" + name
        if node.type != DIRECTORY:
            raise errors.Conflict(f"{walked.rsplit('/', 1)[0] or '/'} is a file, not a "
                                  f"directory.", code="not_a_directory")
        entry = child(owner, node.node_id, name)
        if entry is None:
            raise errors.NotFound(f"Nothing at {walked}.", code="path_not_found")
        node = get_node(owner, entry.node_id)
    return node


def path_of(owner: str, node: NodeRecord) -> str:
    names = []
    current = node
    for _ in range(MAX_DEPTH + 1):
        if current.parent_id is None:
            break
        names.append(current.name)
        current = get_node(owner, current.parent_id)
    return "/" + "/".join(reversed(names))


def make_dirs(owner: str, path: str) -> tuple[NodeRecord, bool]:
    """The directory at `path`, creating it and missing parents; (node, created)."""
    node = root(owner)
    created = False
    for name in split_path(path):
        if node.type != DIRECTORY:
            raise errors.Conflict(f"'{node.name}' is a file, not a directory.",
                                  code="not_a_directory")
        entry = child(owner, node.node_id, name)
        if entry is None:
            node, made = _create_dir(owner, node, name)
            created = created or made
        else:
            node = get_node(owner, entry.node_id)
    if node.type != DIRECTORY:
        raise errors.Conflict(f"{path} is a file, not a directory.", code="not_a_directory")
    return node, created


def _create_dir(owner: str, parent: NodeRecord, name: str) -> tuple[NodeRecord, bool]:
    stamp = now()
    node = NodeRecord(owner, new_node_id(), type=DIRECTORY, name=name,
                      parent_id=parent.node_id, created=stamp, modified=stamp)
    entry = EntryRecord(parent_ref(owner, parent.node_id), name, node_id=node.node_id,
                        type=DIRECTORY, size=0, modified=stamp)
    try:
        with db.transaction() as tx:
            tx.save(entry, condition=EntryRecord.name.does_not_exist())
            tx.save(node, condition=NodeRecord.node_id.does_not_exist())
    except TransactWriteError:
        # Someone created the same name at the same moment: use theirs if it is a directory.
        existing = child(owner, parent.node_id, name)
        if existing is None:
            raise errors.Conflict(f"Could not create '{name}'; try again.",
                                  code="concurrent_change") from None
        return get_node(owner, existing.node_id), False
    return node, True


# -- listing --------------------------------------------------------------------------------------

def describe(owner: str, node: NodeRecord, path: str | None = None) -> dict:
    info = {"id": node.node_id, "name": node.name, "type": node.type,
            "size": int(node.size or 0), "created": node.created.isoformat(),
            "modified": node.modified.isoformat(), "attributes": node.attributes or {}}
    if path is not None:
        info["path"] = path
    if node.type == FILE:
        info.update({"content_type": node.content_type, "sha256": node.sha256,
                     "etag": node.etag, "version": node.version_id,
                     "durability": node.durability, "encryption": node.encryption})
    return info


def _entry_info(entry: EntryRecord) -> dict:
    return {"id": entry.node_id, "name": entry.name, "type": entry.type,
            "size": int(entry.size or 0), "modified": entry.modified.isoformat()}


def _encode_cursor(key: dict | None) -> str | None:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode() if key else None


def _decode_cursor(cursor: str | None) -> dict | None:
    if not cursor:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if not isinstance(key, dict):
            raise ValueError
        return key
    except (ValueError, UnicodeDecodeError):
        raise errors.BadRequest("The 'cursor' is not one this API gave out.",
                                code="invalid_cursor") from None


def list_children(owner: str, directory_id: str, limit: int, cursor: str | None = None
                  ) -> tuple[list[dict], str | None]:
    query = EntryRecord.query(parent_ref(owner, directory_id), limit=limit,
                              last_evaluated_key=_decode_cursor(cursor), page_size=limit)
    children = [_entry_info(entry) for entry in query]
    return children, _encode_cursor(query.last_evaluated_key)


def tree(owner: str, node: NodeRecord, depth: int, limit: int, cursor: str | None) -> dict:
    """A directory with its children to `depth` levels; the first level is paginated."""
    info = describe(owner, node, path_of(owner, node))
    if node.type != DIRECTORY or depth <= 0:
        return info
    children, next_cursor = list_children(owner, node.node_id, limit, cursor)
    if depth > 1:
        for entry in children:
            if entry["type"] == DIRECTORY:
                sub, more = list_children(owner, entry["id"], limit)
                entry["children"] = sub
                if more:
                    entry["truncated"] = True
    info["children"] = children
    info["next_cursor"] = next_cursor
    return info


# -- changing names and places ---------------------------------------------------------------

def rename_or_move(owner: str, node: NodeRecord, new_name: str | None,
                   new_directory: str | None) -> NodeRecord:
    if node.node_id == ROOT:
        raise errors.BadRequest("The root directory cannot be renamed or moved.",
                                code="invalid_target")
    name = check_name(new_name) if new_name is not None else node.name
    parent = get_node(owner, node.parent_id)
    if new_directory is not None:
        parent, _ = make_dirs(owner, new_directory)
        if node.type == DIRECTORY:
            _refuse_cycle(owner, node, parent)
    if parent.node_id == node.parent_id and name == node.name:
        return node
    old_entry = child(owner, node.parent_id, node.name)
    stamp = now()
    entry = EntryRecord(parent_ref(owner, parent.node_id), name, node_id=node.node_id,
                        type=node.type, size=int(node.size or 0), modified=stamp)
    try:
        with db.transaction() as tx:
            tx.save(entry, condition=EntryRecord.name.does_not_exist())
            if old_entry is not None:
                tx.delete(old_entry, condition=EntryRecord.node_id == node.node_id)
            tx.update(node, actions=[NodeRecord.name.set(name),
                                     NodeRecord.parent_id.set(parent.node_id),
                                     NodeRecord.modified.set(stamp)],
                      condition=NodeRecord.revision == node.revision)
    except TransactWriteError:
        if child(owner, parent.node_id, name) is not None:
            raise errors.Conflict(f"'{name}' exists already in {path_of(owner, parent)}.",
                                  code="name_exists") from None
        raise errors.Conflict("The item changed while it was being moved; try again.",
                              code="concurrent_change") from None
    return get_node(owner, node.node_id)


def _refuse_cycle(owner: str, moving: NodeRecord, target: NodeRecord) -> None:
    current = target
    for _ in range(MAX_DEPTH + 1):
        if current.node_id == moving.node_id:
            raise errors.BadRequest("A directory cannot be moved into itself or its own "
                                    "subdirectory.", code="invalid_target")
        if current.parent_id is None:
            return
        current = get_node(owner, current.parent_id)


def set_attributes(owner: str, node: NodeRecord, attributes: dict) -> NodeRecord:
    if len(json.dumps(attributes)) > 16 * 1024:
        raise errors.BadRequest("Custom attributes are at most 16 KB of JSON.",
                                code="invalid_field", details={"field": "attributes"})
    for key, value in attributes.items():
        if not isinstance(value, (str, int, float, bool)) and value is not None:
            raise errors.BadRequest(f"Attribute '{key}' must be a string, number, boolean or "
                                    f"null.", code="invalid_field",
                                    details={"field": "attributes"})
    merged = {**(node.attributes or {}), **attributes}
    merged = {k: v for k, v in merged.items() if v is not None}
    node.update(actions=[NodeRecord.attributes.set(merged), NodeRecord.modified.set(now())])
    return get_node(owner, node.node_id)


def unlink(owner: str, node: NodeRecord) -> None:
    """Remove a node's entry and record (its content is the caller's to free first)."""
    with db.transaction() as tx:
        entry = child(owner, node.parent_id, node.name)
        if entry is not None and entry.node_id == node.node_id:
            tx.delete(entry)
        tx.delete(node)
