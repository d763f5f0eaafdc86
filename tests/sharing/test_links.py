"""Links through HTTP against running stacks: no account needed, ranges, password, expiry,
revoking, rate limits, and the token kept out of the log."""
from __future__ import annotations

import os
import time

import requests

from tests.sharing.conftest import PER_ADDRESS, PER_LINK, mkdir, uploaded, with_storages
from tests.support import Api, assert_error, register_and_login, unique, wait_for

FS = "/api/filesystem"


def make_link(user, **body) -> dict:
    response = user.api.post(f"{FS}/links", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def public(stack_url: str, token: str, suffix: str = "", **kwargs) -> requests.Response:
    return requests.get(f"{stack_url}{FS}/public/{token}{suffix}", timeout=30, **kwargs)


def test_a_file_link_downloads_without_an_account_whole_and_in_ranges(stack, alice):
    body = os.urandom(300_000)
    uploaded(alice, "/", "video.bin", body)
    link = make_link(alice, path="/video.bin")
    token = link["token"]
    assert len(token) == 43 and link["url"].endswith(f"/#/link/{token}")
    assert link["password"] is False and link["expires_at"] is None
    assert link["state"] == "active" and link["path"] == "/video.bin"

    info = public(stack.url, token)
    assert info.status_code == 200, info.text
    shown = info.json()
    assert shown["name"] == "video.bin" and shown["size"] == len(body) and shown["path"] == "/"
    assert not {"id", "versions", "durability", "encryption", "version"} & set(shown)
    whole = public(stack.url, token, "/data")
    assert whole.status_code == 200 and whole.content == body
    ranged = public(stack.url, token, "/data", headers={"Range": "bytes=1000-1999"})
    assert ranged.status_code == 206 and ranged.content == body[1000:2000]
    assert ranged.headers["Content-Range"] == f"bytes 1000-1999/{len(body)}"
    unchanged = public(stack.url, token, "/data", headers={"If-None-Match": whole.headers["ETag"]})
    assert unchanged.status_code == 304
    assert_error(public(stack.url, token, "/data", headers={"Range": f"bytes={len(body)}-"}),
                 416)
    # A bearer token changes nothing: the link is the only key.
    assert public(stack.url, token, headers={"Authorization": "Bearer junk"}).status_code == 200

    # Nothing but the link's own token opens it.
    assert_error(public(stack.url, "A" * 43), 404, "link_not_found")
    assert_error(public(stack.url, token[:-1] + ("A" if token[-1] != "A" else "B")), 404,
                 "link_not_found")
    assert_error(public(stack.url, link["id"]), 404, "link_not_found")


def test_a_folder_link_lists_and_serves_what_is_below_it_and_nothing_else(stack, alice):
    mkdir(alice, "/trip/day1")
    uploaded(alice, "/trip", "map.png", b"map")
    uploaded(alice, "/trip/day1", "beach.jpg", b"sand")
    uploaded(alice, "/", "diary.txt", b"private")
    token = make_link(alice, path="/trip")["token"]

    top = public(stack.url, token).json()
    assert top["path"] == "/" and top["type"] == "directory"
    assert [(c["name"], c["type"]) for c in top["children"]] == \
        [("day1", "directory"), ("map.png", "file")]
    assert all("id" not in c for c in top["children"])
    day = public(stack.url, token, params={"path": "/day1"}).json()
    assert day["path"] == "/day1" and [c["name"] for c in day["children"]] == ["beach.jpg"]
    got = public(stack.url, token, "/data", params={"path": "/day1/beach.jpg"})
    assert got.status_code == 200 and got.content == b"sand"
    paged = public(stack.url, token, params={"limit": 1}).json()
    assert len(paged["children"]) == 1 and paged["next_cursor"]

    assert_error(public(stack.url, token, "/data"), 400, "not_a_file")
    for path in ("/../diary.txt", "/..", "/day1/../../diary.txt"):
        assert_error(public(stack.url, token, "/data", params={"path": path}), 400)
    assert_error(public(stack.url, token, "/data", params={"path": "/diary.txt"}), 404)


def test_a_password_goes_in_a_header_and_is_checked(stack, alice):
    uploaded(alice, "/", "locked.txt", b"locked")
    link = make_link(alice, path="/locked.txt", password="open sesame")
    assert link["password"] is True
    token = link["token"]
    assert_error(public(stack.url, token), 401, "password_required")
    assert_error(public(stack.url, token, "/data"), 401, "password_required")
    assert_error(public(stack.url, token, headers={"X-Link-Password": "open says me"}), 401,
                 "wrong_password")
    # Never from the query string (it ends up in logs and histories).
    assert_error(public(stack.url, token, params={"password": "open sesame"}), 401)
    right = public(stack.url, token, "/data", headers={"X-Link-Password": "open sesame"})
    assert right.status_code == 200 and right.content == b"locked"
    # Kept by no shared cache (it would give it to anyone asking, password or not, revoked
    # or not); the JSON answers by no cache at all.
    assert right.headers["Cache-Control"] == "private, no-cache"
    assert public(stack.url, token, headers={"X-Link-Password": "open sesame"}
                  ).headers["Cache-Control"] == "no-store"
    listed = alice.api.get(f"{FS}/links").json()["links"]
    assert [x["id"] for x in listed] == [link["id"]]
    assert "open sesame" not in str(listed) and "token" not in listed[0]
    # HTTP drops a header's edge spaces: a password that starts or ends with one could never
    # be sent back, so it is refused when the link is made (sharing sweep).
    for edged in ("secret ", " secret", " ", "\tsecret"):
        refused = alice.api.post(f"{FS}/links", json={"path": "/locked.txt", "password": edged})
        assert_error(refused, 400, "invalid_field")
    inner = make_link(alice, path="/locked.txt", password="a  b")
    assert public(stack.url, inner["token"], "/data",
                  headers={"X-Link-Password": "a  b"}).content == b"locked"


def test_links_expire_and_are_revoked_at_once_by_their_owner_only(stack, alice, bob):
    uploaded(alice, "/", "soon.txt", b"soon")
    short = make_link(alice, path="/soon.txt", expires_in=2)
    kept = make_link(alice, path="/soon.txt")
    assert short["expires_at"] is not None
    assert public(stack.url, short["token"]).status_code == 200
    time.sleep(3)
    assert_error(public(stack.url, short["token"]), 410, "link_expired")

    assert_error(bob.api.delete(f"{FS}/links/{kept['id']}"), 404, "link_not_found")
    assert bob.api.get(f"{FS}/links").json()["links"] == []
    assert public(stack.url, kept["token"]).status_code == 200
    assert alice.api.delete(f"{FS}/links/{kept['id']}").status_code == 204
    assert_error(public(stack.url, kept["token"], "/data"), 410, "link_revoked")
    states = {x["id"]: x["state"] for x in alice.api.get(f"{FS}/links").json()["links"]}
    assert states == {short["id"]: "expired", kept["id"]: "revoked"}

    # The item gone: the link opens nothing.
    gone = make_link(alice, path="/soon.txt")
    file_id = alice.api.get(f"{FS}/info", params={"path": "/soon.txt"}).json()["id"]
    assert alice.api.delete(f"{FS}/info/{file_id}").status_code == 204
    assert_error(public(stack.url, gone["token"]), 404, "link_not_found")

    # Mistakes, each named; a recipient or stranger links nothing of Alice's.
    for body, status in (({"path": "/"}, 400), ({"path": "/nothing"}, 404),
                         ({"path": "/x", "expires_in": 0}, 400),
                         ({"path": "/x", "password": ""}, 400), ({}, 400)):
        assert_error(alice.api.post(f"{FS}/links", json=body), status)
    # A password a browser could not send back in the X-Link-Password header is refused.
    for password in ("pässwörd", "pass€word", "tab\there"):
        error = assert_error(alice.api.post(f"{FS}/links", json={"path": "/x",
                                                                  "password": password}),
                             400, "invalid_field")
        assert error["details"] == {"field": "password"} and "ASCII" in error["message"]
    assert_error(bob.api.post(f"{FS}/links", json={"node_id": file_id}), 404)


# -- a stack of its own (tests/sharing/conftest.py): tight limits and an INFO log -------------

def test_public_requests_are_rate_limited_per_link_and_per_address(limited):
    api = Api(limited.url)
    owner = with_storages(api, register_and_login(api))
    uploaded(owner, "/", "a.txt", b"a")
    first, second = (make_link(owner, path="/a.txt")["token"] for _ in range(2))
    # The limits count per minute: start early in a window so the test fits in one.
    if time.time() % 60 > 40:
        time.sleep(61 - time.time() % 60)

    for _ in range(PER_LINK):
        assert public(limited.url, first).status_code == 200
    refused = public(limited.url, first)
    assert_error(refused, 429, "too_many_requests")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    # Another link is counted on its own, until the address's limit over all links is reached
    # (the refused request counted for the address too).
    remaining = PER_ADDRESS - PER_LINK - 1
    for _ in range(remaining):
        assert public(limited.url, second).status_code == 200
    assert_error(public(limited.url, second), 429, "too_many_requests")
    # Guessing tokens is counted the same.
    assert_error(public(limited.url, "B" * 43), 429, "too_many_requests")

    log = limited.log()
    assert f"{FS}/public/<redacted>" in log, log[-2000:]
    assert first not in log and second not in log


def test_a_path_cannot_forge_a_log_line(limited):
    # Paths reach the log decoded: %0A would start a line of the caller's own.
    marker = unique("FORGED")
    response = requests.get(f"{limited.url}/api/array/members/x%0A2026-12-02 04:58:00,000 ERROR "
                            f"fake: {marker}%1B%5B31m%00", timeout=10)
    assert response.status_code == 401
    logged = wait_for(lambda: [line for line in limited.log().splitlines() if marker in line],
                      timeout=10, what="the request's log line")
    assert all(not line.startswith("2026-12-02 04:58:00") for line in logged), logged
    assert all("\x1b" not in line and "\x00" not in line for line in logged), logged
    assert any("x\\n2026-12-02" in line for line in logged), logged
