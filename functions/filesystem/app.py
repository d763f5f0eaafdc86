"""Filesystem service: the tree, file metadata and versions, file content, shares and links.
Routes only; the work is in cloudstrype.tree and cloudstrype.sharing.

Every tree route works through a scope (cloudstrype.sharing.scope): the caller's own tree, or,
with the `share` query parameter, the inside of a share granted to the caller."""
import functools
import secrets
from email.utils import formatdate
from urllib.parse import quote

from chalice import Rate
from cloudstrype import errors, quota
from cloudstrype.api.body import as_form_filename, take_field
from cloudstrype.api.security_headers import FILE_CONTENT_HEADERS
from cloudstrype.api.service import ADMINS, PUBLIC, Reply, ServiceApp, json_text
from cloudstrype.sharing import links, shares
from cloudstrype.sharing.scope import SHARE_ROUTES, scope_for
from cloudstrype.tree import compaction, files, trash, tree

app = ServiceApp("filesystem", "/api/filesystem")


def _scope(call, write: bool = False):
    """The caller's own tree, or the inside of the share named by `?share=`."""
    scope = scope_for(call.principal, call.query.get("share"))
    if write:
        scope.require_write()
    return scope


_SHARING_IS_THE_OWNERS = ("Sharing and links are the owner's: a recipient cannot share, link or "
                          "manage what was shared with them; ask its owner, or leave out 'share' "
                          "for your own files.")
_LINK_NAMES_ITS_ITEM = ("A link's token names what it reaches, and 'path' an item below it; "
                       "leave out 'share'.")
# Why a route of the caller's own tree refuses `?share=` (SHARE_ROUTES take it), where there
# is more to say than that it works in their own files only.
_OWN_TREE_ONLY = {
    "/chunks/{file_id}": "Where a shared file's content is stored is its owner's to see; ask "
                         "without 'share' for your own files.",
    "/shares": _SHARING_IS_THE_OWNERS, "/shares/{share_id}": _SHARING_IS_THE_OWNERS,
    "/links": _SHARING_IS_THE_OWNERS, "/links/{link_id}": _SHARING_IS_THE_OWNERS,
    "/public/{token}": _LINK_NAMES_ITS_ITEM, "/public/{token}/data": _LINK_NAMES_ITS_ITEM,
    "/info/{file_id}/versions/{version_id}": "Earlier versions of a shared file are its "
                                             "owner's to keep or delete; leave out 'share' "
                                             "for your own files.",
}


def _endpoint(path: str, methods=("GET",), **kwargs):
    """app.endpoint, refusing `?share=` on the routes not in SHARE_ROUTES: ignored, it would
    have a recipient act on their own files (empty their own trash, change their own
    settings) believing they act in the share."""
    def register(handler):
        @functools.wraps(handler)
        def checked(call, **params):
            if call.query.get("share") is not None and \
                    (call.method.upper(), path) not in SHARE_ROUTES:
                raise errors.BadRequest(
                    _OWN_TREE_ONLY.get(path) or f"{call.method.upper()} /api/filesystem{path} "
                    f"works in your own files only, not inside a share; leave out 'share'.",
                    code="not_in_a_share")
            return handler(call, **params)
        return app.endpoint(path, methods, **kwargs)(checked)
    return register


def _node_info(scope, node, written_at=None):
    """`written_at()`: for the answer to a write that has happened, the path it was written to,
    said if the item's path cannot be found now (a folder above it went to the trash at the
    same moment): a write that took place is never answered 404."""
    try:
        path = scope.path_of(node)
    except errors.NotFound:
        if written_at is None:
            raise
        path = written_at()
    info = tree.describe(scope.owner, node, path)
    if node.type == tree.FILE and not scope.shared:
        info.update(files.versions(scope.owner, node))
    return scope.shown(info)


def _joined(directory: str | None, name: str) -> str:
    return (directory or "/").rstrip("/") + "/" + name


def _batch_file_info(scope, node, directory: str, written) -> dict:
    """What _node_info says of a file a batch just wrote, without a lookup per file: its path
    is its directory's; of its versions, the one written (`written`, files.written_versions:
    every file's whole history made a batch's answer grow past a response's 6 MB after a few
    dozen puts of the same files, answered 502 after the batch was stored: GET /info/{id}
    lists them)."""
    info = tree.describe(scope.owner, node, directory.rstrip("/") + "/" + node.name)
    if not scope.shared:
        info["versions"] = [files.describe_version(written, current=True)]
    return scope.shown(info)


@_endpoint("/info")
def info_by_path(call):
    scope = _scope(call)
    node = scope.resolve(call.query.get("path", "/"))
    depth = call.query_int("depth", 1, minimum=0, maximum=5)
    limit = call.query_int("limit", 1000, minimum=1, maximum=tree.PAGE_LIMIT_MAX)
    found = tree.tree(scope.owner, node, depth, limit, call.query.get("cursor"), scope.base)
    if node.type == tree.FILE and not scope.shared:
        found.update(files.versions(scope.owner, node))           # as GET /info/{id} says
    return scope.shown(found)


@_endpoint("/info/{file_id}")
def info(call, file_id):
    scope = _scope(call)
    return _node_info(scope, scope.node(file_id))


@_endpoint("/info/{file_id}", ["POST"])
def save_info(call, file_id):
    scope = _scope(call, write=True)
    owner = scope.owner
    node = scope.node(file_id)
    call.only_fields("name", "path", "attributes")
    name = call.field("name", str, required=False)
    directory = call.field("path", str, required=False)
    attributes = call.field("attributes", dict, required=False)
    if name is None and directory is None and attributes is None:
        raise errors.BadRequest("Send at least one of 'name', 'path' or 'attributes'.",
                                code="missing_field")
    if name is not None or directory is not None:
        scope.not_top(node, "renamed or moved")
        node = tree.rename_or_move(owner, node, name, directory, scope.base)
    if attributes is not None:
        # (The shared folder's own attributes are its owner's, as its name is.)
        scope.not_top(node, "given attributes")
        node = tree.set_attributes(owner, node, attributes)
    return _node_info(scope, node, (lambda: _joined(directory, node.name)) if directory else None)


@_endpoint("/info/{file_id}", ["DELETE"])
def delete(call, file_id):
    scope = _scope(call, write=True)
    owner = scope.owner
    node = scope.node(file_id)
    scope.not_top(node, "deleted")
    if node.node_id == tree.ROOT:
        raise errors.BadRequest("The root directory cannot be deleted.", code="invalid_target")
    files.delete_node(owner, node)
    return Reply(status=204)


@_endpoint("/info/{file_id}/versions/{version_id}", ["DELETE"])
def delete_version(call, file_id, version_id):
    scope = _scope(call, write=True)          # never a share's: _endpoint refuses `share`
    if files.delete_earlier_version(scope.owner, scope.node(file_id), version_id):
        return Reply(status=204)
    return Reply({"complete": False,
                  "message": "The version's content is being freed; not all of it was in "
                             "this request's time. Delete it again to finish."}, status=202)


@_endpoint("/dirs", ["POST"])
def make_dirs(call):
    scope = _scope(call, write=True)
    node, created = scope.make_dirs(call.field("path"))
    return Reply(scope.shown(tree.describe(scope.owner, node, scope.path_of(node))),
                 status=201 if created else 200)


@_endpoint("/data", ["POST"])
def upload(call):
    fields, content, content_type, filename = {}, None, None, None
    for part in call.multipart():
        if part.name in ("path", "name", "durability", "encryption", "mtime"):
            take_field(fields, part)
        elif part.name == "file" or (part.name in (None, "") and part.filename is not None):
            if content is not None:
                raise errors.BadRequest("Send one file part per upload.",
                                        code="invalid_multipart")
            content, content_type, filename = part.data, part.content_type, part.filename
        else:
            raise errors.BadRequest(f"Unknown form field '{part.name}'; expected path, name, "
                                    f"file, durability, encryption, mtime.",
                                    code="invalid_multipart")
    if content is None:
        raise errors.BadRequest("The content is missing: send it as a form part named 'file'.",
                                code="missing_field", details={"field": "file"})
    # An explicit name wins (and an explicitly empty one is refused); else the part's filename.
    name = fields["name"] if "name" in fields else filename
    if name is None:
        raise errors.BadRequest("Field 'name' is required (or a filename on the file part).",
                                code="missing_field", details={"field": "name"})
    scope = _scope(call, write=True)
    scope.owners_scheme(fields.get("durability"), fields.get("encryption"))
    try:
        node = files.upload(scope.owner, fields.get("path") or "/", name, content, content_type,
                            fields.get("durability") or None, fields.get("encryption") or None,
                            fields.get("mtime") or None, base=scope.base)
    except errors.ApiError as exc:
        raise scope.told(exc) from None
    return Reply(_node_info(scope, node, lambda: _joined(fields.get("path"), node.name)),
                 status=201)


@_endpoint("/batch", ["POST"])
def upload_batch(call):
    """Many files into one directory: 207 with each file's own result."""
    files.check_batch_body(len(call.raw_body))
    fields, items = {}, []
    for part in call.multipart():
        if part.name in ("path", "durability", "encryption", "mtimes"):
            take_field(fields, part)
        elif part.name == "file":
            if part.filename is None:
                raise errors.BadRequest("Each file part needs a filename: the file's name.",
                                        code="invalid_multipart", details={"field": "file"})
            items.append(files.BatchFile(part.filename, part.data, part.content_type))
        else:
            raise errors.BadRequest(f"Unknown form field '{part.name}'; expected path, file "
                                    f"(one per file), mtimes, durability, encryption.",
                                    code="invalid_multipart")
    files.set_mtimes(items, fields.get("mtimes"), as_read=as_form_filename)
    scope = _scope(call, write=True)
    scope.owners_scheme(fields.get("durability"), fields.get("encryption"))
    results = files.upload_batch(scope.owner, fields.get("path") or "/", items,
                                 fields.get("durability") or None,
                                 fields.get("encryption") or None, base=scope.base)
    shown, directory = [], None
    written = {} if scope.shared else files.written_versions(
        scope.owner, [r for r in results if not isinstance(r, errors.ApiError)])
    for item, result in zip(items, results, strict=True):
        if isinstance(result, errors.ApiError):
            result = scope.told(result)
            shown.append({"name": item.name, "status": result.status, **result.body()})
            continue
        if directory is None:           # every file of a batch is in one directory
            try:
                directory = scope.path_of(tree.get_node(scope.owner, result.parent_id))
            except errors.NotFound:     # gone to the trash since: the files are written
                directory = fields.get("path") or "/"
        shown.append({"name": item.name, "status": 201,
                      "file": _batch_file_info(scope, result, directory,
                                               written.get(result.node_id, result))})
    created = sum(1 for r in shown if r["status"] == 201)
    return Reply({"results": shown, "created": created, "failed": len(shown) - created},
                 status=207)


@_endpoint("/read", ["POST"])
def read_batch(call):
    """Many small files' content in one answer (200, multipart/form-data): a `results` part,
    each asked id's result in order (200 with the file, or its error), then a part per file
    read, named by its id. Ids past what one answer carries are listed in `remaining`."""
    ids = _read_ids(call)
    scope = _scope(call)
    found = scope.nodes(ids)
    shown, wanted, remaining = [], [], []
    # Room for the frame, and for every id in `remaining` should it come to that.
    used = _READ_FRAME_BYTES + sum(len(json_text(file_id)) + 1 for file_id in ids)
    for n, file_id in enumerate(ids):
        try:
            node = found.get(file_id)
            if node is None:
                raise tree.no_node(file_id)
            files.check_batch_readable(node)
        except errors.ApiError as exc:
            node, result = None, {"id": file_id, "status": exc.status, **exc.body()}
        else:
            result = {"id": file_id, "status": 200, "file": scope.shown({
                "id": node.node_id, "name": node.name, "size": node.size,
                "sha256": node.sha256, "version": node.version_id,
                "modified": tree.iso(node.modified), "content_type": node.content_type})}
        cost = len(json_text(result)) + 1 + (_READ_PART_BYTES + len(file_id) + node.size
                                             if node else 0)
        if shown and used + cost > files.MAX_RESPONSE_BYTES:
            remaining = ids[n:]
            break
        used += cost
        shown.append(result)
        if node is not None:
            wanted.append((result, node))
    contents = files.read_current(scope.owner, [node for _, node in wanted])
    parts = []
    for (result, node), content in zip(wanted, contents, strict=True):
        if isinstance(content, errors.ApiError):
            result.pop("file")
            result.update(status=content.status, **content.body())
        else:
            parts.append((node.node_id, content))
    read = len(parts)
    body, content_type = _multipart_answer(
        {"results": shown, "read": read, "failed": len(shown) - read, "remaining": remaining},
        parts)
    return Reply(data=body, content_type=content_type)


# What a batch read's answer adds around its results and per file part (counted generously).
_READ_FRAME_BYTES = 512
_READ_PART_BYTES = 256


def _read_ids(call) -> list[str]:
    ids = call.field("ids", list)
    if not ids or len(ids) > files.MAX_BATCH_FILES:
        raise errors.BadRequest(f"'ids' must list 1 to {files.MAX_BATCH_FILES} file ids.",
                                code="invalid_field", details={"field": "ids"})
    if not all(isinstance(i, str) and 0 < len(i) <= 64 for i in ids):
        raise errors.BadRequest("Each of 'ids' must be a file id: text of 1 to 64 characters.",
                                code="invalid_field", details={"field": "ids"})
    return list(dict.fromkeys(ids))


def _multipart_answer(results: dict, parts: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = secrets.token_hex(16)
    while any(boundary.encode() in data for _, data in parts):
        boundary = secrets.token_hex(16)
    marker = f"--{boundary}".encode()
    pieces = [marker, b'\r\nContent-Disposition: form-data; name="results"\r\n'
              b"Content-Type: application/json\r\n\r\n", json_text(results).encode(), b"\r\n"]
    for file_id, data in parts:
        pieces += [marker, f'\r\nContent-Disposition: form-data; name="{file_id}"; '
                           f'filename="{file_id}"\r\nContent-Type: application/octet-stream'
                           f"\r\n\r\n".encode(), data, b"\r\n"]
    pieces += [marker, b"--\r\n"]
    return b"".join(pieces), f"multipart/form-data; boundary={boundary}"


@_endpoint("/data/{file_id}")
def download(call, file_id):
    scope = _scope(call)
    node = scope.node(file_id)
    if scope.shared and call.query.get("version"):
        raise errors.Forbidden("Earlier versions of a shared file are its owner's; a share "
                               "gives the current content.", code="versions_not_shared")
    if call.query.get("direct") is not None:
        return _direct(call, scope, node)
    return _content(call, scope.owner, node, call.query.get("version"))


def _direct(call, scope, node):
    """?direct=1: how to read the file's chunks without the server's copy of each byte
    (files.local_read_plan), for the bytes the Range names (else from the start). Only a
    program of the server's own OS user on its machine gets it (it can read the storages and
    the master key already); where a file's content is stored is its owner's to see."""
    if call.query["direct"] != "1":
        raise errors.BadRequest("'direct' takes the value 1.", code="invalid_parameter",
                                details={"parameter": "direct"})
    if not call.local_transfer:
        raise errors.BadRequest("'direct' is answered only through the local server's transfer "
                                "socket, to a program on its machine; leave it out over HTTP.",
                                code="direct_local_only")
    if scope.shared:
        raise errors.BadRequest(_OWN_TREE_ONLY["/chunks/{file_id}"], code="not_in_a_share")
    version = files.get_version(scope.owner, node, call.query.get("version"))
    size = int(version.size)
    first, last = files.parse_range(call.header("range"), size) or (0, max(size - 1, 0))
    return files.local_read_plan(scope.owner, version, first, last)


def _content(call, owner, node, version_id):
    """A file's content as a download: whole, or the range asked for; 304 if unchanged."""
    version = files.get_version(owner, node, version_id)
    size = int(version.size)
    headers = {"ETag": version.etag, "Accept-Ranges": "bytes",
               "Content-Disposition": f"attachment; filename*=UTF-8''{quote(node.name)}",
               "Last-Modified": formatdate(version.created, usegmt=True),
               **FILE_CONTENT_HEADERS}
    if not files.match(call.header("if-match"), version.etag):
        raise errors.PreconditionFailed(
            "This file has changed since the read that gave the ETag in If-Match (it is now "
            f"{version.etag}): read it again from the start, so as not to join two versions.",
            code="file_changed", headers={"ETag": version.etag})
    if files.none_match(call.header("if-none-match"), version.etag):
        return Reply(status=304, headers=headers)
    wanted = files.parse_range(call.header("range"), size) if files.range_applies(
        call.header("if-range"), version.etag, headers["Last-Modified"],
        lambda: files.alone_in_its_second(owner, node, version)) else None
    if wanted is None:
        if size > files.MAX_RESPONSE_BYTES:
            raise errors.PayloadTooLarge(
                f"This file is {size} bytes, more than one response can carry "
                f"({files.MAX_RESPONSE_BYTES}); read it in ranges, e.g. 'Range: bytes=0-"
                f"{files.MAX_RESPONSE_BYTES - 1}' (the CLI and web UI do this for you).",
                code="use_range", headers={"Accept-Ranges": "bytes",
                                           "X-Content-Length": str(size)})
        data = files.read(owner, version, 0, size - 1) if size else b""
        return Reply(data=data, content_type=files.served_type(version.content_type),
                     headers=headers)
    first, last = wanted
    if last - first + 1 > files.MAX_RESPONSE_BYTES:
        raise errors.PayloadTooLarge(f"Ask for at most {files.MAX_RESPONSE_BYTES} bytes per "
                                     f"range request.", code="range_too_large")
    headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    return Reply(data=files.read(owner, version, first, last), status=206,
                 content_type=files.served_type(version.content_type), headers=headers)


@_endpoint("/chunks/{file_id}")
def content_chunks(call, file_id):
    scope = scope_for(call.principal, None)
    node = scope.node(file_id)
    version = files.get_version(scope.owner, node, call.query.get("version"))
    chunks, packed = files.content_chunks(scope.owner, version)
    return {"version": version.version_id, "chunks": chunks, "packed": packed}


def _session_holder(scope) -> files.SessionHolder:
    """Whose upload sessions the request works on: the caller's own, or (inside a share) the
    ones the caller opened through that share."""
    if not scope.shared:
        return files.OWNER_SESSION
    return files.SessionHolder(scope.viewer.user_id, scope.share.share_id, scope.base)


@_endpoint("/uploads", ["POST"])
def create_upload(call):
    scope = _scope(call, write=True)
    durability = call.field("durability", required=False)
    encryption = call.field("encryption", required=False)
    scope.owners_scheme(durability, encryption)
    try:
        session, new = files.create_session(
            scope.owner, call.field("path", str, required=False, default="/"),
            call.field("name"), call.field("size", int),
            call.field("content_type", required=False), durability, encryption,
            call.field("sha256", required=False), _session_holder(scope),
            call.field("upload_id", required=False))
    except errors.ApiError as exc:
        raise scope.told(exc) from None
    return Reply(scope.shown(session), status=201 if new else 200)


def _listed_or_aborted_holder(call, scope) -> files.SessionHolder:
    """`recipients=1`: the owner's view of the sessions recipients opened in their tree."""
    if call.query.get("recipients") is None:
        return _session_holder(scope)
    if call.query["recipients"] != "1":
        raise errors.BadRequest("'recipients' takes the value 1.", code="invalid_parameter",
                                details={"parameter": "recipients"})
    if scope.shared:
        raise errors.BadRequest("'recipients' is for the owner of the tree; leave out "
                                "'share'.", code="invalid_parameter",
                                details={"parameter": "recipients"})
    return files.RECIPIENTS


@_endpoint("/uploads")
def list_uploads(call):
    scope = _scope(call, write=True)
    return {"uploads": files.list_sessions(scope.owner, _listed_or_aborted_holder(call, scope))}


@_endpoint("/uploads/{upload_id}")
def upload_status(call, upload_id):
    scope = _scope(call, write=True)
    return scope.shown(files.session_info(
        files.get_session(scope.owner, upload_id, _session_holder(scope))))


@_endpoint("/uploads/{upload_id}/parts/{part}", ["PUT"])
def upload_part(call, upload_id, part):
    scope = _scope(call, write=True)
    try:
        return files.put_part(scope.owner, upload_id, call.path_int("part", code="invalid_part"),
                              call.raw_body, _session_holder(scope))
    except errors.ApiError as exc:
        raise scope.told(exc) from None


@_endpoint("/uploads/{upload_id}/commit", ["POST"])
def commit_upload(call, upload_id):
    scope = _scope(call, write=True)
    holder = _session_holder(scope)
    mtime = call.field("mtime", (int, float), required=False)
    sha256 = call.field("sha256", str, required=False)
    session = files.get_session(scope.owner, upload_id, holder)
    try:
        node = files.commit_session(scope.owner, upload_id, mtime, sha256, holder)
    except errors.ApiError as exc:
        raise scope.told(exc) from None
    return Reply(_node_info(scope, node, lambda: _joined(session.directory, node.name)),
                 status=201)


@_endpoint("/uploads/{upload_id}", ["DELETE"])
def abort_upload(call, upload_id):
    scope = _scope(call, write=True)
    files.abort_session(scope.owner, upload_id, _listed_or_aborted_holder(call, scope))
    return Reply(status=204)


@_endpoint("/settings")
def get_settings(call):
    return files.defaults(call.principal.user_id)


@_endpoint("/usage")
def usage(call):
    return quota.usage(call.principal.user_id)


@_endpoint("/settings", ["PUT"])
def put_settings(call):
    fields = {"durability": str, "encryption": str, "trash_retention_days": int}
    call.only_fields(*fields)
    body = call.json()
    return files.set_defaults(call.principal.user_id, {
        name: None if body[name] is None else call.field(name, kind)
        for name, kind in fields.items() if name in body})


# -- the trash: the caller's own only (docs/trash-api.md) ---------------------------------------

@_endpoint("/trash")
def trash_list(call):
    limit = call.query_int("limit", 100, minimum=1, maximum=tree.PAGE_LIMIT_MAX)
    return trash.listing(call.principal.user_id, limit, call.query.get("cursor"))


@_endpoint("/trash", ["DELETE"])
def trash_empty(call):
    emptied = files.empty_trash(call.principal.user_id)
    shares.forget_items_gone(call.principal.user_id)
    return emptied


@_endpoint("/trash/{item_id}")
def trash_item(call, item_id):
    return trash.describe(trash.get(call.principal.user_id, item_id))


@_endpoint("/trash/{item_id}", ["DELETE"])
def trash_delete(call, item_id):
    files.delete_for_good(call.principal.user_id, item_id)
    shares.forget_items_gone(call.principal.user_id)
    return Reply(status=204)


@_endpoint("/trash/{item_id}/restore", ["POST"])
def trash_restore(call, item_id):
    owner = call.principal.user_id
    node, item = trash.restore(owner, item_id, call.field("path", str, required=False),
                               call.field("name", str, required=False))
    restored = tree.describe(owner, node, tree.path_of(owner, node))
    if node.type == tree.FILE:
        restored.update(files.versions(owner, node))
    return {**restored, "original_path": item.original_path}


# Expired and aborted upload sessions, deletes left unfinished, trash past its retention:
# every hour in AWS (an EventBridge rule); the local stack's timer too.
@app.schedule(Rate(1, unit=Rate.HOURS))
def sweep_uploads(event):
    return {**files.sweep_expired_uploads(budget_seconds=300),
            **files.sweep_trash(budget_seconds=300, after_purge=shares.forget_items_gone)}


# Packs mostly dead (their files deleted or replaced) rewritten and freed: every hour in AWS,
# on the local stack's timer too. One run at a time (its budget is well below the interval).
@app.schedule(Rate(1, unit=Rate.HOURS))
def compact_packs(event):
    return compaction.compact(budget_seconds=600)


# -- shares (docs/sharing-api.md) -------------------------------------------------------------

@_endpoint("/shares", ["POST"])
def create_share(call):
    share, created = shares.create(
        call.principal, call.field("path", str, required=False),
        call.field("node_id", str, required=False), call.field("user", str, required=False),
        call.field("group", str, required=False), call.field("level", str))
    return Reply(share, status=201 if created else 200)


@_endpoint("/shares")
def list_shares(call):
    return shares.list_own(call.principal, call.query.get("node_id"))


@_endpoint("/shares/{share_id}")
def show_share(call, share_id):
    return shares.show(call.principal, share_id)


@_endpoint("/shares/{share_id}", ["PUT"])
def change_share(call, share_id):
    return shares.set_level(call.principal, share_id, call.field("level", str))


@_endpoint("/shares/{share_id}", ["DELETE"])
def revoke_share(call, share_id):
    shares.revoke(call.principal, share_id)
    return Reply(status=204)


@_endpoint("/shared")
def shared_with_me(call):
    return shares.shared_with_me(call.principal)


# The admin page: what a group's members reach through it. Here, not in the auth service, which
# holds no rights on the data plane.
@_endpoint("/groups/{group}/shares", auth=ADMINS)
def group_shares(call, group):
    limit = call.query_int("limit", 100, minimum=1, maximum=tree.PAGE_LIMIT_MAX)
    return shares.granted_to_group(group, limit, call.query.get("cursor"))


# -- links ------------------------------------------------------------------------------------

@_endpoint("/links", ["POST"])
def create_link(call):
    return Reply(links.create(call.principal, call.field("path", str, required=False),
                              call.field("node_id", str, required=False),
                              call.field("password", str, required=False),
                              call.field("expires_in", int, required=False)), status=201)


@_endpoint("/links")
def list_links(call):
    return links.list_own(call.principal, call.query.get("node_id"))


@_endpoint("/links/{link_id}", ["DELETE"])
def revoke_link(call, link_id):
    links.revoke(call.principal, link_id)
    return Reply(status=204)


def _open_link(call, token):
    """Public: the link, after its rate limits, state and password (header, never query)."""
    context = getattr(app.current_request, "context", None) or {}
    address = (context.get("identity") or {}).get("sourceIp")
    return links.open_link(token, call.header("x-link-password"), address)


@_endpoint("/public/{token}", auth=PUBLIC)
def public_info(call, token):
    opened = _open_link(call, token)
    limit = call.query_int("limit", 1000, minimum=1, maximum=tree.PAGE_LIMIT_MAX)
    node = opened.resolve(call.query.get("path", "/"))
    return links.node_info(opened, node, limit, call.query.get("cursor"))


@_endpoint("/public/{token}/data", auth=PUBLIC)
def public_download(call, token):
    opened = _open_link(call, token)
    return _content(call, opened.owner, opened.resolve(call.query.get("path", "/")), None)
