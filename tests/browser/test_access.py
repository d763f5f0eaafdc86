"""Signing in and who sees what: errors in words, keyboard-only use, token refresh, the admin
page for admins only, and a phone-width viewport without horizontal scrolling."""
from __future__ import annotations

import json

from playwright.sync_api import expect

from tests.support import PASSWORD, register_and_login

from .helpers import (
    login_ui,
    no_horizontal_scroll,
    open_files,
    row,
    sign_in_with_tokens,
    upload_files,
    wait_for_transfer,
)

ADMIN_PASSWORD = "Adm1nPassword"     # tests/conftest.py's admin fixture


def test_errors_are_shown_in_words(page, base_url, api):
    user = register_and_login(api)
    page.goto(base_url + "/#/login")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Log in").click()
    alert = page.get_by_role("alert")
    expect(alert).to_have_text("Wrong username or password.")
    expect(page.get_by_role("heading", name="Log in to Cloudstrype")).to_be_visible()

    page.get_by_label("Password").fill("")
    page.get_by_role("button", name="Log in").click()
    expect(alert).to_have_text("Enter your password.")
    expect(page.get_by_label("Password")).to_be_focused()

    page.get_by_role("link", name="Create an account").click()
    # The sign-up form replaces the log-in form (both have a Username field): fill the new one.
    expect(page.get_by_role("heading", name="Create your account")).to_be_visible()
    page.get_by_label("Username").fill(user.username + "x")
    page.get_by_label("E-mail").fill("someone@example.org")
    page.get_by_label("Password").fill("short")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("alert")).to_contain_text("Password is too weak")
    expect(page.get_by_label("Password")).to_have_attribute("aria-invalid", "true")
    for text in (page.get_by_role("alert").text_content(),):
        assert "{" not in text and "error" not in text.lower()

    # A storage the server cannot use: the dialog stays open and says why.
    sign_in_with_tokens(page, base_url, user, "#/storages")
    page.locator('.add-card[data-kind="local"]').get_by_role("button", name="Add").click()
    dialog = page.get_by_role("dialog", name="Add folder on the server")
    dialog.get_by_label("Directory").fill("/proc/version/cannot-be-here")
    dialog.get_by_role("button", name="Add storage").click()
    # Outside the operator's storage roots: the server's own words, shown as they are.
    expect(dialog.get_by_role("alert")).to_contain_text(
        "/proc/version/cannot-be-here is not a folder inside the storage roots")
    dialog.get_by_label("Directory").fill("somewhere")
    dialog.get_by_label("Capacity").fill("lots")
    dialog.get_by_role("button", name="Add storage").click()
    expect(dialog.get_by_role("alert")).to_have_text(
        "Capacity: write a size like 500 GB, 2 TB or a number of bytes.")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    # Uploading with no storage at all: the transfer fails with the server's reason.
    open_files(page, base_url)
    expect(page.get_by_role("link", name="Add a storage")).to_be_visible()
    upload_files(page, [{"name": "nowhere.txt", "mimeType": "text/plain", "buffer": b"hello"}])
    item = wait_for_transfer(page, "nowhere.txt", state="failed")
    status = item.locator(".transfer-status").text_content()
    assert status.startswith("Failed: ") and "{" not in status and len(status) > 20, status
    expect(item.get_by_role("button", name="Try nowhere.txt again")).to_be_visible()


def test_keyboard_only_login_and_dialogs(page, base_url, web_user):
    page.goto(base_url + "/#/login")
    username = page.get_by_label("Username")
    expect(username).to_be_focused()
    page.keyboard.type(web_user.username)
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Log in")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=f"Hello, {web_user.username}")).to_be_visible()

    # After a reload, the skip link is the first stop and jumps to the content.
    page.reload()
    page.locator(".stat").first.wait_for()
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=f"Hello, {web_user.username}")).to_be_focused()
    assert page.evaluate("location.hash") == "#/"

    # In the file browser: a dialog opens on Enter, Escape cancels it, Enter submits it.
    open_files(page, base_url)
    new_folder = page.get_by_role("button", name="New folder")
    new_folder.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="New folder")
    expect(dialog.get_by_label("Folder name")).to_be_focused()
    page.keyboard.type("never-made")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(new_folder).to_be_focused()
    page.keyboard.press("Enter")
    page.keyboard.type("made-by-keyboard")
    page.keyboard.press("Enter")
    expect(row(page, "made-by-keyboard")).to_be_visible()
    expect(row(page, "never-made")).to_have_count(0)

    # The row menu works with arrows and Escape, and Enter on an item acts.
    menu_button = page.get_by_role("button", name="Actions for made-by-keyboard")
    menu_button.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("menuitem", name="Open")).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(page.get_by_role("menuitem", name="Share")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.get_by_role("menu")).to_be_hidden()
    expect(menu_button).to_be_focused()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("End")
    expect(page.get_by_role("menuitem", name="Delete")).to_be_focused()
    page.keyboard.press("Enter")
    confirm = page.get_by_role("dialog", name="Delete folder?")
    # A dangerous dialog starts on Cancel (an Enter too many deletes nothing); Tab, Enter.
    expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Tab")
    expect(confirm.get_by_role("button", name="Delete")).to_be_focused()
    page.keyboard.press("Enter")
    expect(row(page, "made-by-keyboard")).to_have_count(0)


def test_tokens_are_refreshed_before_expiry_and_after_a_rejection(page, base_url, web_user):
    refreshes = []
    page.on("request", lambda r: refreshes.append(r.url)
            if r.url.endswith("/api/auth/refresh") else None)
    login_ui(page, base_url, web_user.username, PASSWORD)
    session = json.loads(page.evaluate("localStorage.getItem('cloudstrype.session')"))
    assert session["refresh_token"] and session["expires_at"] > 0

    # An access token about to expire is refreshed before the next request.
    page.evaluate("s => localStorage.setItem('cloudstrype.session', s)",
                  json.dumps({**session, "expires_at": 1}))
    page.reload()
    expect(page.get_by_role("heading", name=f"Hello, {web_user.username}")).to_be_visible()
    assert len(refreshes) == 1
    renewed = json.loads(page.evaluate("localStorage.getItem('cloudstrype.session')"))
    # Refresh tokens rotate: the web UI keeps the new one (the old one is spent).
    assert renewed["expires_at"] > 1
    assert renewed["refresh_token"] and renewed["refresh_token"] != session["refresh_token"]

    # A token the server rejects is refreshed once and the request repeated.
    page.evaluate("s => localStorage.setItem('cloudstrype.session', s)",
                  json.dumps({**renewed, "access_token": "not.a.token"}))
    page.reload()
    expect(page.get_by_role("heading", name=f"Hello, {web_user.username}")).to_be_visible()
    assert len(refreshes) == 2
    stored = json.loads(page.evaluate("localStorage.getItem('cloudstrype.session')"))
    assert stored["access_token"] != "not.a.token"

    # A refresh token the server refuses ends the session with a message.
    page.evaluate("s => localStorage.setItem('cloudstrype.session', s)",
                  json.dumps({**renewed, "access_token": "not.a.token",
                              "refresh_token": "revoked"}))
    page.reload()
    expect(page.get_by_role("heading", name="Log in to Cloudstrype")).to_be_visible()
    expect(page.get_by_text("Your session has ended. Please log in again.")).to_be_visible()


def test_admin_page_is_for_admins_only(pages, base_url, admin, web_user):
    _, admin_name = admin
    page = pages()
    login_ui(page, base_url, admin_name, ADMIN_PASSWORD)
    nav = page.get_by_role("navigation", name="Main")
    nav.get_by_role("link", name="Admin").click()
    expect(page.get_by_role("heading", name="Admin", level=1)).to_be_visible()
    users = page.locator(".users-table")
    expect(users.locator(f'tr[data-username="{admin_name}"]')).to_contain_text("admins")
    expect(users.get_by_role("button", name=f"Delete {admin_name}")).to_be_disabled()
    # One page of users and no more: nothing below the table ("null" was, once).
    assert "null" not in page.locator("#main").inner_text()

    # Create a group and put the normal user in it.
    page.get_by_label("Group name").fill("family")
    page.get_by_label("Description").fill("Shares holiday photos")
    page.get_by_role("button", name="Create group").click()
    expect(page.locator('.groups-table tr[data-group="family"]')).to_contain_text("nobody")
    users.get_by_role("button", name=f"Groups of {web_user.username}").click()
    dialog = page.get_by_role("dialog", name=f"Groups of {web_user.username}")
    dialog.get_by_label("family").check()
    dialog.get_by_role("button", name="Save").click()
    expect(page.locator('.groups-table tr[data-group="family"]')).to_contain_text(web_user.username)
    members = admin[0].get("/api/auth/groups/family/members").json()["members"]
    assert members == [web_user.username]

    # What the group's members reach through it: nothing yet, then a folder the user shares.
    groups = page.locator(".groups-table")
    groups.get_by_role("button", name="Shares of family").click()
    expect(page.get_by_role("heading", name="Shared with the group family")).to_be_visible()
    expect(page.get_by_text("Nothing is shared with this group.")).to_be_visible()
    assert web_user.api.post("/api/filesystem/dirs", json={"path": "/holidays"}).status_code == 201
    made = web_user.api.post("/api/filesystem/shares", json={"path": "/holidays",
                                                              "group": "family", "level": "write"})
    assert made.status_code == 201, made.text
    share_id = made.json()["id"]
    expect(groups.get_by_role("button", name="Shares of family")).to_have_attribute(
        "aria-expanded", "true")
    groups.get_by_role("button", name="Shares of family").click()
    listed = page.get_by_role("table", name="Shared with the group family")
    expect(listed.locator("tbody tr")).to_have_count(1)
    shown = listed.locator(f'tr[data-share="{share_id}"]')
    for text in (web_user.username, "/holidays", "write"):
        expect(shown).to_contain_text(text)
    # Shares of a deleted group stay with its name: revoke this one before the group goes.
    assert web_user.api.delete(f"/api/filesystem/shares/{share_id}").status_code == 204
    page.locator('.groups-table tr[data-group="family"]').get_by_role(
        "button", name="Delete group family").click()
    page.get_by_role("dialog", name="Delete the group family?").get_by_role(
        "button", name="Delete group").click()
    expect(page.locator('.groups-table tr[data-group="family"]')).to_have_count(0)

    # A normal user has no Admin link, and the page itself refuses.
    other = pages()
    login_ui(other, base_url, web_user.username, PASSWORD)
    expect(other.get_by_role("navigation", name="Main").get_by_role("link", name="Admin")
           ).to_have_count(0)
    other.goto(base_url + "/#/admin")
    expect(other.get_by_role("alert")).to_have_text("This page is for administrators only.")
    expect(other.locator(".users-table")).to_have_count(0)


def test_phone_width_has_no_horizontal_scrolling(pages, base_url, web_user):
    page = pages(viewport=(390, 844))
    sign_in_with_tokens(page, base_url, web_user)
    open_files(page, base_url)
    upload_files(page, [
        {"name": "a-rather-long-file-name-that-would-push-a-table-wide-on-a-phone.pdf",
         "mimeType": "application/pdf", "buffer": b"%PDF" * 300},
        {"name": "short.txt", "mimeType": "text/plain", "buffer": b"hi"},
    ])
    wait_for_transfer(page, "short.txt")
    wait_for_transfer(page, "a-rather-long-file-name-that-would-push-a-table-wide-on-a-phone.pdf")
    expect(page.locator(".file-table tbody tr")).to_have_count(2)
    expect(page.locator(".file-table th.col-modified")).to_be_hidden()
    expect(row(page, "short.txt").get_by_role("button", name="Actions for short.txt")
           ).to_be_visible()
    sizes = no_horizontal_scroll(page)
    assert sizes["scrollWidth"] <= sizes["clientWidth"] == 390, sizes

    # The menu button opens the navigation; every main page fits the width too.
    nav = page.get_by_role("navigation", name="Main")
    expect(nav).to_be_hidden()
    page.get_by_role("button", name="Menu").click()
    expect(nav).to_be_visible()
    nav.get_by_role("link", name="Storages").click()
    expect(nav).to_be_hidden()
    expect(page.locator(".storage-card")).to_have_count(2)
    for hash_, ready in (("#/storages", ".storage-card"), ("#/", ".stat"), ("#/settings", "select"),
                         ("#/members", ".empty")):
        page.goto(f"{base_url}/{hash_}")
        page.locator(ready).first.wait_for()
        sizes = no_horizontal_scroll(page)
        assert sizes["scrollWidth"] <= sizes["clientWidth"], (hash_, sizes)
    open_files(page, base_url)
    row(page, "short.txt").get_by_role("link", name="short.txt").click()
    page.locator(".shares-table").wait_for()
    sizes = no_horizontal_scroll(page)
    assert sizes["scrollWidth"] <= sizes["clientWidth"], ("details", sizes)


def test_the_password_is_changed_on_the_settings_page(pages, base_url, api):
    user = register_and_login(api)
    page = pages()
    login_ui(page, base_url, user.username, PASSWORD)
    page.goto(base_url + "/#/settings")
    page.get_by_label("Current password").fill("not-the-password")
    page.get_by_label("New password", exact=True).fill("N3w-Passw0rd-Web")
    page.get_by_label("New password again").fill("N3w-Passw0rd-Web")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("alert")).to_contain_text("current password is wrong")
    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("status").filter(has_text="Password changed")).to_be_visible()
    # Still signed in here; the new password is the one that works.
    expect(page.get_by_role("heading", name="Settings")).to_be_visible()
    assert api.post("/api/auth/login", json={"username": user.username,
                                             "password": "N3w-Passw0rd-Web"}).status_code == 200


def test_an_address_with_no_page_is_said_not_swapped_for_the_dashboard(page, base_url,
                                                                       web_user):
    sign_in_with_tokens(page, base_url, web_user, "#/no-such-thing")
    expect(page.get_by_role("heading", name="No such page")).to_be_visible()
    assert page.url.endswith("#/no-such-thing")
    page.get_by_role("link", name="Go to the dashboard").click()
    expect(page.locator(".stat").first).to_be_visible()
