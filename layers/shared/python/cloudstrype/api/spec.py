"""The REST contract (OpenAPI 3.1), written down separately from the route code.

It is served at GET /api/openapi.json. A test compares it with the routes the service apps
really declare, so a route added without its contract (or the reverse) fails the suite, and a
bounded fuzz run (tests/security/test_fuzz.py) holds the server to it: every status a route
answers is listed here, every schema-valid request is one the server accepts, and every answer
has the documented content type. Patterns and limits come from the validators themselves.
"""
from __future__ import annotations

import copy
import re

from cloudstrype.api.body import MAX_JSON_BYTES
from cloudstrype.array.protocol import MEMBER_ID_RE
from cloudstrype.auth import pool
from cloudstrype.auth.users import EMAIL_RE, GROUP_RE, MAX_EMAIL, MAX_PASSWORD, USERNAME_RE
from cloudstrype.backends import registry
from cloudstrype.backends.providers import PROVIDERS
from cloudstrype.pipeline.schemes import ENCRYPTIONS, MAX_RAID1_COPIES, MAX_RS_SHARES
from cloudstrype.pipeline.store import CHUNK_ID_RE
from cloudstrype.sharing.links import LINK_ID_RE, MAX_EXPIRES_IN, MIN_EXPIRES_IN, TOKEN_RE
from cloudstrype.sharing.links import MAX_PASSWORD as MAX_LINK_PASSWORD
from cloudstrype.sharing.links import PASSWORD_RE as LINK_PASSWORD_RE
from cloudstrype.sharing.scope import SHARE_ID_RE, SHARE_ROUTES
from cloudstrype.sharing.store import LEVELS, MAX_LISTED
from cloudstrype.storages.names import NAME_MAX
from cloudstrype.storages.store import MEMBER_PREFIX
from cloudstrype.tree.files import MAX_BATCH_FILES, MEDIA_TYPE, MTIME_MAX, MTIME_MIN
from cloudstrype.tree.store import ROOT
from cloudstrype.tree.trash import MAX_RETENTION_DAYS
from cloudstrype.tree.tree import MAX_DEPTH, MAX_NAME_BYTES, PAGE_LIMIT_MAX

ERROR = {"$ref": "#/components/schemas/Error"}
JSON = "application/json"

COMPONENTS = {
    "securitySchemes": {
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                   "description": "An id or access token from POST /api/auth/login (deployed: "
                                  "the access token)."},
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


def _anchored(pattern: re.Pattern) -> str:
    """A validator's regex as a JSON Schema pattern (those are searched, not matched)."""
    text = pattern.pattern.removeprefix("^").removesuffix("$")
    return f"^{text}$"


def _inner(pattern: re.Pattern) -> str:
    return pattern.pattern.removeprefix("^").removesuffix("$")


def _literal(text: str) -> str:
    # re.escape escapes '-' too, which ECMA regexes (JSON Schema's) refuse outside a class.
    return re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", text)


def _numbers(low: int, high: int) -> str:
    """A regex alternation of the whole numbers low..high (longest first, so it matches whole)."""
    return "(?:" + "|".join(str(n) for n in range(high, low - 1, -1)) + ")"


S = {"type": "string"}
INT = {"type": "integer"}
BINARY = {"type": "string", "format": "binary"}

# -- the shapes of identifiers and values, from the code that checks them ------------------------
CHUNK_ID = {"type": "string", "pattern": _anchored(CHUNK_ID_RE)}
MEMBER_ID = {"type": "string", "pattern": _anchored(MEMBER_ID_RE)}
USERNAME = {"type": "string", "pattern": _anchored(USERNAME_RE)}
GROUP = {"type": "string", "pattern": _anchored(GROUP_RE)}
EMAIL = {"type": "string", "pattern": _anchored(EMAIL_RE), "maxLength": MAX_EMAIL}
# pool.PASSWORD_POLICY as a pattern (ASCII classes: a subset of what the check accepts).
_POLICY = pool.PASSWORD_POLICY
PASSWORD = {"type": "string", "pattern": "^" + "".join(
    look for flag, look in (("RequireUppercase", "(?=.*[A-Z])"),
                            ("RequireLowercase", "(?=.*[a-z])"),
                            ("RequireNumbers", "(?=.*[0-9])")) if _POLICY[flag])
    + f".{{{_POLICY['MinimumLength']},{MAX_PASSWORD}}}$", "format": "password"}
# Storages are made as "st-" + 12 hex digits (storages.service); a member's storage is
# MEMBER_PREFIX + its member id.
STORAGE_ID = {"type": "string",
              "pattern": f"^(?:st-[0-9a-f]{{12}}|{_literal(MEMBER_PREFIX)}{_inner(MEMBER_ID_RE)})$"}
# Nodes are the root or a uuid4 hex (tree.new_node_id); upload sessions 12 random bytes in hex.
# The root is a node too, but only readable: renaming, moving, deleting or downloading it is a
# different request (400), so the routes that do those take the other ids only.
FILE_ID = {"type": "string", "pattern": "^[0-9a-f]{32}$"}
NODE_ID = {"type": "string", "pattern": f"^(?:{_literal(ROOT)}|[0-9a-f]{{32}})$"}
UPLOAD_ID = {"type": "string", "pattern": "^[0-9a-f]{24}$"}
# The owner's view of the upload sessions recipients opened in their tree.
RECIPIENTS_FLAG = {"type": "string", "enum": ["1"]}
PART = {"type": "string", "pattern": "^[0-9]{1,7}$"}
PROVIDER = {"type": "string", "enum": sorted(PROVIDERS)}
# A name (tree.check_name): no '/' or NUL, not '.' or '..', at most MAX_NAME_BYTES of UTF-8
# (a quarter of that in characters is always within it).
_NAME = f"(?!\\.{{1,2}}(?:/|$))[^/\\u0000]{{1,{MAX_NAME_BYTES // 4}}}"
NAME = {"type": "string", "pattern": f"^{_NAME}$"}
PATH = {"type": "string", "pattern": f"^(?:/|(?:/{_NAME}){{1,{MAX_DEPTH}}}/?)$",
        "examples": ["/", "/photos/2024"]}
DURABILITY = {"type": "string", "examples": ["raid1(2)", "rs(4,2)"], "pattern": (
    f"^(?:raid1\\({_numbers(1, MAX_RAID1_COPIES)}\\)|"
    f"rs\\({_numbers(1, MAX_RS_SHARES // 2)},{_numbers(1, MAX_RS_SHARES // 2)}\\))$")}
ENCRYPTION = {"type": "string", "enum": list(ENCRYPTIONS)}
SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
# A file's type as a client gives it (tree.files.media_type): a media type, then parameters.
GIVEN_CONTENT_TYPE = {"type": "string", "pattern": f"^{MEDIA_TYPE}( *;.*)?$"}
# A file version's id (tree.files.new_version_id: milliseconds, then random hex), loosely:
# what older releases wrote is read too.
VERSION_ID = {"type": "string", "pattern": "^[0-9A-Za-z_-]{1,64}$"}
PATH_PARAMS = {"chunk_id": CHUNK_ID, "file_id": FILE_ID, "storage_id": STORAGE_ID,
               "member_id": MEMBER_ID, "username": USERNAME, "group": GROUP,
               "upload_id": UPLOAD_ID, "part": PART, "provider": PROVIDER,
               "version_id": VERSION_ID}

# What every route can answer besides its own statuses.
GENERIC = {
    400: "Bad input; the message says what to fix",
    401: "Missing, invalid, expired or revoked token",
    403: "Not in the group this needs",
    # The local gateway and API Gateway: a request over 10 MB (a body on any method); the
    # functions: a JSON body over body.MAX_JSON_BYTES.
    413: f"The request is too large (a JSON body: over {MAX_JSON_BYTES // 1024 // 1024} MiB, "
         f"body_too_large)",
    429: "Too many requests; wait for Retry-After",
    # The local gateway and API Gateway: over 10,240 bytes of request line and headers.
    431: "The request line and headers are too large",
    # A defect: the answer names a request id for the logs, never a stack.
    500: "An unexpected failure; the message names a request id",
    503: "A store or service this needs is unavailable; retry after Retry-After",
    # The gateway: the function ran past API Gateway's 29 s.
    504: "The request took too long",
    507: "The metadata store is full; nothing was written",
}
NO_CONTENT = (204, 302, 304)

# (method, path) -> operation. Path parameters are named as in the route code.
OPERATIONS: dict[tuple[str, str], dict] = {}


def op(method: str, path: str, summary: str, *, public: bool = False, admins: bool = False,
       body: dict | None = None, body_type: str = JSON, query: dict | None = None,
       headers: dict | None = None, responses: dict[int, str | dict] | None = None,
       body_required: bool = True, ids: dict | None = None,
       required_query: tuple[str, ...] = ()) -> None:
    operation: dict = {"summary": summary, "responses": {}}
    ids = {**PATH_PARAMS, **(ids or {})}
    if not public:
        operation["security"] = [{"bearer": []}]
    params = [{"name": name, "in": "path", "required": True, "schema": ids[name]}
              for name in _path_params(path)]
    for name, schema in (query or {}).items():
        params.append({"name": name, "in": "query", "required": name in required_query,
                       "schema": schema})
    for name, schema in (headers or {}).items():
        params.append({"name": name, "in": "header", "required": False, "schema": schema})
    if params:
        operation["parameters"] = params
    if body is not None:
        if body_type == JSON:
            # A JSON body holds the fields named and no other (json_fields; the service
            # refuses the rest by name).
            for shape in _shapes(body):
                if shape.get("type") == "object" and "properties" in shape:
                    shape.setdefault("additionalProperties", False)
        operation["requestBody"] = {"required": body_required,
                                    "content": {body_type: {"schema": body}}}
    for status, answer in (responses or {200: "OK"}).items():
        if isinstance(answer, str):
            answer = {"description": answer}
        described = {"description": answer.get("description", "OK")}
        if status not in NO_CONTENT:
            described["content"] = {answer.get("type", JSON):
                                    {"schema": answer.get("schema", ERROR if status >= 400
                                                          else {"type": "object"})}}
        operation["responses"][str(status)] = described
    for status, text in GENERIC.items():
        if (status == 401 and public) or (status == 403 and not admins):
            continue
        operation["responses"].setdefault(str(status), {
            "description": text, "content": {JSON: {"schema": ERROR}}})
    OPERATIONS[(method.upper(), path)] = operation


def _shapes(schema: dict) -> list[dict]:
    """The object shapes a body may take: its oneOf's, unless the oneOf only says which of
    its own properties are required."""
    return [schema] if "properties" in schema else schema.get("oneOf") or [schema]


def json_fields(method: str, path: str) -> tuple[str, ...] | None:
    """The fields a JSON body of the operation may hold, from its schema here (every shape of
    a oneOf together); None when its body is not a JSON object of named fields. The service
    refuses any other field (400 unknown_field): a misspelt optional one ("expire_in") would
    otherwise be ignored, and a link meant to expire would not."""
    operation = OPERATIONS.get((method, path))
    if operation is not None and "requestBody" not in operation:
        return ()           # it takes no body: a JSON one may hold no field
    body = (operation or {}).get("requestBody")
    schema = body and body["content"].get(JSON, {}).get("schema")
    if not schema:
        return None
    shapes = _shapes(schema)
    if any(shape.get("type") != "object" or "properties" not in shape
           or shape.get("additionalProperties", False) is not False for shape in shapes):
        return None
    return tuple(sorted({name for shape in shapes for name in shape["properties"]}))


def _path_params(path: str) -> list[str]:
    return re.findall(r"\{([A-Za-z0-9_]+)\}", path)


def _meta(method: str, path: str, summary: str, schema: dict) -> None:
    # Served from the process itself: no store, no token, nothing that can fail but the host.
    OPERATIONS[(method, path)] = {"summary": summary, "responses": {
        "200": {"description": "OK", "content": {JSON: {"schema": schema}}}}}


# -- meta --------------------------------------------------------------------------------------
_meta("GET", "/api/health", "Liveness check", _obj(["status"], status={"const": "ok"}))
_meta("GET", "/api/openapi.json", "This document", {"type": "object"})
_meta("GET", "/api/config", "Where members connect and where the web UI is",
      _obj(["websocketUrl", "webUrl"], websocketUrl=S, webUrl=S))

# -- auth --------------------------------------------------------------------------------------
op("POST", "/api/auth/register", "Create an account", public=True,
   body=_obj(["username", "email", "password"], username=USERNAME, email=EMAIL,
             password=PASSWORD),
   responses={201: {"schema": _obj(["user_id", "username"], user_id=S, username=S,
                                   confirmed={"type": "boolean"})},
              409: "Username taken"})
op("POST", "/api/auth/confirm", "Confirm an account with the code Cognito sent", public=True,
   body=_obj(["username", "code"], username=USERNAME, code={"type": "string", "maxLength": 64}),
   responses={200: {"schema": _obj(["username", "confirmed"], username=S,
                                   confirmed={"const": True})},
              400: "Code not valid (the same answer for an unknown user or an account "
                   "confirmed already: it does not tell which)"})
op("POST", "/api/auth/login", "Sign in", public=True,
   body=_obj(["username", "password"], username=S, password={"type": "string",
                                                              "format": "password"}),
   responses={200: {"schema": {"$ref": "#/components/schemas/Tokens"}},
              401: "Wrong username or password", 403: "Account not confirmed yet",
              429: "Too many failed attempts: locked for Retry-After seconds"})
op("POST", "/api/auth/refresh", "Fresh tokens; locally the refresh token is replaced (Cognito "
   "gives the same one back)", public=True,
   body=_obj(["refresh_token"], refresh_token={"type": "string", "minLength": 1}),
   responses={200: {"schema": {"$ref": "#/components/schemas/Tokens"}},
              401: "Refresh token not valid, used already or revoked"})
op("POST", "/api/auth/logout", "End this sign-in: locally its tokens stop working at once; "
   "deployed, Cognito ends every sign-in of the user and access tokens run to their expiry",
   responses={204: "Signed out"})
op("POST", "/api/auth/password",
   "Change your password: the current one, then the new one. Locally every other sign-in "
   "ends (this one goes on); deployed, Cognito's policy applies and other sign-ins end only "
   "with a logout",
   body=_obj(["old_password", "new_password"],
             old_password={"type": "string", "format": "password", "minLength": 1},
             new_password=PASSWORD),
   responses={204: "Changed", 400: "The new password is too weak, too long or the current one",
              401: "The current password is wrong",
              429: "Too many failed attempts: locked for Retry-After seconds"})
op("GET", "/api/auth/me", "The signed-in user",
   responses={200: {"schema": {"$ref": "#/components/schemas/User"}}, 404: "User deleted"})
op("GET", "/api/auth/validate", "Verify the bearer token and show its claims")
op("GET", "/api/auth/users", "List users (admins)", admins=True,
   query={"limit": {"type": "integer", "minimum": 1, "maximum": 60}, "cursor": S,
          "next": {**S, "description": "The same as cursor (its first name)"}})
op("DELETE", "/api/auth/users/{username}", "Delete a user (admins)", admins=True,
   responses={204: "Deleted", 404: "No such user", 409: "Your own account"})
op("GET", "/api/auth/groups", "List groups (admins)", admins=True)
op("POST", "/api/auth/groups", "Create a group (admins)", admins=True,
   body=_obj(["name"], name=GROUP, description={"type": "string", "maxLength": 2048}),
   responses={201: {"schema": {"$ref": "#/components/schemas/Group"}}, 409: "Exists"})
op("DELETE", "/api/auth/groups/{group}", "Delete a group (admins)", admins=True,
   responses={204: "Deleted", 404: "No such group", 409: "The admins group stays"})
op("GET", "/api/auth/groups/{group}/members", "Members of a group (admins)", admins=True,
   responses={200: "OK", 404: "No such group"})
op("PUT", "/api/auth/groups/{group}/members/{username}", "Add a user to a group (admins)",
   admins=True, responses={204: "Added", 404: "No such user or group"})
op("DELETE", "/api/auth/groups/{group}/members/{username}",
   "Remove a user from a group (admins)", admins=True,
   responses={204: "Removed", 404: "No such user or group",
              409: "The last member of admins (last_admin)"})

# -- cloud -------------------------------------------------------------------------------------
STORAGE = {"$ref": "#/components/schemas/Storage"}
COMPONENTS["schemas"]["Storage"] = {
    "type": "object",
    "properties": {"id": S, "kind": S, "name": S, "status": S, "online": {"type": "boolean"},
                   "settings": {"type": "object"}, "capacity": {"type": ["integer", "null"]},
                   "used": INT, "free": {"type": ["integer", "null"]}, "shares": INT,
                   "used_measured_at": {"type": ["string", "null"]},
                   "stored_bytes": INT, "last_error": {"type": ["string", "null"]},
                   "last_error_at": {"type": ["string", "null"]},
                   "check": _obj(["checked_at", "last_full_pass", "missing_found",
                                  "corrupt_found"],
                                 checked_at={"type": ["string", "null"]},
                                 last_full_pass={"type": ["string", "null"]},
                                 missing_found=INT, corrupt_found=INT)}}
COMPONENTS["schemas"]["StoredChunk"] = {
    "type": "object",
    "properties": {"chunk_id": S, "size": INT, "encryption": S, "durability": S,
                   "shares": {"type": "array", "items": _obj(["index", "storage_id"], index=INT,
                                                             storage_id=S)}}}
CHUNK = {"$ref": "#/components/schemas/StoredChunk"}
BYTES = {"type": "application/octet-stream", "schema": BINARY}


# Some character that is not whitespace to Python's str.strip() (what the server's blank check
# uses) nor to an ECMA regex's \s: the two disagree on \x1c-\x1f and \x85.
NOT_BLANK = r"[^\s\x1c-\x1f\x85]"

# storages.service: printable (no C0, DEL or C1 control), not blank, at most NAME_MAX
# characters.
STORAGE_NAME = {"type": "string",
                "pattern": f"^(?=.*{NOT_BLANK})[^\\u0000-\\u001f\\u007f-\\u009f]{{1,{NAME_MAX}}}$"}
# The fields whose values registry's validators check beyond "not blank".
CONFIG_FIELDS = {
    "capacity": {"type": "integer", "minimum": 1, "maximum": registry.MAX_CAPACITY},
    # A port is 0-65535: a higher one is refused (400), so the pattern says so too.
    "endpoint_url": {"type": "string", "pattern": r"^https?://[A-Za-z0-9.-]+(?::(?:6553[0-5]|"
                     r"655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?"
                     r"/?$",
                     "examples": ["https://s3.eu-central-003.backblazeb2.com"]},
    "region": {"type": "string", "pattern": f"^{registry._REGION.pattern}$"},
    "bucket": {"type": "string", "pattern": f"^{registry._BUCKET.pattern}$"},
    "access_key": {"type": "string", "pattern": f"^{registry._CREDENTIAL.pattern}$"},
    "secret_key": {"type": "string", "pattern": f"^{registry._CREDENTIAL.pattern}$"},
    "prefix": {"type": "string", "pattern": "^[A-Za-z0-9._/-]{0,200}$"},
    "path": {"type": "string", "pattern": "^[A-Za-z0-9._/-]{1,200}$",
             "description": "A folder inside the operator's storage roots"},
}


def _storage_body() -> dict:
    """One shape per kind added with keys or a path (OAuth kinds connect through /oauth), from
    the fields each kind's driver declares."""
    shapes = []
    for kind, info in sorted(registry.KINDS.items()):
        if info.auth not in registry.ADDABLE or info.auth == "oauth":
            continue
        fields = {f.name: CONFIG_FIELDS.get(f.name, {"type": "string", "pattern": NOT_BLANK})
                  for f in info.fields}
        for f in info.fields:
            if f.secret:
                fields[f.name] = {**fields[f.name], "writeOnly": True}
        required = [f.name for f in info.fields if f.required]
        shapes.append(_obj(["kind", "config"], kind={"const": kind},
                           name=STORAGE_NAME,
                           config={**_obj(required, **fields), "additionalProperties": False}))
    return {"oneOf": shapes}


op("GET", "/api/cloud/providers", "Kinds of storage this deployment offers, and their fields")
op("POST", "/api/cloud/storages", "Add a key-based or local storage (probed before saving)",
   body=_storage_body(),
   responses={201: {"schema": STORAGE},
              400: "Bad input, or the storage did not pass its check (the message says which "
                   "step failed)",
              409: "Directory already in use, a name the user has already (name_taken), or "
                   "an S3 bucket and prefix whose keys overlap one of the user's storages "
                   "(storage_place_taken)"})
op("GET", "/api/cloud/storages", "The user's storages with usage and health")
op("GET", "/api/cloud/storages/{storage_id}", "One storage",
   responses={200: {"schema": STORAGE}, 404: "No such storage"})
op("DELETE", "/api/cloud/storages/{storage_id}",
   "Remove an empty storage (a member's: the member, as DELETE /api/array/members/{id} does)",
   responses={204: "Removed", 404: "No such storage",
              409: "Still holds shares: drain it first"})
CONTINUE = {"continue": {"type": "integer", "minimum": 0, "maximum": 1}}
op("POST", "/api/cloud/storages/{storage_id}/drain",
   "Move the storage's shares elsewhere (call again with continue=1 while 202: a drain "
   "stopped meanwhile stays stopped, and the answer's status says so)", query=CONTINUE,
   responses={200: "Drained", 202: "Shares remain; call again", 404: "No such storage",
              422: "Not enough other storages to move the shares to"})
op("DELETE", "/api/cloud/storages/{storage_id}/drain",
   "Stop draining: the storage takes new shares again (the shares moved stay moved)",
   responses={200: {"schema": STORAGE}, 400: "An array member's storage: stop it as a member",
              404: "No such storage"})
op("GET", "/api/cloud/oauth/{provider}/authorize", "Start connecting a cloud account",
   query={"name": S, "return_to": S},
   responses={200: {"schema": _obj(["authorize_url"], authorize_url=S)},
              404: "Provider not configured here"})
op("GET", "/api/cloud/oauth/{provider}/callback", "Where the provider sends the browser back",
   public=True, required_query=("code", "state"),
   query={"code": {"type": "string", "minLength": 1}, "state": {"type": "string", "minLength": 1},
          "error": S},
   responses={302: "Back to the web UI (return_to, else /#/storages) with provider, state "
                   "and finish_code in the fragment; nothing is connected yet",
              404: "Provider not configured here"})
op("POST", "/api/cloud/oauth/{provider}/finish",
   "Connect the approved account: only the user who started, with the callback's finish code",
   body=_obj(["state", "code"],
             state={"type": "string", "minLength": 1, "maxLength": 200},
             code={"type": "string", "minLength": 1, "maxLength": 200,
                   "description": "The finish_code from the fragment the callback sent the "
                                  "browser to"}),
   responses={201: {"schema": STORAGE},
              200: {"description": "The account is one of the user's storages already: that "
                                   "storage is reconnected with the new grant (its access "
                                   "error forgotten; name, shares and status kept), and the "
                                   "answer is it with \"reconnected\": true",
                    "schema": STORAGE},
              400: "Wrong finish code, not approved at the provider yet, or the account did "
                   "not pass its check",
              409: "The storage being reconnected was removed meanwhile",
              404: "No connection in progress with this state for this user (or provider)",
              410: "Finished already, expired, failed at the provider, or too many wrong "
                   "codes: start again"})
op("POST", "/api/cloud/{chunk_id}", "Store the body as given on N storages",
   body=BINARY, body_type="application/octet-stream", body_required=False,
   query={"replicas": {"type": "integer", "minimum": 1, "maximum": MAX_RAID1_COPIES}},
   responses={201: {"schema": CHUNK}, 400: "A file system's chunk id (v<version>-<n>)",
              409: "Chunk id in use",
              413: "Over 4 MiB, or over the user's quota",
              422: "Not enough usable storages"})
op("GET", "/api/cloud/{chunk_id}", "Read a stored body",
   responses={200: BYTES, 404: "Unknown"})
op("DELETE", "/api/cloud/{chunk_id}", "Delete a stored body and its copies",
   responses={204: "Deleted", 404: "Unknown",
              409: "Holds a file's content (a file's chunk, or a pack): delete the files "
                   "instead"})

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
   "Move the member's shares elsewhere (call again with continue=1 while 202)",
   query=CONTINUE,
   responses={200: "Drained", 202: "Shares remain; call again", 404: "No such member",
              422: "Not enough other storages to move the shares to"})
op("DELETE", "/api/array/members/{member_id}/drain",
   "Stop draining: the member takes new shares again once connected",
   responses={200: {"schema": MEMBER}, 404: "No such member"})
op("POST", "/api/array/members/{member_id}/verify",
   "The member hashes its shares against the recorded hashes; bad ones are queued for repair",
   responses={200: "Checked every share", 202: "Checked some; call again",
              404: "No such member", 409: "Member offline"})
op("POST", "/api/array/{chunk_id}", "Store the body as given on N members (no encryption)",
   body=BINARY, body_type="application/octet-stream", body_required=False,
   query={"replicas": {"type": "integer", "minimum": 1, "maximum": MAX_RAID1_COPIES}},
   responses={201: {"schema": CHUNK}, 400: "A file system's chunk id (v<version>-<n>)",
              409: "Chunk id in use",
              413: "Over 4 MiB, or over the user's quota",
              422: "Not enough members online"})
op("GET", "/api/array/{chunk_id}", "Read a stored body from the members that answer first",
   responses={200: BYTES, 404: "Unknown", 503: "Not enough members online"})
op("DELETE", "/api/array/{chunk_id}", "Delete a stored body and its copies",
   responses={204: "Deleted", 404: "Unknown",
              409: "Holds a file's content (a file's chunk, or a pack): delete the files "
                   "instead"})

# -- chunk -------------------------------------------------------------------------------------
op("POST", "/api/chunk", "Encrypt, replicate or erasure-code, and store one chunk (<= 4 MiB)",
   body={**_obj(["file"], encryption=ENCRYPTION, durability=DURABILITY, file=BINARY),
         "additionalProperties": False}, body_type="multipart/form-data",
   responses={201: {"schema": CHUNK}, 413: "Over 4 MiB, or over the user's quota",
              415: "Not multipart/form-data", 422: "Not enough usable storages",
              503: "Not every share could be stored; nothing was kept"})
op("GET", "/api/chunk/{chunk_id}", "The chunk's bytes",
   responses={200: BYTES, 404: "Unknown", 503: "Fewer good shares than the chunk needs"})
op("GET", "/api/chunk/{chunk_id}/info", "Scheme, size, shares and their health",
   responses={200: {"schema": CHUNK}, 404: "Unknown"})
op("DELETE", "/api/chunk/{chunk_id}", "Delete the chunk and every share",
   responses={204: "Deleted", 404: "Unknown",
              409: "Holds a file's content (a file's chunk, or a pack): delete the files "
                   "instead"})
op("POST", "/api/chunk/{chunk_id}/repair", "Re-create missing or corrupt shares now",
   responses={200: {"description": "Repaired, or nothing to repair; asked so, shares whose "
                                    "storage does not answer now are re-created elsewhere "
                                    "too (the scheduled scrub waits for them instead)",
                     "schema": _obj(["chunk_id", "repaired"], chunk_id=S,
                                    repaired={"type": "array", "items": INT},
                                    remaining={"type": "array", "items": INT,
                                               "description": "Left for the next scrub: too "
                                                              "few usable storages now"})},
              404: "Unknown", 422: "Not enough usable storages",
              503: "Fewer good shares than the chunk needs (not_enough_shares: some storage "
                   "did not answer; chunk_damaged: all did), or storages out of reach now"})

# -- filesystem --------------------------------------------------------------------------------
RETENTION = {"type": "integer", "minimum": 0, "maximum": MAX_RETENTION_DAYS,
             "description": "Days deleted items stay in the trash (0: until the next sweep)"}
NODE = {"$ref": "#/components/schemas/Node"}
COMPONENTS["schemas"]["Node"] = {
    "type": "object",
    "properties": {"id": S, "name": S, "path": S, "type": {"enum": ["file", "directory"]},
                   "size": INT, "created": S, "modified": S, "content_type": S, "sha256": S,
                   "etag": S, "version": S, "durability": S, "encryption": S,
                   "attributes": {"type": "object"},
                   "versions": {"type": "array", "description":
                                "A file's newest versions, oldest first (at most 1,000; a "
                                "batch's answer: the one it wrote)"},
                   "versions_total": {**INT, "description": "How many versions the file has"},
                   "children": {"type": "array"}, "next_cursor": {"type": ["string", "null"]}}}
CONTENT = {"type": "*/*", "schema": BINARY,
           "description": "The content, as the file's own content type"}
# At most 16 KB as JSON (tree.set_attributes), even when every character is \\u-escaped.
ATTRIBUTES = {"type": "object", "maxProperties": 8, "propertyNames": {"maxLength": 32},
              "additionalProperties": {"type": ["string", "number", "boolean", "null"],
                                       "maxLength": 64}}
op("GET", "/api/filesystem/info", "A directory and its children to `depth` levels",
   query={"path": PATH, "depth": {"type": "integer", "minimum": 0, "maximum": 5},
          "limit": {"type": "integer", "minimum": 1, "maximum": PAGE_LIMIT_MAX},
          "cursor": {"type": "string", "description": "next_cursor of the previous page"}},
   responses={200: {"schema": NODE}, 404: "No such path", 409: "A file on the way"})
op("GET", "/api/filesystem/info/{file_id}", "Metadata of a file (with versions) or directory",
   ids={"file_id": NODE_ID}, responses={200: {"schema": NODE}, 404: "Unknown id"})
op("POST", "/api/filesystem/info/{file_id}", "Rename (name), move (path) or set attributes",
   body={"type": "object", "anyOf": [{"required": [f]} for f in ("name", "path", "attributes")],
         "properties": {"name": NAME, "path": PATH, "attributes": ATTRIBUTES}},
   responses={200: {"schema": NODE}, 404: "Unknown id, or no such directory",
              409: "Name exists, or a file on the way"})
op("DELETE", "/api/filesystem/info/{file_id}", "Delete a file or a directory recursively",
   responses={204: "Deleted", 404: "Unknown id"})
op("DELETE", "/api/filesystem/info/{file_id}/versions/{version_id}",
   "Delete an earlier version of your file for good, freeing its content (not the current "
   "one: that goes with the file, to the trash)",
   responses={204: "Deleted and freed",
              202: {"schema": _obj(["complete", "message"], complete={"type": "boolean"},
                                   message=S),
                    "description": "Partly freed in this request's time: delete it again"},
              400: "Through a share (not_in_a_share)",
              404: "Unknown file or version", 409: "The current version (current_version)"})
op("POST", "/api/filesystem/dirs", "Create a directory, parents included",
   body=_obj(["path"], path=PATH),
   responses={201: {"schema": NODE}, 200: {"schema": NODE, "description": "Existed already"},
              409: "A file on the way"})
# The client's modification time, kept as the file's `modified` (so an unchanged file can be
# told from a listing); without it, `modified` is the time of the upload.
MTIME = {"type": "number", "minimum": MTIME_MIN, "maximum": MTIME_MAX,
         "description": "The file's modification time on the client, Unix seconds"}
op("POST", "/api/filesystem/data", "Upload a file in one request (<= 10 MB)",
   body={**_obj(["file"], path=PATH, name=NAME, durability=DURABILITY, encryption=ENCRYPTION,
                 mtime=MTIME, file=BINARY), "additionalProperties": False},
   body_type="multipart/form-data",
   responses={201: {"schema": NODE}, 404: "No such directory",
              409: "A directory of that name, or a file on the way",
              413: "Too large for one request, or over the user's quota",
              415: "Not multipart/form-data", 422: "Not enough usable storages",
              503: "Not every share could be stored; nothing was kept"})
# The batch's mtimes: a JSON object of file name -> Unix seconds. The pattern is a subset of the
# JSON the server takes (names without quotes, backslashes or control characters), so every
# string it allows parses; a time out of range fails that one file.
_WS = r"[ \t\n\r]*"
_PAIR = r'"[^"\\\x00-\x1f]*"' + _WS + ":" + _WS + r"-?(?:0|[1-9][0-9]{0,11})(?:\.[0-9]{1,6})?"
MTIMES = {"type": "string", "pattern": rf"^\{{{_WS}(?:{_PAIR}{_WS}(?:,{_WS}{_PAIR}{_WS})*)?\}}$",
          "description": 'JSON: file name -> modification time, e.g. {"a.txt": 1700000000.25}'}
COMPONENTS["schemas"]["BatchResult"] = _obj(
    ["name", "status"], name=S, status=INT,
    file=NODE, error={"type": "object"})
op("POST", "/api/filesystem/batch", "Upload many files into one directory in one request",
   body={**_obj(["file"], path=PATH, durability=DURABILITY, encryption=ENCRYPTION,
                 mtimes=MTIMES,
                 file={"type": "array", "minItems": 1, "maxItems": MAX_BATCH_FILES,
                       "items": BINARY,
                       "description": "One part per file; its filename is the file's name"}),
         "additionalProperties": False},
   body_type="multipart/form-data",
   responses={207: {"schema": _obj(["results", "created", "failed"], results={
                  "type": "array", "items": {"$ref": "#/components/schemas/BatchResult"}},
                  created=INT, failed=INT),
                  "description": "Each file's result: 201 with the file, or its error"},
              404: "No such directory", 409: "A file on the way",
              413: f"Over {MAX_BATCH_FILES} files or one request's bytes, or over the quota",
              415: "Not multipart/form-data"})
COMPONENTS["schemas"]["ReadResult"] = _obj(
    ["id", "status"], id=S, status=INT,
    file=_obj([], id=S, name=S, size=INT, sha256=S, version=S, modified=S, content_type=S),
    error={"type": "object"})
op("POST", "/api/filesystem/read",
   "Many small files' current content in one answer: a `results` part (JSON: each id's result "
   "in order, 200 with the file or its error; `remaining`: ids past what one answer carries, "
   "to ask again) then one part per file read, named by its id",
   body=_obj(["ids"], ids={"type": "array", "minItems": 1, "maxItems": MAX_BATCH_FILES,
                           "items": NODE_ID}),
   responses={200: {"type": "multipart/form-data", "schema": _obj(
                  ["results"], results=_obj(
                      ["results", "read", "failed", "remaining"],
                      results={"type": "array",
                               "items": {"$ref": "#/components/schemas/ReadResult"}},
                      read=INT, failed=INT, remaining={"type": "array", "items": S})),
                  "description": "Each file's result, then the files' bytes"},
              400: "No ids, or more than the batch limit"})
# What a read of a file's content takes: one range (first-last, first-, or the last N bytes;
# several ranges in one request are a 400), If-Range (an ETag, or a Last-Modified date that no
# other version of the file shares), If-None-Match, and If-Match (the ETag of the first range
# read: 412 file_changed if the file has been replaced since).
_READ_HEADERS = {
    "Range": {"type": "string",
              "pattern": "^bytes=(?:[0-9]{1,12}-[0-9]{0,12}|-[0-9]{1,12})$"},
    "If-Range": S,
    "If-None-Match": S,
    "If-Match": S,
}
op("GET", "/api/filesystem/data/{file_id}", "File content; Range requests give 206",
   query={"version": S},
   headers={**_READ_HEADERS},
   responses={200: CONTENT, 206: {**CONTENT, "description": "Partial content"},
              304: "Not modified (If-None-Match)", 404: "Unknown id or version",
              412: "Changed since the ETag in If-Match (file_changed)",
              413: "Too big for one response: use Range", 416: "Range not satisfiable",
              503: "Fewer good shares than a chunk needs"})
op("GET", "/api/filesystem/chunks/{file_id}",
   "The chunks holding one of your files' content (a version's: `version`, else the current), "
   "in order, for GET /api/chunk/{chunk_id}/info; `packed` when that is one pack shared with "
   "other small files. A client never names them itself: a small file lives in a pack, and "
   "content stored once in the chunks of the version that stored it first",
   ids={"file_id": NODE_ID}, query={"version": S},
   responses={200: {"schema": {"type": "object", "properties": {
       "version": S, "chunks": {"type": "array", "items": S},
       "packed": {"type": "boolean"}}}},
       400: "Asked inside a share (the storage layout is its owner's)",
       404: "Unknown id or version, or a directory"})
op("POST", "/api/filesystem/uploads", "Start an upload session for a large file",
   body=_obj(["name", "size"], path=PATH, name=NAME, size={"type": "integer", "minimum": 0},
             content_type=GIVEN_CONTENT_TYPE, durability=DURABILITY, encryption=ENCRYPTION,
             sha256=SHA256, upload_id=UPLOAD_ID),
   responses={201: "Session (folders of the path that do not exist are made at the commit)",
              200: "The session of the upload_id given, opened already for this file (the "
                   "request sent again after its answer was lost)",
              409: "Too many open sessions, a file on the way, or upload_id_taken (the "
                   "upload_id names another session, or one asked for with another type, "
                   "sha256 or scheme)",
              413: "Larger than a file may be here, or over the user's quota"})
op("GET", "/api/filesystem/uploads",
   "Your open upload sessions (in your tree; with share=, those you opened through that "
   "share; with recipients=1, those your shares' recipients opened in your tree, each with "
   "its share_id and a path inside that share's folder), oldest first",
   query={"recipients": RECIPIENTS_FLAG},
   responses={200: {"schema": {"type": "object", "properties": {"uploads": {
       "type": "array", "items": _obj([], upload_id=S, path=S, name=S, size=INT,
                                      part_size=INT, parts=INT, created=S,
                                      expires_at=INT, share_id=S)}}}}})
op("GET", "/api/filesystem/uploads/{upload_id}",
   "Which parts arrived (received, missing), and the SHA-256 of each received one "
   "(part_sha256, by part number), to resume",
   responses={200: "OK", 404: "No such session", 410: "Expired"})
op("PUT", "/api/filesystem/uploads/{upload_id}/parts/{part}",
   "One part: exactly part_size bytes (the last one the rest); retrying is safe",
   body=BINARY, body_type="application/octet-stream", body_required=False,
   responses={200: "Stored", 404: "No such session", 409: "Committed already",
              410: "Expired", 413: "Over the user's quota", 422: "Not enough usable storages",
              503: "Not every share could be stored; nothing was kept"})
op("POST", "/api/filesystem/uploads/{upload_id}/commit", "Make the uploaded parts the file",
   body=_obj([], mtime=MTIME, sha256={"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}),
   body_required=False,
   responses={201: {"schema": NODE}, 400: "A bad mtime or sha256", 404: "No such session",
              409: "Parts missing, committed already, a directory of that name, or a sha256 "
                   "that does not agree",
              410: "Expired"})
op("DELETE", "/api/filesystem/uploads/{upload_id}",
   "Abandon an upload and free its parts (recipients=1: one a recipient opened in your tree "
   "through a share)",
   query={"recipients": RECIPIENTS_FLAG},
   responses={204: "Abandoned", 404: "No such session", 409: "Committed already",
              410: "Expired"})
op("GET", "/api/filesystem/usage", "What the user keeps against the quota, and the limits",
   responses={200: {"schema": _obj(
       ["stored_bytes", "quota_bytes"], stored_bytes=INT, open_uploads=INT,
       live_bytes=INT,
       trash_bytes={"type": "integer", "description": "What emptying the trash frees"},
       dead_bytes={"type": "integer",
                   "description": "Deleted packed files' bytes still in packs until compaction"},
       max_open_uploads=INT, max_file_bytes=INT,
       quota_bytes={"type": "integer", "description": "0: no quota"})}})
op("GET", "/api/filesystem/settings", "The user's default durability and encryption")
op("PUT", "/api/filesystem/settings", "Set the user's defaults (a field left out is kept; "
   "null sets it back to the default: automatic durability, aes256-gcm, 30 days)",
   body={"type": "object", "additionalProperties": False,
         "properties": {"durability": {"anyOf": [DURABILITY, {"type": "null"}]},
                        "encryption": {"anyOf": [ENCRYPTION, {"type": "null"}]},
                        "trash_retention_days": {"anyOf": [RETENTION, {"type": "null"}]}}})

# -- the trash (docs/trash-api.md) ---------------------------------------------------------------
TRASH_ITEM = _obj(["id", "name", "type", "original_path", "size", "deleted", "purge_after"],
                  id=S, name=S, type={"enum": ["file", "directory"]}, original_path=S,
                  size=INT, deleted=S, purge_after=S)
_TRASH_ITEM_ID = {"item_id": FILE_ID}
op("GET", "/api/filesystem/trash", "Your trash, newest deleted first",
   query={"limit": {"type": "integer", "minimum": 1, "maximum": PAGE_LIMIT_MAX},
          "cursor": {"type": "string", "description": "next_cursor of the previous page"}},
   responses={200: {"schema": _obj(["items", "next_cursor", "retention_days"],
                                   items={"type": "array", "items": TRASH_ITEM},
                                   next_cursor={"type": ["string", "null"]},
                                   retention_days=INT)}})
op("DELETE", "/api/filesystem/trash", "Empty your trash (its chunks are freed)",
   responses={200: {"schema": _obj(["deleted", "complete"], deleted=INT,
                                   complete={"type": "boolean"})}})
op("GET", "/api/filesystem/trash/{item_id}", "One item of your trash", ids=_TRASH_ITEM_ID,
   responses={200: {"schema": TRASH_ITEM}, 404: "Not in your trash"})
op("DELETE", "/api/filesystem/trash/{item_id}", "Delete an item of your trash for good",
   ids=_TRASH_ITEM_ID,
   responses={204: "Deleted for good", 404: "Not in your trash", 409: "Changed meanwhile"})
op("POST", "/api/filesystem/trash/{item_id}/restore",
   "Restore to its place (a dated name if taken), or into `path` / as `name`",
   ids=_TRASH_ITEM_ID, body=_obj([], path=PATH, name=NAME), body_required=False,
   responses={200: {"schema": NODE}, 404: "Not in your trash",
              409: "The name is taken, a file on the way, or changed meanwhile"})


# -- shares and links (docs/sharing-api.md) ----------------------------------------------------
SHARE_ID = {"type": "string", "pattern": _anchored(SHARE_ID_RE)}
LINK_ID = {"type": "string", "pattern": _anchored(LINK_ID_RE)}
LINK_TOKEN = {"type": "string", "pattern": _anchored(TOKEN_RE)}
LEVEL = {"type": "string", "enum": list(LEVELS)}
GRANTEE = _obj(["kind", "name"], kind={"enum": ["user", "group"]}, name=S,
               deleted={"type": "boolean", "description": "the user's account is gone (a new "
                        "account of that name gets nothing from this share)"})
COMPONENTS["schemas"]["Share"] = _obj(
    ["id", "node_id", "grantee", "level", "grants"], id=S, node_id=S,
    name={"type": ["string", "null"]}, type={"type": ["string", "null"]},
    path={"type": ["string", "null"]}, grantee=GRANTEE, level=LEVEL, created=S, modified=S,
    grants={"type": "boolean", "description": "whether it grants its grantee anything now"},
    not_granting={"type": "string", "description": "why it grants nothing (only then): the "
                  "group deleted, or made again since the share; the owner no longer in the "
                  "group; the account deleted"})
COMPONENTS["schemas"]["SharedItem"] = _obj(
    ["id", "node_id", "name", "type", "level", "owner", "via"], id=S, node_id=S, name=S,
    type=S, level=LEVEL, owner=S, via=GRANTEE, created=S)
COMPONENTS["schemas"]["Link"] = _obj(
    ["id", "node_id", "password", "state"], id=S, node_id=S, name={"type": ["string", "null"]},
    type={"type": ["string", "null"]}, path={"type": ["string", "null"]},
    password={"type": "boolean"}, expires_at={"type": ["string", "null"]}, created=S,
    state={"enum": ["active", "expired", "revoked"]}, token=S, url=S)
SHARE = {"$ref": "#/components/schemas/Share"}
LINK = {"$ref": "#/components/schemas/Link"}
# One of path / node_id names the item (a body naming both, or neither, is a 400).
_TARGET = {"path": PATH, "node_id": FILE_ID}
_RECIPIENT_WRITES = ("Read-only share, or the shared item itself (renaming, moving or deleting "
                     "it is its owner's)")

# The reads inside a share that can be refused (403) all the same.
_SHARE_READS_REFUSED = {
    "/api/filesystem/data/{file_id}": "Earlier versions of a shared file",
    "/api/filesystem/uploads": "A read-only share (upload sessions are for writing)",
    "/api/filesystem/uploads/{upload_id}": "A read-only share (upload sessions are for writing)"}

# The filesystem routes a recipient uses inside a share, with `?share=` (every other one
# refuses it: 400 not_in_a_share).
for _method, _relative in sorted(SHARE_ROUTES):
    _path = "/api/filesystem" + _relative
    _operation = OPERATIONS[(_method, _path)]
    _operation.setdefault("parameters", []).append(
        {"name": "share", "in": "query", "required": False, "schema": SHARE_ID,
         "description": "Work inside this share (granted to you): paths are relative to the "
                        "shared item, ids resolve only inside it"})
    _operation["responses"].setdefault("404", {"description": "No such share for you, or the "
                                               "item is not inside it",
                                               "content": {JSON: {"schema": ERROR}}})
    if _method != "GET" or _path in _SHARE_READS_REFUSED:
        _operation["responses"].setdefault("403", {
            "description": _SHARE_READS_REFUSED.get(_path, _RECIPIENT_WRITES),
            "content": {JSON: {"schema": ERROR}}})
PATH_PARAMS.update(share_id=SHARE_ID, link_id=LINK_ID, token=LINK_TOKEN)

TRUNCATED = {"type": "boolean", "description": f"Only the newest {MAX_LISTED} are listed"}
op("POST", "/api/filesystem/shares", "Share one of your items with a user or a group",
   body={**_obj(["level"], **_TARGET, user=USERNAME, group=GROUP, level=LEVEL),
         "allOf": [{"oneOf": [{"required": ["path"]}, {"required": ["node_id"]}]},
                   {"oneOf": [{"required": ["user"]}, {"required": ["group"]}]}],
         "additionalProperties": False},
   responses={201: {"schema": SHARE}, 200: {"schema": SHARE, "description": "Shared with them "
                                                                             "already: level set"},
              403: "A group you are not in", 404: "No such item, user or group",
              409: "A file on the way"})
op("GET", "/api/filesystem/shares", "The shares you made (of one item with node_id)",
   query={"node_id": NODE_ID},
   responses={200: {"schema": _obj(["shares", "truncated"], shares={
       "type": "array", "items": SHARE}, truncated=TRUNCATED)}, 404: "No such item"})
op("GET", "/api/filesystem/shares/{share_id}", "One share (its owner or a recipient)",
   responses={200: {"schema": {"oneOf": [SHARE, {"$ref": "#/components/schemas/SharedItem"}]}},
              404: "No such share for you"})
op("PUT", "/api/filesystem/shares/{share_id}", "Change a share's level (owner)",
   body=_obj(["level"], level=LEVEL),
   responses={200: {"schema": SHARE}, 403: "Shared with a group you are no longer in",
              404: "No such share of yours",
              409: "Write on a file share (write is for folders), or a share made to an "
                   "earlier group of its name (share_not_granting)"})
op("DELETE", "/api/filesystem/shares/{share_id}", "Revoke a share (owner)",
   responses={204: "Revoked", 404: "No such share of yours"})
op("GET", "/api/filesystem/shared", "Shared with me: to you or to a group you are in now",
   responses={200: {"schema": _obj(["shares", "truncated"], shares={
       "type": "array", "items": {"$ref": "#/components/schemas/SharedItem"}},
       truncated=TRUNCATED)}})
COMPONENTS["schemas"]["GroupShare"] = _obj(
    ["id", "owner", "node_id", "name", "type", "path", "level", "created"], id=S, owner=S,
    node_id=S, name=S, type={"enum": ["file", "directory"]}, path=S, level=LEVEL, created=S)
op("GET", "/api/filesystem/groups/{group}/shares",
   "What a group's members reach through it: the shares granted to the group (admins)",
   admins=True,
   query={"limit": {"type": "integer", "minimum": 1, "maximum": PAGE_LIMIT_MAX},
          "cursor": {"type": "string", "description": "next_cursor of the previous page"}},
   responses={200: {"schema": _obj(["group", "shares", "next_cursor"], group=GROUP, shares={
       "type": "array", "items": {"$ref": "#/components/schemas/GroupShare"}},
       next_cursor={"type": ["string", "null"]})}, 404: "No such group"})
op("POST", "/api/filesystem/links", "A read-only link to one of your items (token shown once)",
   body={**_obj([], **_TARGET, password={"type": "string", "minLength": 1,
                                          "maxLength": MAX_LINK_PASSWORD, "format": "password",
                                          "pattern": _anchored(LINK_PASSWORD_RE)},
                expires_in={"type": "integer", "minimum": MIN_EXPIRES_IN,
                            "maximum": MAX_EXPIRES_IN}),
         "oneOf": [{"required": ["path"]}, {"required": ["node_id"]}],
         "additionalProperties": False},
   responses={201: {"schema": LINK}, 404: "No such item", 409: "A file on the way"})
op("GET", "/api/filesystem/links", "Your links (of one item with node_id), no tokens",
   query={"node_id": NODE_ID},
   responses={200: {"schema": _obj(["links", "truncated"], links={
       "type": "array", "items": LINK}, truncated=TRUNCATED)}, 404: "No such item"})
op("DELETE", "/api/filesystem/links/{link_id}", "Revoke a link (owner)",
   responses={204: "Revoked", 404: "No such link of yours"})
_PUBLIC_ANSWERS = {401: "The link's password is missing or wrong (X-Link-Password)",
                   404: "No such link, or nothing at that path",
                   409: "A file on the way", 410: "The link expired or was revoked",
                   429: "Too many requests for this link or from this address; wait for "
                        "Retry-After"}
_LINK_PASSWORD = {"X-Link-Password": {"type": "string", "format": "password"}}
op("GET", "/api/filesystem/public/{token}",
   "No account: the linked item, or an item below a linked folder, with one page of children",
   public=True, headers=_LINK_PASSWORD,
   query={"path": PATH, "limit": {"type": "integer", "minimum": 1, "maximum": PAGE_LIMIT_MAX},
          "cursor": {"type": "string", "description": "next_cursor of the previous page"}},
   responses={200: {"schema": _obj(["name", "type", "path"], name=S, type=S, size=INT,
                                   modified=S, path=S, content_type=S, etag=S,
                                   expires_at={"type": ["string", "null"]},
                                   children={"type": "array"},
                                   next_cursor={"type": ["string", "null"]})},
              **_PUBLIC_ANSWERS})
op("GET", "/api/filesystem/public/{token}/data",
   "No account: the content of the linked file or of a file below a linked folder; Range "
   "gives 206", public=True,
   headers={**_LINK_PASSWORD, **_READ_HEADERS},
   query={"path": PATH},
   responses={200: CONTENT, 206: {**CONTENT, "description": "Partial content"},
              304: "Not modified (If-None-Match)", **_PUBLIC_ANSWERS,
              412: "Changed since the ETag in If-Match (file_changed)",
              413: "Too big for one response: use Range", 416: "Range not satisfiable",
              503: "Fewer good shares than a chunk needs"})


def _int64(schema) -> None:
    """Every integer of the API is a 64-bit one (api.body refuses others in a JSON body: no
    metadata engine keeps a larger one exactly): said on each integer schema without tighter
    bounds of its own."""
    if isinstance(schema, dict):
        if schema.get("type") == "integer":
            schema.setdefault("minimum", -2 ** 63)
            schema.setdefault("maximum", 2 ** 63 - 1)
        for value in schema.values():
            _int64(value)
    elif isinstance(schema, list):
        for value in schema:
            _int64(value)


def document() -> dict:
    paths: dict[str, dict] = {}
    for (method, path), operation in sorted(OPERATIONS.items(), key=lambda kv: kv[0][1]):
        paths.setdefault(path, {})[method.lower()] = copy.deepcopy(operation)
    described = {
        "openapi": "3.1.0",
        "info": {"title": "Cloudstrype API", "version": "1",
                 "description": "Errors are JSON {\"error\": {\"code\", \"message\"}}."},
        "paths": paths,
        "components": copy.deepcopy(COMPONENTS),
    }
    _int64(described)
    return described
