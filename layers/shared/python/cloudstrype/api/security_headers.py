"""The response headers that keep the web UI and users' files from being turned against the
app, declared once: the local gateway sends them, the CDK's CloudFront policy sends the web UI's,
and the filesystem functions send the file content's.

The web UI has no inline script or style and builds every page from text nodes (web/js/dom.js),
so its policy can be strict: its own scripts and styles only, requests to itself and the API,
no frames, no plugins, no <base>.
"""
from __future__ import annotations

# Where the web UI's own files come from and what they may load. `connect-src` is completed by
# web_ui_policy with the API and WebSocket origins.
_WEB_UI_DIRECTIVES = (
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
)


def web_ui_policy(*connect_sources: str) -> str:
    """The web UI's Content-Security-Policy; `connect_sources`: origins it calls besides its
    own (the API, the WebSocket)."""
    connect = " ".join(("'self'",) + tuple(s for s in connect_sources if s))
    return "; ".join(_WEB_UI_DIRECTIVES + (f"connect-src {connect}",))


# Sent with every web UI file besides the policy.
WEB_UI_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}

# Sent with a file's content (GET .../data/{id}, a link's data): whatever type its uploader gave
# it, a browser neither guesses another (nosniff) nor runs it as a page of the API's origin
# (sandbox, nothing loaded); it is an attachment besides.
FILE_CONTENT_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox; default-src 'none'",
    # Never kept by a shared cache (a proxy, a CDN): a link's content asked for without its
    # password, or after it was revoked, would come from there. The reader's own browser may
    # keep it, asking each time whether it changed (ETag: a 304, or the link's 410).
    "Cache-Control": "private, no-cache",
}
# Every other answer of the API is one caller's, as of now: kept by no cache.
API_CACHE_CONTROL = "no-store"
