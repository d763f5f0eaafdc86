"""The file browser: large uploads through sessions (with a failed part retried), ranged
downloads, folder upload, drag-and-drop, folders, moving, sorting, breadcrumbs and the tree."""
from __future__ import annotations

import hashlib
import os
import re

from playwright.sync_api import expect

from tests.support import wait_for

from .helpers import (
    open_files,
    row,
    row_action,
    sign_in_with_tokens,
    upload_files,
    wait_for_transfer,
)

MIB = 1024 * 1024


def _upload_in_page(page, base_url, web_user, name: str, content: bytes, wait: bool = True):
    """Sign in, open My files and upload `content` as `name` through the picker; its transfer
    row once done (`wait`)."""
    sign_in_with_tokens(page, base_url, web_user)
    open_files(page, base_url)
    upload_files(page, [{"name": name, "mimeType": "application/octet-stream",
                         "buffer": content}])
    return wait_for_transfer(page, name) if wait else None


def test_large_file_goes_through_a_session_retries_a_failed_part_and_downloads_identical(
        page, base_url, web_user):
    content = os.urandom(9 * MIB + 12345)
    requests = []
    page.on("request", lambda r: requests.append((r.method, r.url, r.headers.get("range"))))
    failed_once = []

    def fail_first_attempt(route):
        if not failed_once:
            failed_once.append(route.request.url)
            route.fulfill(status=503, content_type="application/json",
                          body='{"error": {"code": "unavailable", "message": "Try again."}}')
        else:
            route.continue_()

    page.route("**/api/filesystem/uploads/*/parts/1", fail_first_attempt)
    item = _upload_in_page(page, base_url, web_user, "big.bin", content)
    expect(item).to_contain_text("Uploaded (1 retry)")

    # One session, three parts (part 1 twice), a commit; no one-shot upload of the whole file.
    part_puts = sorted(url.rsplit("/", 1)[1] for method, url, _ in requests
                       if method == "PUT" and "/parts/" in url)
    assert part_puts == ["0", "1", "1", "2"], part_puts
    assert any(m == "POST" and u.endswith("/api/filesystem/uploads") for m, u, _ in requests)
    assert any(m == "POST" and u.endswith("/commit") for m, u, _ in requests)
    assert not any(m == "POST" and u.endswith("/api/filesystem/data") for m, u, _ in requests)

    expect(row(page, "big.bin")).to_be_visible()
    listing = web_user.api.get("/api/filesystem/info", params={"path": "/"}).json()
    (entry,) = [c for c in listing["children"] if c["name"] == "big.bin"]
    assert entry["size"] == len(content)
    # Hashed in the page while its parts went up, declared at the commit.
    assert entry["sha256"] == hashlib.sha256(content).hexdigest()

    requests.clear()
    with page.expect_download() as download_info:
        row_action(page, "big.bin", "Download")
    path = download_info.value.path()
    assert (hashlib.sha256(open(path, "rb").read()).hexdigest()
            == hashlib.sha256(content).hexdigest())
    ranges = sorted(r for m, u, r in requests if m == "GET" and "/api/filesystem/data/" in u)
    assert ranges == sorted([f"bytes=0-{4 * MIB - 1}", f"bytes={4 * MIB}-{8 * MIB - 1}",
                             f"bytes={8 * MIB}-{len(content) - 1}"]), ranges


def test_folders_move_sort_breadcrumbs_and_tree(page, base_url, web_user):
    sign_in_with_tokens(page, base_url, web_user)
    open_files(page, base_url)

    page.get_by_role("button", name="New folder").click()
    dialog = page.get_by_role("dialog", name="New folder")
    dialog.get_by_label("Folder name").fill("Reports")
    dialog.get_by_role("button", name="Create").click()
    expect(row(page, "Reports")).to_be_visible()
    expect(page.get_by_role("navigation", name="Folders").get_by_role("link", name="Reports")
           ).to_be_visible()

    upload_files(page, [
        {"name": "b-small.txt", "mimeType": "text/plain", "buffer": b"x" * 10},
        {"name": "a-large.txt", "mimeType": "text/plain", "buffer": b"y" * 5000},
        {"name": "c-medium.txt", "mimeType": "text/plain", "buffer": b"z" * 700},
    ])
    for name in ("b-small.txt", "a-large.txt", "c-medium.txt"):
        wait_for_transfer(page, name)
    names = page.locator(".file-table tbody tr")
    expect(names).to_have_count(4)

    def order():
        return page.locator(".file-table tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.name)")

    assert order() == ["Reports", "a-large.txt", "b-small.txt", "c-medium.txt"]
    page.get_by_role("button", name="Size").click()
    expect(page.locator('th[data-key="size"]')).to_have_attribute("aria-sort", "ascending")
    assert order() == ["Reports", "b-small.txt", "c-medium.txt", "a-large.txt"]
    page.get_by_role("button", name="Size").click()
    expect(page.locator('th[data-key="size"]')).to_have_attribute("aria-sort", "descending")
    assert order() == ["Reports", "a-large.txt", "c-medium.txt", "b-small.txt"]
    page.get_by_role("button", name="Name").click()

    # Move one file through its menu, choosing the folder in the picker.
    row_action(page, "a-large.txt", "Move")
    dialog = page.get_by_role("dialog", name="Move “a-large.txt”")
    dialog.get_by_role("button", name="Open folder Reports").click()
    expect(dialog.get_by_label("Move to folder")).to_have_value("/Reports")
    dialog.get_by_role("button", name="Move here").click()
    expect(row(page, "a-large.txt")).to_have_count(0)

    # Select two files and move them together into a new folder typed as a path.
    row(page, "b-small.txt").get_by_role("checkbox").check()
    row(page, "c-medium.txt").get_by_role("checkbox").check()
    expect(page.get_by_role("region", name="Selected items")).to_contain_text("2 items selected")
    page.get_by_role("region", name="Selected items").get_by_role("button", name="Move").click()
    dialog = page.get_by_role("dialog", name="Move 2 items")
    dialog.get_by_label("Move to folder").fill("/Reports/2024")
    dialog.get_by_role("button", name="Move here").click()
    expect(page.locator(".file-table tbody tr")).to_have_count(1)

    # Through the tree into Reports, then 2024; breadcrumbs lead back.
    tree = page.get_by_role("navigation", name="Folders")
    tree.get_by_role("link", name="Reports").click()
    expect(page.get_by_role("navigation", name="Breadcrumb")).to_contain_text("Reports")
    expect(row(page, "a-large.txt")).to_be_visible()
    expect(row(page, "2024")).to_be_visible()
    tree.get_by_role("link", name="2024").click()
    expect(row(page, "b-small.txt")).to_be_visible()
    expect(row(page, "c-medium.txt")).to_be_visible()
    crumbs = page.get_by_role("navigation", name="Breadcrumb")
    expect(crumbs.locator('[aria-current="page"]')).to_have_text("2024")
    crumbs.get_by_role("link", name="Reports").click()
    expect(row(page, "2024")).to_be_visible()
    crumbs.get_by_role("link", name="My files").click()
    expect(row(page, "Reports")).to_be_visible()

    # Rename the folder; deleting it takes everything inside after a confirmation.
    row_action(page, "Reports", "Rename")
    dialog = page.get_by_role("dialog", name="Rename folder")
    dialog.get_by_label("New name").fill("Archive")
    dialog.get_by_role("button", name="Rename").click()
    expect(row(page, "Archive")).to_be_visible()
    expect(tree.get_by_role("link", name="Archive")).to_be_visible()
    row_action(page, "Archive", "Delete")
    confirm = page.get_by_role("dialog", name="Delete folder?")
    expect(confirm).to_contain_text("everything inside it")
    confirm.get_by_role("button", name="Cancel").click()
    expect(row(page, "Archive")).to_be_visible()
    row_action(page, "Archive", "Delete")
    page.get_by_role("dialog", name="Delete folder?").get_by_role("button", name="Delete").click()
    expect(page.get_by_text("This folder is empty.")).to_be_visible()
    listing = web_user.api.get("/api/filesystem/info", params={"path": "/"}).json()
    assert listing["children"] == []


def test_folder_upload_by_picker_and_files_by_drag_and_drop(page, base_url, web_user, tmp_path):
    folder = tmp_path / "holiday"
    (folder / "day1").mkdir(parents=True)
    (folder / "day1" / "beach.txt").write_bytes(b"sand")
    (folder / "notes.txt").write_bytes(b"sun")
    sign_in_with_tokens(page, base_url, web_user)
    open_files(page, base_url)

    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Upload folder").click()
    chooser.value.set_files(str(folder))
    wait_for_transfer(page, "beach.txt")
    wait_for_transfer(page, "notes.txt")
    expect(row(page, "holiday")).to_be_visible()
    # The open transfers panel floats over the page, which keeps room for it below its last
    # row: no row's buttons stay under it.
    room = page.evaluate("""() => {
        const panel = document.getElementById('transfers');
        return [parseFloat(getComputedStyle(document.getElementById('main')).paddingBottom),
                panel.offsetHeight];
    }""")
    assert room[0] >= room[1] + 32, room
    info = web_user.api.get("/api/filesystem/info", params={"path": "/holiday", "depth": 2}).json()
    names = {c["name"]: c for c in info["children"]}
    assert set(names) == {"day1", "notes.txt"}
    assert [c["name"] for c in names["day1"]["children"]] == ["beach.txt"]

    # Drag-and-drop of two files onto the listing (a drop event carrying real File objects).
    area = page.locator(".files-area")
    transfer = page.evaluate_handle("""() => {
        const data = new DataTransfer();
        data.items.add(new File(["dropped one"], "drop-1.txt", {type: "text/plain"}));
        data.items.add(new File(["dropped two!"], "drop-2.txt", {type: "text/plain"}));
        return data;
    }""")
    area.dispatch_event("dragenter", {"dataTransfer": transfer})
    expect(area).to_have_class("files-area dragging")
    expect(page.locator(".drop-hint")).to_be_visible()
    area.dispatch_event("drop", {"dataTransfer": transfer})
    expect(area).not_to_have_class("files-area dragging")
    wait_for_transfer(page, "drop-1.txt")
    wait_for_transfer(page, "drop-2.txt")
    expect(row(page, "drop-1.txt")).to_be_visible()
    expect(row(page, "drop-2.txt").locator(".col-size")).to_have_text("12 bytes")
    # The panel shows one bar per file and an overall bar at 100%.
    expect(page.locator("#transfers .transfers-overall")).to_have_attribute("value", "100")
    expect(page.locator("#transfers li progress")).to_have_count(4)
    expect(page.locator("#transfers .transfers-summary")).to_have_text("4 transfers finished")


def test_a_large_upload_refused_for_good_leaves_no_session_open(page, base_url, web_user):
    """A part refused for good (422: a durability the storages cannot give) fails the upload
    and abandons its session, whose parts are freed; it stayed open for a week, counted against
    the open-uploads limit, with nothing in the UI to close it (found by the web UI sweep)."""
    def refuse(route):
        route.fulfill(status=422, content_type="application/json",
                      body='{"error": {"code": "not_enough_storages", "message": '
                           '"This needs 6 storages."}}')

    page.route("**/api/filesystem/uploads/*/parts/1", refuse)
    sign_in_with_tokens(page, base_url, web_user)
    open_files(page, base_url)
    upload_files(page, [{"name": "refused.bin", "mimeType": "application/octet-stream",
                         "buffer": os.urandom(9 * MIB)}])
    item = wait_for_transfer(page, "refused.bin", state="failed")
    expect(item).to_contain_text("This needs 6 storages.")

    def closed() -> bool:
        answer = web_user.api.get("/api/filesystem/uploads")
        assert answer.status_code == 200, answer.text
        return not [u for u in answer.json()["uploads"] if u["name"] == "refused.bin"]

    wait_for(closed, timeout=10, what="the refused upload's session to be abandoned")


def test_a_session_whose_opening_answer_was_lost_is_opened_once(page, base_url, web_user):
    """The page retried opening a session after a lost answer, and the first one stayed open
    for a week (review sweep): it draws the session's id, and the retry is answered the session
    the first attempt opened."""
    lost = []

    def lose_first_answer(route):
        if route.request.method == "POST" and not lost:
            lost.append(route.fetch().status)          # done by the server, answer lost
            route.fulfill(status=502, content_type="application/json",
                          body='{"message": "Internal server error"}')
        else:
            route.continue_()

    page.route("**/api/filesystem/uploads", lose_first_answer)
    page.route("**/api/filesystem/uploads?*", lose_first_answer)
    content = os.urandom(5 * MIB)
    item = _upload_in_page(page, base_url, web_user, "lost-answer.bin", content)
    expect(item).to_contain_text("Uploaded")
    assert lost == [201]
    listed = web_user.api.get("/api/filesystem/uploads").json()["uploads"]
    assert [u for u in listed if u["name"] == "lost-answer.bin"] == []
    listing = web_user.api.get("/api/filesystem/info", params={"path": "/"}).json()
    (entry,) = [c for c in listing["children"] if c["name"] == "lost-answer.bin"]
    assert entry["sha256"] == hashlib.sha256(content).hexdigest()


def test_an_earlier_version_is_deleted_from_the_files_page(page, base_url, web_user):
    name = f"drafts-{os.urandom(3).hex()}.txt"
    made = [web_user.api.post("/api/filesystem/data", data={"path": "/", "name": name},
                              files={"file": (name, words)}).json()
            for words in (b"first draft", b"second draft")]
    sign_in_with_tokens(page, base_url, web_user, f"#/file/{made[-1]['id']}")
    expect(page.get_by_role("heading", name="Versions (2)")).to_be_visible()
    deletes = page.get_by_role("button", name=re.compile("^Delete the version from"))
    expect(deletes).to_have_count(1)            # the current version has none
    deletes.click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(page.locator(".toast-success")).to_contain_text("Deleted the version from")
    expect(page.get_by_role("heading", name="Versions (1)")).to_be_visible()
    left = web_user.api.get(f"/api/filesystem/info/{made[-1]['id']}").json()["versions"]
    assert [v["version"] for v in left] == [made[-1]["version"]]


def test_a_commit_whose_answer_was_lost_is_not_said_to_have_failed(page, base_url, web_user):
    """The commit landed, its answer did not: sent again, it is 409 upload_committed, which
    means the file is there (the row said Failed, and Try again stored it a second time)."""
    content = os.urandom(5 * MIB)
    lost = []

    def commit_then_lose_the_answer(route):
        if not lost:
            lost.append(route.fetch().status)       # the server commits...
            route.abort()                            # ...and its answer never arrives
        else:
            route.continue_()
    page.route("**/api/filesystem/uploads/*/commit*", commit_then_lose_the_answer)
    _upload_in_page(page, base_url, web_user, "landed.bin", content)
    assert lost == [201]
    listing = web_user.api.get("/api/filesystem/info", params={"path": "/"}).json()
    (entry,) = [c for c in listing["children"] if c["name"] == "landed.bin"]
    info = web_user.api.get(f"/api/filesystem/info/{entry['id']}").json()
    assert info["versions_total"] == 1 and info["sha256"] == hashlib.sha256(content).hexdigest()


def test_a_cancel_that_comes_as_the_commit_lands_says_the_file_is_there(page, base_url,
                                                                        web_user):
    """Its abandon finds the session committed (409): the row said Cancelled, and the file
    was not in the listing until a reload."""
    content = os.urandom(5 * MIB)
    held = []

    def commit_and_hold_the_answer(route):
        held.append((route, route.fetch()))          # committed; answered when the test says
    page.route("**/api/filesystem/uploads/*/commit*", commit_and_hold_the_answer)
    _upload_in_page(page, base_url, web_user, "late.bin", content, wait=False)
    wait_for(lambda: held or page.wait_for_timeout(100), 60, "the commit to be sent")
    page.locator('#transfers li[data-name="late.bin"]').get_by_role(
        "button", name=re.compile("Cancel")).click()
    route, answer = held[0]
    route.fulfill(response=answer)
    item = wait_for_transfer(page, "late.bin")          # "Uploaded", not "Cancelled"
    expect(item).to_contain_text("Uploaded")
    expect(row(page, "late.bin")).to_be_visible()
    info = web_user.api.get("/api/filesystem/info", params={"path": "/late.bin"}).json()
    assert info["sha256"] == hashlib.sha256(content).hexdigest()


def test_the_shares_shown_are_those_of_the_version_asked_for_last(page, base_url, web_user):
    """An earlier version's Shares, slow to answer, then the current one's: the slow answer
    landed last and was drawn over the current version's."""
    name = f"where-{os.urandom(3).hex()}.txt"
    made = [web_user.api.post("/api/filesystem/data", data={"path": "/", "name": name},
                              files={"file": (name, words)}).json()
            for words in (b"first", b"second")]
    old = made[0]["version"]
    held = []
    page.route(f"**/api/filesystem/chunks/*version={old}*",
               lambda route: held.append((route, route.fetch())))
    sign_in_with_tokens(page, base_url, web_user, f"#/file/{made[-1]['id']}")
    box = page.locator(".shares")
    expect(box).to_contain_text("The current version")
    shares_of = page.get_by_role("button", name=re.compile("^Show where the version from"))
    shares_of.last.click()                          # the earlier version (listed newest first)
    wait_for(lambda: held or page.wait_for_timeout(100), 30, "the earlier version's request")
    shares_of.first.click()                         # then the current one
    expect(box).to_contain_text("The current version")
    route, answer = held[0]
    route.fulfill(response=answer)                  # the earlier version's answer, last
    page.wait_for_timeout(500)
    expect(box).to_contain_text("The current version")


def test_a_download_that_does_not_match_its_sha256_is_not_saved(page, base_url, web_user):
    """A file stored otherwise than its uploader hashed it (here: a session declaring another
    file's SHA-256) downloaded from the page as "Downloaded"; the CLI refused it."""
    from tests.cli.test_download_check import _upload_with_declared_sha256
    content = os.urandom(5 * MIB)
    name = f"liar-{os.urandom(3).hex()}.bin"
    _upload_with_declared_sha256(web_user, "/", name, content, hashlib.sha256(b"other").hexdigest())
    saved = []
    page.on("download", lambda download: saved.append(download))
    sign_in_with_tokens(page, base_url, web_user)
    open_files(page, base_url)
    row_action(page, name, "Download")
    item = wait_for_transfer(page, name, state="failed")
    expect(item).to_contain_text("do not match the file's SHA-256")
    page.wait_for_timeout(300)
    assert saved == []
