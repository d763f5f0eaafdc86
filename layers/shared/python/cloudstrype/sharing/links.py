"""Links: read access to one item without an account, for whoever holds the token.

The token (256 random bits) is shown once, at creation; the server keeps only its SHA-256, which
is also the link's id for its owner. Public requests are rate limited per link and per client
address before anything else is looked at (so guessing tokens costs the guesser), and a
password is checked with argon2id.
"""
from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass

from cloudstrype import errors
from cloudstrype.settings import get_settings
from cloudstrype.sharing import access
from cloudstrype.sharing.shares import own_item
from cloudstrype.sharing.store import MAX_LISTED, Link, sharing_store
from cloudstrype.tree import tree
from cloudstrype.tree.store import Node

TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")
LINK_ID_RE = re.compile(r"^[0-9a-f]{64}$")
# The public routes' path prefix; the gateway's log shows it without what follows.
PUBLIC_PREFIX = "/api/filesystem/public/"
MAX_PASSWORD = 256
# Printable ASCII: what a browser can put in the X-Link-Password header.
# Printable ASCII, not starting or ending with a space: HTTP drops a header value's edge
# spaces, so such a password could never be sent back (X-Link-Password).
PASSWORD_RE = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?")
MIN_EXPIRES_IN, MAX_EXPIRES_IN = 1, 365 * 24 * 3600
WINDOW_SECONDS = 60


def _hasher():
    # The local identity service's argon2id settings, one definition; loaded on first use.
    from cloudstrype.identity.local import HASHER
    return HASHER


def link_id_of(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# What a caller's path may not bring into a log line: line breaks and other controls (a forged
# line, terminal escapes, a NUL), and bidi overrides.
_NOT_FOR_LOGS = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
LOGGED_PATH_MAX = 400


def redact(path: str) -> str:
    """A request path fit for a log: a public link's token replaced, controls escaped (paths
    arrive decoded: %0A is a line break), and at most LOGGED_PATH_MAX characters."""
    if path.startswith(PUBLIC_PREFIX):
        rest = path[len(PUBLIC_PREFIX):]
        _, slash, tail = rest.partition("/")
        path = f"{PUBLIC_PREFIX}<redacted>{slash}{tail}"
    path = _NOT_FOR_LOGS.sub(lambda m: m.group().encode("unicode_escape").decode(), path)
    return path if len(path) <= LOGGED_PATH_MAX else path[:LOGGED_PATH_MAX] + "…"


def _state(link: Link, now: float) -> str:
    if link.revoked:
        return "revoked"
    if link.expires_at is not None and link.expires_at <= now:
        return "expired"
    return "active"


def describe(link: Link, node: Node | None) -> dict:
    return {"id": link.link_id, "node_id": link.node_id,
            "name": node.name if node else None, "type": node.type if node else None,
            "path": tree.path_of(link.owner, node) if node else None,
            "password": link.password_hash is not None,
            "expires_at": tree.iso(link.expires_at) if link.expires_at is not None else None,
            "created": tree.iso(link.created), "state": _state(link, time.time())}


def create(principal, path: str | None, node_id: str | None, password, expires_in) -> dict:
    owner = principal.user_id
    if password is not None and (not isinstance(password, str) or
                                 not 1 <= len(password) <= MAX_PASSWORD):
        raise errors.BadRequest(f"Field 'password' must be 1 to {MAX_PASSWORD} characters.",
                                code="invalid_field", details={"field": "password"})
    if password is not None and not PASSWORD_RE.fullmatch(password):
        # It is sent back in a header (X-Link-Password), which browsers can only send in
        # Latin-1 or not at all: a password like "pässwörd" could never be typed into the page.
        raise errors.BadRequest("Field 'password' may hold letters a-z and A-Z, digits, spaces "
                                "(not at its start or end) and ASCII punctuation only (it "
                                "travels in an HTTP header).",
                                code="invalid_field", details={"field": "password"})
    if expires_in is not None and (not isinstance(expires_in, int) or
                                   isinstance(expires_in, bool) or
                                   not MIN_EXPIRES_IN <= expires_in <= MAX_EXPIRES_IN):
        raise errors.BadRequest(f"Field 'expires_in' must be whole seconds from "
                                f"{MIN_EXPIRES_IN} to {MAX_EXPIRES_IN}.", code="invalid_field",
                                details={"field": "expires_in"})
    node = own_item(owner, path, node_id)
    now = int(time.time())
    token = secrets.token_urlsafe(32)
    link = Link(link_id=link_id_of(token), owner=owner, node_id=node.node_id, created=now,
                password_hash=_hasher().hash(password) if password is not None else None,
                expires_at=now + expires_in if expires_in is not None else None)
    sharing_store().create_link(link)
    return {**describe(link, node), "token": token,
            "url": f"{get_settings().web_origin()}/#/link/{token}"}


def list_own(principal, node_id: str | None) -> dict:
    """{"links": the owner's newest MAX_LISTED links (of one item: `node_id`), oldest first;
    "truncated": whether there are more}."""
    owner = principal.user_id
    if node_id is not None:
        node_id = tree.get_node(owner, node_id).node_id
    nodes: dict[str, Node | None] = {}
    listed = []
    found = sorted((link for link in sharing_store().links_by_owner(owner)
                    if node_id is None or link.node_id == node_id),
                   key=lambda link: link.created, reverse=True)
    for link in found[:MAX_LISTED]:
        if link.node_id not in nodes:
            try:
                nodes[link.node_id] = tree.get_node(owner, link.node_id)
            except errors.NotFound:
                nodes[link.node_id] = None
        listed.append(describe(link, nodes[link.node_id]))
    return {"links": sorted(listed, key=lambda item: item["created"]),
            "truncated": len(found) > MAX_LISTED}


def revoke(principal, link_id: str) -> None:
    if not (isinstance(link_id, str) and LINK_ID_RE.fullmatch(link_id)
            and sharing_store().revoke_link(principal.user_id, link_id)):
        raise errors.NotFound(f"No link {errors.shown(link_id)}.", code="link_not_found")


# -- the public side --------------------------------------------------------------------------

@dataclass
class Opened:
    link: Link
    owner: str
    top: Node

    def resolve(self, path: str) -> Node:
        return tree.resolve(self.owner, path, self.top)

    def path_of(self, node: Node) -> str:
        return tree.path_of(self.owner, node, self.top)


def _limit(name: str, default: int) -> int:
    try:
        return max(1, int(getattr(get_settings(), name)))
    except (TypeError, ValueError):
        return default


def _count(bucket: str, limit: int, now: float) -> None:
    window = int(now // WINDOW_SECONDS)
    end = (window + 1) * WINDOW_SECONDS
    if not sharing_store().hit(f"{bucket}:{window}", limit, end + WINDOW_SECONDS):
        wait = max(1, int(end - now + 0.999))
        raise errors.TooManyRequests(f"Too many requests to shared links; try again in "
                                     f"{wait} s.", code="too_many_requests",
                                     headers={"Retry-After": str(wait)})


def open_link(token: str, password: str | None, address: str | None) -> Opened:
    """The link this token opens, after the rate limits, its state and its password."""
    now = time.time()
    link_id = link_id_of(token if isinstance(token, str) else "")
    _count(f"address:{address or '?'}",
           _limit("link_requests_per_minute_per_address", 300), now)
    _count(f"link:{link_id}", _limit("link_requests_per_minute", 120), now)
    link = sharing_store().get_link(link_id) if TOKEN_RE.fullmatch(token or "") else None
    missing = errors.NotFound("No such link (check that it was copied whole).",
                              code="link_not_found")
    if link is None:
        raise missing
    state = _state(link, now)
    if state != "active":
        raise errors.Gone(f"This link was {state == 'revoked' and 'revoked' or 'valid until'}"
                          f"{'' if state == 'revoked' else ' ' + tree.iso(link.expires_at)}; "
                          f"ask its owner for a new one.", code=f"link_{state}")
    if link.password_hash is not None:
        if not password:
            raise errors.Unauthorized("This link needs its password, in the X-Link-Password "
                                      "header.", code="password_required")
        from argon2.exceptions import InvalidHashError, VerificationError
        try:
            _hasher().verify(link.password_hash, password)
        except (VerificationError, InvalidHashError):
            raise errors.Unauthorized("Wrong password for this link.",
                                      code="wrong_password") from None
    if not access.owner_active(link.owner):
        raise errors.Gone("This link's owner no longer has an account here; it does not open "
                          "any more.", code="link_owner_gone")
    try:
        top = tree.get_node(link.owner, link.node_id)
    except errors.NotFound:
        raise missing from None
    return Opened(link, link.owner, top)


def node_info(opened: Opened, node: Node, limit: int, cursor: str | None) -> dict:
    """What a link holder sees of an item: no ids, versions or storage details."""
    info = {"name": node.name, "type": node.type, "size": int(node.size or 0),
            "modified": tree.iso(node.modified), "path": opened.path_of(node),
            "expires_at": tree.iso(opened.link.expires_at)
            if opened.link.expires_at is not None else None}
    if node.type == tree.FILE:
        info.update(content_type=node.content_type, etag=node.etag)
        return info
    children, next_cursor = tree.list_children(opened.owner, node.node_id, limit, cursor)
    info["children"] = [{k: entry[k] for k in ("name", "type", "size", "modified")}
                        for entry in children]
    info["next_cursor"] = next_cursor
    return info
