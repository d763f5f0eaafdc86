"""What other people's names cannot do to the page: widen it past the window, turn text around
(bidi controls), or send a signed-in browser elsewhere (`next=`); and that Log out ends the
sign-in on the server, not only in this browser."""
from __future__ import annotations

import json

from playwright.sync_api import expect

from tests.support import register_and_login

from .helpers import no_horizontal_scroll, sign_in_with_tokens

LONG = "x" * 250                        # one word: nothing to wrap at but anywhere
TURNED = "\u202egnp.exe.txt"            # drawn as "txt.exe.png" if the U+202E is obeyed


def _put(user, directory, name, data=b"x"):
    done = user.api.post("/api/filesystem/data", data={"path": directory, "name": name},
                         files={"file": ("f", data)})
    assert done.status_code == 201, done.text
    return done.json()


def test_long_and_turned_names_stay_in_the_window_and_read_as_they_are(
        pages, base_url, api, web_user):
    _put(web_user, f"/{LONG}", TURNED)
    _put(web_user, f"/{LONG}", f"{LONG}.bin")
    gone = _put(web_user, "/", f"{LONG}.old")
    assert web_user.api.delete(f"/api/filesystem/info/{gone['id']}").status_code == 204
    friend = register_and_login(api)
    share = web_user.api.post("/api/filesystem/shares", json={
        "path": f"/{LONG}", "user": friend.username, "level": "read"})
    assert share.status_code == 201, share.text

    guest = pages()
    sign_in_with_tokens(guest, base_url, friend, "#/shared")
    expect(guest.locator(f'tr[data-share="{share.json()["id"]}"]')).to_be_visible()
    for hash_ in ("#/shared", f"#/shared/{share.json()['id']}"):
        guest.goto(f"{base_url}/{hash_}")
        expect(guest.locator("tbody tr").first).to_be_visible()
        fits = no_horizontal_scroll(guest)
        assert fits["scrollWidth"] <= fits["clientWidth"], (hash_, fits)
    # The control character is shown, not obeyed.
    expect(guest.get_by_text("\\u202Egnp.exe.txt")).to_be_visible()
    assert "txt.exe.png" not in guest.locator("#main").inner_text()

    # In the tab's title too (the file's page).
    turned = web_user.api.get("/api/filesystem/info", params={"path": f"/{LONG}/{TURNED}"}).json()
    page_of = pages()
    sign_in_with_tokens(page_of, base_url, web_user, f"#/file/{turned['id']}")
    expect(page_of).to_have_title("\\u202Egnp.exe.txt · Cloudstrype")

    owner = pages()
    sign_in_with_tokens(owner, base_url, web_user, "#/trash")
    expect(owner.locator("tbody tr").first).to_be_visible()
    fits = no_horizontal_scroll(owner)
    assert fits["scrollWidth"] <= fits["clientWidth"], fits
    expect(owner.get_by_role("button", name="Restore").first).to_be_in_viewport()


def test_next_never_leaves_the_app_and_log_out_ends_the_sign_in(pages, base_url, api, web_user):
    page = pages()
    sign_in_with_tokens(page, base_url, web_user, "#/")
    expect(page.get_by_role("heading", name=f"Hello, {web_user.username}")).to_be_visible()
    for next_ in ("javascript%3Aalert%281%29", "%2F%2Fexample.org%2Fx",
                  "https%3A%2F%2Fexample.org"):
        page.goto(f"{base_url}/#/login?next={next_}")
        expect(page.get_by_role("heading", name=f"Hello, {web_user.username}")).to_be_visible()
        assert page.url.startswith(base_url)

    session = json.loads(page.evaluate("localStorage.getItem('cloudstrype.session')"))
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in to Cloudstrype")).to_be_visible()
    assert api.as_user(session["access_token"]).get("/api/auth/me").status_code == 401
    assert api.post("/api/auth/refresh",
                    json={"refresh_token": session["refresh_token"]}).status_code == 401


def test_names_that_differ_in_spaces_are_shown_apart(page, base_url, web_user):
    """HTML collapses runs of spaces: "a  b.txt" and "a b.txt", two files, looked the same
    (found by the web UI sweep)."""
    folder = "/spaces"
    for name in ("a  b.txt", "a b.txt", "  lead.txt"):
        _put(web_user, folder, name)
    sign_in_with_tokens(page, base_url, web_user, "#/files?path=" + folder)
    names = page.locator("tbody .item-name")
    expect(names).to_have_count(3)
    shown = sorted(names.evaluate_all("els => els.map((e) => e.innerText)"))
    assert shown == sorted(["a  b.txt", "a b.txt", "  lead.txt"]), shown


def test_a_file_address_that_names_no_file_says_so(pages, base_url, web_user):
    """'..' in a file's address: sent as it was, the browser resolved it into another API route,
    and the page showed that route's message for developers."""
    page = pages()
    for odd in ("%2e%2e", "..%2Fx", "a%20b"):
        sign_in_with_tokens(page, base_url, web_user, f"#/file/{odd}")
        expect(page.get_by_role("alert")).to_contain_text("There is no such file")
        assert "openapi" not in page.locator("#main").inner_text()
