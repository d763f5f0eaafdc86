"""The REST contract (OpenAPI 3.1), written down separately from the route code.

It is served at GET /api/openapi.json. A test compares it with the routes the service apps
really declare, so a route added without its contract (or the reverse) fails the suite.
"""
from __future__ import annotations

import copy

ERROR = {"$ref": "#/components/schemas/Error"}

COMPONENTS = {
    "securitySchemes": {
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                   "description": "A Cognito id or access token from POST /api/auth/login."},
    },
    "schemas": {
        "Error": {
            "type": "object", "required": ["error"],
            "properties": {"error": {"type": "object", "required": ["code", "message"],
                                     "properties": {"code": {"type": "string"},
                                                    "message": {"type": "string"},
                                                    "details": {"type": "object"}}}},
        },
        "Tokens": {
            "type": "object",
            "properties": {"id_token": {"type": "string"}, "access_token": {"type": "string"},
                           "refresh_token": {"type": "string"},
                           "expires_in": {"type": "integer"},
                           "token_type": {"const": "Bearer"}},
        },
        "User": {
            "type": "object",
            "properties": {"user_id": {"type": "string"}, "username": {"type": "string"},
                           "email": {"type": "string"},
                           "groups": {"type": "array", "items": {"type": "string"}}},
        },
        "Group": {"type": "object", "properties": {"name": {"type": "string"},
                                                   "description": {"type": "string"}}},
    },
}


def _obj(required: list[str], **props) -> dict:
    return {"type": "object", "required": required, "properties": props}


S = {"type": "string"}
INT = {"type": "integer"}

# (method, path) -> operation. Path parameters are named as in the route code.
OPERATIONS: dict[tuple[str, str], dict] = {}


def op(method: str, path: str, summary: str, *, public: bool = False, body: dict | None = None,
       body_type: str = "application/json", query: dict | None = None,
       responses: dict[int, str | dict] | None = None) -> None:
    operation: dict = {"summary": summary, "responses": {}}
    if not public:
        operation["security"] = [{"bearer": []}]
    params = [{"name": name, "in": "path", "required": True, "schema": S}
              for name in _path_params(path)]
    for name, schema in (query or {}).items():
        params.append({"name": name, "in": "query", "required": False, "schema": schema})
    if params:
        operation["parameters"] = params
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {body_type: {"schema": body}}}
    for status, answer in (responses or {200: "OK"}).items():
        if isinstance(answer, str):
            operation["responses"][str(status)] = {"description": answer}
        else:
            operation["responses"][str(status)] = {
                "description": answer.get("description", "OK"),
                "content": {answer.get("type", "application/json"): {"schema": answer["schema"]}}}
    for status, text in ((400, "Bad input; the message says what to fix"),
                         (401, "Missing or invalid token"), (403, "Not allowed")):
        if public and status in (401, 403):
            continue
        operation["responses"].setdefault(str(status), {
            "description": text, "content": {"application/json": {"schema": ERROR}}})
    OPERATIONS[(method.upper(), path)] = operation


def _path_params(path: str) -> list[str]:
    import re
    return re.findall(r"\{([A-Za-z0-9_]+)\}", path)


# -- meta --------------------------------------------------------------------------------------
op("GET", "/api/health", "Liveness check", public=True,
   responses={200: {"schema": _obj(["status"], status={"const": "ok"})}})
op("GET", "/api/openapi.json", "This document", public=True)
op("GET", "/api/config", "Where members connect and where the web UI is", public=True,
   responses={200: {"schema": _obj(["websocketUrl", "webUrl"], websocketUrl=S, webUrl=S)}})

# -- auth --------------------------------------------------------------------------------------
op("POST", "/api/auth/register", "Create an account", public=True,
   body=_obj(["username", "email", "password"], username=S, email=S, password=S),
   responses={201: {"schema": _obj(["user_id", "username"], user_id=S, username=S)},
              409: "Username taken"})
op("POST", "/api/auth/confirm", "Confirm an account with the code Cognito sent", public=True,
   body=_obj(["username", "code"], username=S, code=S))
op("POST", "/api/auth/login", "Sign in", public=True,
   body=_obj(["username", "password"], username=S, password=S),
   responses={200: {"schema": {"$ref": "#/components/schemas/Tokens"}},
              401: "Wrong username or password"})
op("POST", "/api/auth/refresh", "Fresh id and access tokens", public=True,
   body=_obj(["refresh_token"], refresh_token=S),
   responses={200: {"schema": {"$ref": "#/components/schemas/Tokens"}}})
op("POST", "/api/auth/logout", "End this sign-in: its refresh token stops working",
   responses={204: "Signed out"})
op("GET", "/api/auth/me", "The signed-in user",
   responses={200: {"schema": {"$ref": "#/components/schemas/User"}}})
op("GET", "/api/auth/validate", "Verify the bearer token and show its claims")
op("GET", "/api/auth/users", "List users (admins)", query={"limit": INT, "next": S})
op("DELETE", "/api/auth/users/{username}", "Delete a user (admins)",
   responses={204: "Deleted", 404: "No such user"})
op("GET", "/api/auth/groups", "List groups (admins)")
op("POST", "/api/auth/groups", "Create a group (admins)",
   body=_obj(["name"], name=S, description=S),
   responses={201: {"schema": {"$ref": "#/components/schemas/Group"}}, 409: "Exists"})
op("DELETE", "/api/auth/groups/{group}", "Delete a group (admins)",
   responses={204: "Deleted", 404: "No such group"})
op("GET", "/api/auth/groups/{group}/members", "Members of a group (admins)")
op("PUT", "/api/auth/groups/{group}/members/{username}", "Add a user to a group (admins)",
   responses={204: "Added", 404: "No such user or group"})
op("DELETE", "/api/auth/groups/{group}/members/{username}",
   "Remove a user from a group (admins)", responses={204: "Removed"})

# -- cloud -------------------------------------------------------------------------------------
STORAGE = {"$ref": "#/components/schemas/Storage"}
COMPONENTS["schemas"]["Storage"] = {
    "type": "object",
    "properties": {"id": S, "kind": S, "name": S, "status": S, "online": {"type": "boolean"},
                   "settings": {"type": "object"}, "capacity": {"type": ["integer", "null"]},
                   "used": INT, "free": {"type": ["integer", "null"]}, "shares": INT,
                   "stored_bytes": INT, "last_error": {"type": ["string", "null"]}}}
COMPONENTS["schemas"]["StoredChunk"] = {
    "type": "object",
    "properties": {"chunk_id": S, "size": INT, "encryption": S, "durability": S,
                   "shares": {"type": "array", "items": _obj(["index", "storage_id"], index=INT,
                                                             storage_id=S)}}}
CHUNK = {"$ref": "#/components/schemas/StoredChunk"}
BYTES = {"type": "application/octet-stream", "schema": {"type": "string", "format": "binary"}}

op("GET", "/api/cloud/providers", "Kinds of storage this deployment offers, and their fields")
op("POST", "/api/cloud/storages", "Add a key-based or local storage (probed before saving)",
   body=_obj(["kind"], kind=S, name=S, config={"type": "object"}),
   responses={201: {"schema": STORAGE}, 409: "Directory already in use"})
op("GET", "/api/cloud/storages", "The user's storages with usage and health")
op("GET", "/api/cloud/storages/{storage_id}", "One storage",
   responses={200: {"schema": STORAGE}, 404: "No such storage"})
op("DELETE", "/api/cloud/storages/{storage_id}", "Remove an empty storage",
   responses={204: "Removed", 409: "Still holds shares: drain it first"})
op("POST", "/api/cloud/storages/{storage_id}/drain",
   "Move the storage's shares elsewhere (call again while 202)",
   responses={200: "Drained", 202: "Shares remain; call again"})
op("GET", "/api/cloud/oauth/{provider}/authorize", "Start connecting a cloud account",
   query={"name": S, "return_to": S})
op("GET", "/api/cloud/oauth/{provider}/callback", "Where the provider sends the browser back",
   public=True, query={"code": S, "state": S, "error": S},
   responses={201: {"schema": STORAGE}, 302: "Back to return_to"})
op("POST", "/api/cloud/{chunk_id}", "Store the body as given on N storages",
   body={"type": "string", "format": "binary"}, body_type="application/octet-stream",
   query={"replicas": INT}, responses={201: {"schema": CHUNK}, 409: "Chunk id in use"})
op("GET", "/api/cloud/{chunk_id}", "Read a stored body", responses={200: BYTES, 404: "Unknown"})
op("DELETE", "/api/cloud/{chunk_id}", "Delete a stored body and its copies",
   responses={204: "Deleted"})

# -- array -------------------------------------------------------------------------------------
MEMBER = {"$ref": "#/components/schemas/Member"}
COMPONENTS["schemas"]["Member"] = {
    "type": "object",
    "properties": {"id": S, "name": S, "storage_id": S, "online": {"type": "boolean"},
                   "status": S, "capacity": {"type": ["integer", "null"]}, "used": INT,
                   "free": {"type": ["integer", "null"]}, "shares": INT, "stored_bytes": INT,
                   "last_seen": {"type": ["string", "null"]},
                   "connected_since": {"type": ["string", "null"]},
                   "version": {"type": ["string", "null"]}, "protocol": INT}}
op("GET", "/api/array/members", "The user's array members: online, space, last seen",
   responses={200: {"schema": _obj(["members"], members={"type": "array", "items": MEMBER})}})
op("GET", "/api/array/members/{member_id}", "One member",
   responses={200: {"schema": MEMBER}, 404: "No such member"})
op("DELETE", "/api/array/members/{member_id}", "Remove an empty member (it is told to stop)",
   responses={204: "Removed", 404: "No such member", 409: "Still holds shares: drain it first"})
op("POST", "/api/array/members/{member_id}/drain",
   "Move the member's shares elsewhere (call again while 202)",
   responses={200: "Drained", 202: "Shares remain; call again"})
op("POST", "/api/array/members/{member_id}/verify",
   "The member hashes its shares against the recorded hashes; bad ones are queued for repair",
   responses={200: "Checked every share", 202: "Checked some; call again",
              409: "Member offline"})
op("POST", "/api/array/{chunk_id}", "Store the body as given on N members (no encryption)",
   body={"type": "string", "format": "binary"}, body_type="application/octet-stream",
   query={"replicas": INT},
   responses={201: {"schema": CHUNK}, 409: "Chunk id in use", 422: "Not enough members online"})
op("GET", "/api/array/{chunk_id}", "Read a stored body from the members that answer first",
   responses={200: BYTES, 404: "Unknown", 503: "Not enough members online"})
op("DELETE", "/api/array/{chunk_id}", "Delete a stored body and its copies",
   responses={204: "Deleted"})

# -- chunk -------------------------------------------------------------------------------------
op("POST", "/api/chunk", "Encrypt, replicate or erasure-code, and store one chunk (<= 4 MiB)",
   body=_obj(["file"], encryption={"enum": ["aes256-gcm", "aes256-md5", "none"]},
             durability={"type": "string", "examples": ["raid1(2)", "rs(4,2)"]},
             file={"type": "string", "format": "binary"}),
   body_type="multipart/form-data",
   responses={201: {"schema": CHUNK}, 413: "Over 4 MiB", 422: "Not enough usable storages"})
op("GET", "/api/chunk/{chunk_id}", "The chunk's bytes", responses={200: BYTES, 404: "Unknown"})
op("GET", "/api/chunk/{chunk_id}/info", "Scheme, size, shares and their health")
op("DELETE", "/api/chunk/{chunk_id}", "Delete the chunk and every share",
   responses={204: "Deleted"})
op("POST", "/api/chunk/{chunk_id}/repair", "Re-create missing or corrupt shares now")

# -- filesystem --------------------------------------------------------------------------------
NODE = {"$ref": "#/components/schemas/Node"}
COMPONENTS["schemas"]["Node"] = {
    "type": "object",
    "properties": {"id": S, "name": S, "path": S, "type": {"enum": ["file", "directory"]},
                   "size": INT, "created": S, "modified": S, "content_type": S, "sha256": S,
                   "etag": S, "version": S, "durability": S, "encryption": S,
                   "attributes": {"type": "object"}, "versions": {"type": "array"},
                   "children": {"type": "array"}, "next_cursor": {"type": ["string", "null"]}}}
op("GET", "/api/filesystem/info", "A directory and its children to `depth` levels",
   query={"path": S, "depth": INT, "limit": INT, "cursor": S},
   responses={200: {"schema": NODE}, 404: "No such path"})
op("GET", "/api/filesystem/info/{file_id}", "Metadata of a file (with versions) or directory",
   responses={200: {"schema": NODE}, 404: "Unknown id"})
op("POST", "/api/filesystem/info/{file_id}", "Rename (name), move (path) or set attributes",
   body={"type": "object", "properties": {"name": S, "path": S,
                                          "attributes": {"type": "object"}}},
   responses={200: {"schema": NODE}, 409: "Name exists"})
op("DELETE", "/api/filesystem/info/{file_id}", "Delete a file or a directory recursively",
   responses={204: "Deleted"})
op("POST", "/api/filesystem/dirs", "Create a directory, parents included",
   body=_obj(["path"], path=S), responses={201: {"schema": NODE}, 200: "Existed already"})
op("POST", "/api/filesystem/data", "Upload a file in one request (<= 10 MB)",
   body=_obj(["file"], path=S, name=S, durability=S, encryption=S,
             file={"type": "string", "format": "binary"}), body_type="multipart/form-data",
   responses={201: {"schema": NODE}})
op("GET", "/api/filesystem/data/{file_id}", "File content; Range requests give 206",
   query={"version": S},
   responses={200: BYTES, 206: "Partial content", 413: "Too big for one response: use Range",
              416: "Range not satisfiable"})
op("POST", "/api/filesystem/uploads", "Start an upload session for a large file",
   body=_obj(["name", "size"], path=S, name=S, size=INT, content_type=S, durability=S,
             encryption=S, sha256=S), responses={201: "Session"})
op("GET", "/api/filesystem/uploads/{upload_id}", "Which parts arrived (to resume)")
op("PUT", "/api/filesystem/uploads/{upload_id}/parts/{part}",
   "One part: exactly part_size bytes (the last one the rest); retrying is safe",
   body={"type": "string", "format": "binary"}, body_type="application/octet-stream")
op("POST", "/api/filesystem/uploads/{upload_id}/commit", "Make the uploaded parts the file",
   responses={201: {"schema": NODE}, 409: "Parts missing"})
op("DELETE", "/api/filesystem/uploads/{upload_id}", "Abandon an upload and free its parts",
   responses={204: "Abandoned"})
op("GET", "/api/filesystem/settings", "The user's default durability and encryption")
op("GET", "/api/filesystem/usage",
   "Bytes stored and open upload sessions, with the quota and limits (0 quota: unlimited)")
op("PUT", "/api/filesystem/settings", "Set the user's defaults",
   body={"type": "object", "properties": {"durability": S, "encryption": S}})


def document() -> dict:
    paths: dict[str, dict] = {}
    for (method, path), operation in sorted(OPERATIONS.items(), key=lambda kv: kv[0][1]):
        paths.setdefault(path, {})[method.lower()] = copy.deepcopy(operation)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Cloudstrype API", "version": "1",
                 "description": "Errors are JSON {\"error\": {\"code\", \"message\"}}."},
        "paths": paths,
        "components": copy.deepcopy(COMPONENTS),
    }
