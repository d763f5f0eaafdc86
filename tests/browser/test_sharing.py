"""Sharing in the web UI: the share dialog (a person with write access, who finds the folder
under Shared with me, downloads and uploads), links with a password opened in a browser with no
account, and the Trash page (restore, restore elsewhere, empty)."""
from __future__ import annotations

import os
import re

from playwright.sync_api import expect

from tests.filesystem.conftest import session_upload
from tests.support import register_and_login

from .helpers import open_files, row, row_action, sign_in_with_tokens, wait_for_transfer


def _put(user, directory: str, name: str, data: bytes) -> dict:
    done = user.api.post("/api/filesystem/data", data={"path": directory, "name": name},
                         files={"file": (name, data)})
    assert done.status_code == 201, done.text
    return done.json()


def _with_storages(user, tmp_path):
    for n in range(2):
        added = user.api.post("/api/cloud/storages", json={
            "kind": "local", "name": f"disk{n}",
            "config": {"path": str(tmp_path / f"{user.username}-{n}")}})
        assert added.status_code == 201, added.text
    return user


def test_share_dialog_gives_a_person_write_access_who_downloads_and_uploads(
        pages, base_url, api, web_user):
    content = os.urandom(3000)
    _put(web_user, "/team", "plan.bin", content)
    friend = register_and_login(api)

    owner = pages()
    sign_in_with_tokens(owner, base_url, web_user)
    open_files(owner, base_url)
    row_action(owner, "team", "Share")
    dialog = owner.get_by_role("dialog", name="Share “team”")
    expect(dialog.get_by_role("status")).to_contain_text("not shared with anyone")
    dialog.get_by_label("Username or group name").fill(friend.username)
    dialog.get_by_label("Access", exact=True).select_option("write")
    dialog.get_by_role("button", name="Share", exact=True).click()
    expect(dialog).to_have_count(0)
    (made,) = web_user.api.get("/api/filesystem/shares").json()["shares"]
    assert made["grantee"] == {"kind": "user", "name": friend.username}
    assert made["level"] == "write" and made["path"] == "/team"

    # The friend finds it under Shared with me, downloads a file and uploads one.
    guest = pages()
    sign_in_with_tokens(guest, base_url, friend, "#/")
    guest.get_by_role("navigation", name="Main").get_by_role("link", name="Shared with me").click()
    shared_row = guest.locator(f'tr[data-share="{made["id"]}"]')
    expect(shared_row).to_contain_text(web_user.username)
    expect(shared_row).to_contain_text("Can edit")
    shared_row.get_by_role("link", name="team").click()
    expect(row(guest, "plan.bin")).to_be_visible()
    with guest.expect_download() as download_info:
        guest.get_by_role("button", name="Download plan.bin").click()
    assert download_info.value.suggested_filename == "plan.bin"
    assert open(download_info.value.path(), "rb").read() == content
    with guest.expect_file_chooser() as chooser:
        guest.get_by_role("button", name="Upload files").click()
    # One small file, and one over a request (4 MiB): an upload session inside the share.
    video = os.urandom(4 * 1024 * 1024 + 1000)
    chooser.value.set_files([{"name": "reply.txt", "mimeType": "text/plain",
                              "buffer": b"from the friend"},
                             {"name": "video.bin", "mimeType": "application/octet-stream",
                              "buffer": video}])
    wait_for_transfer(guest, "reply.txt")
    wait_for_transfer(guest, "video.bin")
    expect(row(guest, "reply.txt")).to_be_visible()
    expect(row(guest, "video.bin")).to_be_visible()
    listing = web_user.api.get("/api/filesystem/info", params={"path": "/team"}).json()
    assert sorted(c["name"] for c in listing["children"]) == ["plan.bin", "reply.txt",
                                                              "video.bin"]
    (stored,) = [c for c in listing["children"] if c["name"] == "video.bin"]
    half = len(video) // 2
    got = b"".join(web_user.api.get(f"/api/filesystem/data/{stored['id']}", headers={
        "Range": f"bytes={first}-{last}"}).content
        for first, last in ((0, half - 1), (half, len(video) - 1)))
    assert got == video

    # The owner sees the share in the dialog, makes it read-only, then removes it.
    row_action(owner, "team", "Share")
    dialog = owner.get_by_role("dialog", name="Share “team”")
    grant = dialog.locator(f'li[data-grantee="{friend.username}"]')
    grant.get_by_label(f"Access for {friend.username} (person)").select_option("read")
    expect(owner.locator(".toast", has_text="can now only view")).to_be_visible()
    assert web_user.api.get(f"/api/filesystem/shares/{made['id']}").json()["level"] == "read"
    grant.get_by_role("button", name=f"Stop sharing with {friend.username} (person)").click()
    expect(grant).to_have_count(0)
    expect(dialog.get_by_role("status")).to_contain_text("not shared with anyone")
    dialog.get_by_role("button", name="Close").click()
    guest.reload()
    expect(guest.get_by_role("alert")).to_contain_text("not available to you")


def test_a_link_with_a_password_opens_and_downloads_without_an_account(pages, base_url,
                                                                       web_user):
    content = os.urandom(5000)
    _put(web_user, "/public", "photo.bin", content)
    _put(web_user, "/public/more", "deep.txt", b"deeper")

    owner = pages()
    owner.context.grant_permissions(["clipboard-read", "clipboard-write"])
    sign_in_with_tokens(owner, base_url, web_user)
    open_files(owner, base_url)
    row_action(owner, "public", "Get link")
    dialog = owner.get_by_role("dialog", name="Link to “public”")
    expect(dialog.get_by_role("status")).to_contain_text("has no links")
    dialog.get_by_label("Password").fill("open sesame")
    dialog.get_by_label("Expires").select_option(label="In 7 days")
    dialog.get_by_role("button", name="Create link").click()
    shown = owner.get_by_role("dialog", name="Link created")
    url = shown.get_by_label("Link", exact=True).input_value()
    assert url.startswith(base_url + "/#/link/"), url
    shown.get_by_role("button", name="Copy link").click()
    expect(owner.locator(".toast", has_text="Link copied.")).to_be_visible()
    assert owner.evaluate("navigator.clipboard.readText()") == url
    shown.get_by_role("button", name="Done").click()
    (link,) = web_user.api.get("/api/filesystem/links").json()["links"]
    assert link["password"] is True and link["expires_at"]

    # A browser with no account: the password first (a wrong one is refused), then the folder.
    stranger = pages()
    stranger.goto(url)
    expect(stranger.get_by_role("heading", name="This link needs a password")).to_be_visible()
    stranger.get_by_label("Password").fill("guess")
    stranger.get_by_role("button", name="Open").click()
    expect(stranger.get_by_role("alert")).to_contain_text("not right")
    stranger.get_by_label("Password").fill("open sesame")
    stranger.get_by_role("button", name="Open").click()
    expect(row(stranger, "photo.bin")).to_be_visible()
    expect(stranger.locator("main")).to_contain_text("This link works until")
    expect(stranger.locator("main")).not_to_contain_text("null")
    with stranger.expect_download() as download_info:
        stranger.get_by_role("button", name="Download photo.bin").click()
    assert open(download_info.value.path(), "rb").read() == content
    stranger.get_by_role("link", name="more").click()
    expect(row(stranger, "deep.txt")).to_be_visible()
    with stranger.expect_download() as download_info:
        stranger.get_by_role("button", name="Download deep.txt").click()
    assert open(download_info.value.path(), "rb").read() == b"deeper"
    assert stranger.evaluate("localStorage.getItem('cloudstrype.session')") is None
    assert stranger.locator("#nav").is_hidden()

    # Revoked in the dialog: the link stops working.
    row_action(owner, "public", "Get link")
    dialog = owner.get_by_role("dialog", name="Link to “public”")
    dialog.get_by_role("button", name=re.compile("^Revoke the link")).click()
    expect(dialog.get_by_text("Revoked")).to_be_visible()
    dialog.get_by_role("button", name="Close").click()
    stranger.goto(url)
    stranger.reload()
    expect(stranger.get_by_role("alert")).to_contain_text("revoked")


def test_deleted_files_come_back_from_the_trash_page(page, base_url, web_user):
    _put(web_user, "/junk", "old.txt", b"old but wanted")
    _put(web_user, "/junk", "other.txt", b"other")
    sign_in_with_tokens(page, base_url, web_user)
    open_files(page, base_url, "/junk")
    row_action(page, "old.txt", "Delete")
    confirm = page.get_by_role("dialog", name="Delete file?")
    expect(confirm).to_contain_text("move to the trash")
    confirm.get_by_role("button", name="Delete").click()
    expect(row(page, "old.txt")).to_have_count(0)
    row_action(page, "other.txt", "Delete")
    page.get_by_role("dialog", name="Delete file?").get_by_role("button", name="Delete").click()
    expect(row(page, "other.txt")).to_have_count(0)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Trash").click()
    expect(row(page, "old.txt")).to_contain_text("/junk")
    expect(page.get_by_text("deleted for good 30 days after")).to_be_visible()
    page.get_by_role("button", name="Restore old.txt", exact=True).click()
    expect(row(page, "old.txt")).to_have_count(0)
    expect(page.locator(".toast", has_text="Restored old.txt")).to_be_visible()
    info = web_user.api.get("/api/filesystem/info", params={"path": "/junk/old.txt"})
    assert info.status_code == 200, info.text
    assert web_user.api.get(f"/api/filesystem/data/{info.json()['id']}").content == \
        b"old but wanted"

    # Elsewhere, through the prompt.
    page.get_by_role("button", name="Restore other.txt to another folder").click()
    prompt = page.get_by_role("dialog", name="Restore “other.txt” to…")
    prompt.get_by_label("Folder").fill("/kept")
    prompt.get_by_role("button", name="Restore").click()
    expect(page.get_by_text("The trash is empty.")).to_be_visible()
    assert web_user.api.get("/api/filesystem/info",
                            params={"path": "/kept/other.txt"}).status_code == 200

    # Emptying asks first and deletes for good.
    web_user.api.delete(f"/api/filesystem/info/{info.json()['id']}")
    page.reload()
    expect(row(page, "old.txt")).to_be_visible()
    page.get_by_role("button", name="Empty trash").click()
    sure = page.get_by_role("dialog", name="Empty the trash?")
    expect(sure).to_contain_text("cannot be undone")
    sure.get_by_role("button", name="Empty trash").click()
    expect(page.get_by_text("The trash is empty.")).to_be_visible()
    assert web_user.api.get("/api/filesystem/trash").json()["items"] == []


def test_the_other_way_a_folder_shared_with_a_group_through_the_dialog(
        pages, base_url, api, admin, web_user, tmp_path):
    """The friend shares back, with a group both are in: the web user finds it under Shared with
    me (through the group) and downloads; leaving the group takes it away at once."""
    admin_api, _ = admin
    friend = _with_storages(register_and_login(api), tmp_path)
    group = f"team-{friend.username[-6:]}"
    assert admin_api.post("/api/auth/groups", json={"name": group, "description": ""}) \
        .status_code == 201
    for member in (friend.username, web_user.username):
        assert admin_api.put(f"/api/auth/groups/{group}/members/{member}").status_code in (200,
                                                                                          204)
    content = os.urandom(2000)
    _put(friend, "/from-friend", "notes.bin", content)

    sharer = pages()
    sign_in_with_tokens(sharer, base_url, friend)
    open_files(sharer, base_url)
    row_action(sharer, "from-friend", "Share")
    dialog = sharer.get_by_role("dialog", name="Share “from-friend”")
    dialog.get_by_label("Share with").select_option("group")
    dialog.get_by_label("Username or group name").fill(group)
    dialog.get_by_role("button", name="Share", exact=True).click()
    expect(dialog).to_have_count(0)
    (made,) = friend.api.get("/api/filesystem/shares").json()["shares"]
    assert made["grantee"] == {"kind": "group", "name": group} and made["level"] == "read"

    reader = pages()
    sign_in_with_tokens(reader, base_url, web_user, "#/")
    reader.get_by_role("navigation", name="Main").get_by_role("link",
                                                              name="Shared with me").click()
    shared_row = reader.locator(f'tr[data-share="{made["id"]}"]')
    expect(shared_row).to_contain_text(f"group {group}")
    shared_row.get_by_role("link", name="from-friend").click()
    with reader.expect_download() as download_info:
        reader.get_by_role("button", name="Download notes.bin").click()
    assert open(download_info.value.path(), "rb").read() == content

    # Out of the group: the share is gone for the reader at once.
    assert admin_api.delete(f"/api/auth/groups/{group}/members/{web_user.username}") \
        .status_code in (200, 204)
    reader.reload()
    expect(reader.get_by_role("alert")).to_contain_text("not available to you")


def _replaced_between_parts(page, url_glob: str, owner, new: bytes) -> list[str]:
    """Replace /moving/f.bin with `new` just before the browser's first request for its second
    4 MiB part is passed on; the ETags of the replacements."""
    replaced: list[str] = []

    def replace_then_continue(route):
        if not replaced and route.request.headers.get("range", "").startswith("bytes=4194304-"):
            replaced.append(session_upload(owner, "/moving", "f.bin", new)["etag"])
        route.continue_()

    page.route(url_glob, replace_then_continue)
    return replaced


def test_a_shared_file_replaced_while_it_downloads_comes_whole_in_its_new_version(
        pages, base_url, api, web_user):
    """A recipient's download pins no version: its later parts carry the first one's ETag, the
    server refuses a part of a newer version (412), and the page downloads the new version from
    the start — not the old version's first 4 MiB joined to the new one's rest (found by a
    sweep; the owner's file had no sha256 declared, as the web UI's uploads have none)."""
    size = 9 * 1024 * 1024 + 7
    old, new = os.urandom(size), os.urandom(size)
    session_upload(web_user, "/moving", "f.bin", old)
    friend = register_and_login(api)
    assert web_user.api.post("/api/filesystem/shares", json={
        "path": "/moving", "user": friend.username, "level": "read"}).status_code == 201

    guest = pages()
    replaced = _replaced_between_parts(guest, "**/api/filesystem/data/*", web_user, new)
    sign_in_with_tokens(guest, base_url, friend, "#/")
    guest.get_by_role("navigation", name="Main").get_by_role("link", name="Shared with me").click()
    guest.get_by_role("link", name="moving").click()
    with guest.expect_download() as download_info:
        guest.get_by_role("button", name="Download f.bin").click()
    assert replaced, "the file was not replaced during the download"
    assert open(download_info.value.path(), "rb").read() == new


def test_a_linked_file_replaced_while_it_downloads_comes_whole_in_its_new_version(
        pages, base_url, web_user):
    size = 9 * 1024 * 1024 + 7
    old, new = os.urandom(size), os.urandom(size)
    session_upload(web_user, "/moving", "f.bin", old)
    made = web_user.api.post("/api/filesystem/links", json={"path": "/moving"})
    assert made.status_code == 201, made.text

    stranger = pages()
    replaced = _replaced_between_parts(stranger, "**/api/filesystem/public/*/data*", web_user,
                                       new)
    stranger.goto(made.json()["url"])
    with stranger.expect_download() as download_info:
        stranger.get_by_role("button", name="Download f.bin").click()
    assert replaced, "the file was not replaced during the download"
    assert open(download_info.value.path(), "rb").read() == new


def test_a_link_download_waits_out_a_too_many_requests_and_comes_whole(pages, base_url,
                                                                       web_user):
    """A link's requests per minute are counted per range: a large download met 429 part-way
    and failed; it waits as Retry-After asks now."""
    data = os.urandom(9 * 1024 * 1024 + 3)
    session_upload(web_user, "/busy-link", "f.bin", data)
    made = web_user.api.post("/api/filesystem/links", json={"path": "/busy-link"})
    assert made.status_code == 201, made.text
    stranger = pages()
    refused = []

    def second_part_busy_once(route):
        if "bytes=4194304-" in (route.request.headers.get("range") or "") and not refused:
            refused.append(route.request.url)
            route.fulfill(status=429, headers={"Retry-After": "1",
                                               "Access-Control-Expose-Headers": "Retry-After"},
                          content_type="application/json", body='{"error": {"code": '
                          '"too_many_requests", "message": "Too many requests for this link."}}')
        else:
            route.continue_()
    stranger.route("**/api/filesystem/public/*/data*", second_part_busy_once)
    stranger.goto(made.json()["url"])
    with stranger.expect_download() as download_info:
        stranger.get_by_role("button", name="Download f.bin").click()
    assert refused, "no part was refused"
    assert open(download_info.value.path(), "rb").read() == data


def test_a_writer_renames_and_moves_inside_the_share(pages, base_url, api, web_user):
    _put(web_user, "/desk", "draft.txt", b"draft")
    assert web_user.api.post("/api/filesystem/dirs", json={"path": "/desk/done"}).status_code \
        == 201
    friend = register_and_login(api)
    made = web_user.api.post("/api/filesystem/shares", json={
        "path": "/desk", "user": friend.username, "level": "write"})
    assert made.status_code == 201, made.text
    guest = pages()
    sign_in_with_tokens(guest, base_url, friend, f"#/shared/{made.json()['id']}")
    guest.get_by_role("button", name="Rename draft.txt").click()
    dialog = guest.get_by_role("dialog", name="Rename file")
    dialog.get_by_label("New name").fill("final.txt")
    dialog.get_by_role("button", name="Rename").click()
    expect(row(guest, "final.txt")).to_be_visible()
    guest.get_by_role("button", name="Move final.txt").click()
    dialog = guest.get_by_role("dialog", name="Move “final.txt”")
    dialog.get_by_label("Folder to move it into").fill("/done")
    dialog.get_by_role("button", name="Move").click()
    expect(row(guest, "final.txt")).to_have_count(0)
    moved = web_user.api.get("/api/filesystem/info", params={"path": "/desk/done/final.txt"})
    assert moved.status_code == 200 and moved.json()["size"] == 5
