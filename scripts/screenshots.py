"""Screenshots of the web UI's main pages for the README: ``make screenshots``.

Starts a local stack in a temporary folder, makes an admin with three local storages, a few
files and one array member, then photographs each page with Debian's Chromium (the browser the
tests use) into docs/screenshots/.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.browser.helpers import launch_browser, new_page, sign_in_with_tokens  # noqa: E402
from tests.support import Api, cli, login, start_stack, unique  # noqa: E402

OUT = REPO / "docs" / "screenshots"
PASSWORD = "Adm1nPassword"


def _check(response, status: int):
    if response.status_code != status:
        raise SystemExit(f"{response.request.method} {response.url}: {response.status_code} "
                         f"{response.text}")
    return response.json() if response.content else None


def _populate(stack, work: Path):
    username = unique("alice")
    made = cli("admin", "create", username, "--email", f"{username}@example.org",
               "--password", PASSWORD, "--data-dir", str(stack.data_dir))
    if made.returncode != 0:
        raise SystemExit(made.stderr)
    tokens = login(Api(stack.url), username, PASSWORD)
    api = Api(stack.url, tokens["access_token"])
    for name in ("laptop-ssd", "nas", "usb-disk"):
        folder = work / name
        folder.mkdir()
        _check(api.post("/api/cloud/storages", json={
            "kind": "local", "name": name, "config": {"path": str(folder)}}), 201)
    _check(api.put("/api/filesystem/settings",
                   json={"durability": "rs(2,1)", "encryption": "aes256-gcm"}), 200)
    files = {"/Documents": [("report.pdf", 180_000), ("budget.xlsx", 42_000),
                            ("notes.txt", 2_300)],
             "/Photos/2026": [("beach.jpg", 2_400_000), ("mountains.jpg", 3_100_000)],
             "/": [("readme.md", 900)]}
    detail_id = None
    files["/Trip"] = [("itinerary.pdf", 60_000)]
    for directory, entries in files.items():
        for name, size in entries:
            node = _check(api.post("/api/filesystem/data", data={"path": directory, "name": name},
                                   files={"file": (name, os.urandom(size))}), 201)
            if name == "report.pdf":
                detail_id = node["id"]
    # Sharing: a friend shares a folder with this user; this user shares /Trip with the friend
    # and makes a link to it; one deleted file waits in the trash.
    friend = unique("bob")
    _check(Api(stack.url).post("/api/auth/register", json={
        "username": friend, "email": f"{friend}@example.org", "password": PASSWORD}), 201)
    friend_api = Api(stack.url, login(Api(stack.url), friend, PASSWORD)["access_token"])
    for name in ("bob-disk-1", "bob-disk-2"):
        (work / name).mkdir()
        _check(friend_api.post("/api/cloud/storages", json={
            "kind": "local", "name": name, "config": {"path": str(work / name)}}), 201)
    _check(friend_api.put("/api/filesystem/settings", json={"durability": "raid1(2)"}), 200)
    for name, size in (("cover.png", 250_000), ("draft.md", 8_000)):
        _check(friend_api.post("/api/filesystem/data", data={"path": "/Band", "name": name},
                               files={"file": (name, os.urandom(size))}), 201)
    _check(friend_api.post("/api/filesystem/shares", json={
        "path": "/Band", "user": username, "level": "write"}), 201)
    _check(api.post("/api/filesystem/shares", json={"path": "/Trip", "user": friend,
                                                    "level": "read"}), 201)
    link = _check(api.post("/api/filesystem/links", json={"path": "/Trip",
                                                          "expires_in": 7 * 86400}), 201)
    gone = _check(api.post("/api/filesystem/data", data={"path": "/Documents",
                                                         "name": "old-draft.txt"},
                           files={"file": ("old-draft.txt", os.urandom(5_000))}), 201)
    _check(api.delete(f"/api/filesystem/info/{gone['id']}"), 204)
    member = subprocess.Popen(
        [sys.executable, "-m", "cloudstrype_client.cli", "array", "--server", stack.url,
         "--dir", str(work / "member"), "--size", "2GB", "--name", "desk-pc",
         "--token", tokens["access_token"], "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        members = _check(api.get("/api/array/members"), 200)["members"]
        if any(m.get("online") for m in members):
            break
        time.sleep(0.3)
    return (SimpleNamespace(tokens=tokens, username=username, link_url=link["url"]), detail_id,
            member)


def main() -> int:
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="cloudstrype-shots-"))
    # The storages' folders are in `work`, which the stack is told is a storage root.
    stack = start_stack(work / "stack", env={"CLOUDSTRYPE_LOCAL_STORAGE_ROOTS": str(work)})
    member = None
    try:
        user, detail_id, member = _populate(stack, work)
        with sync_playwright() as playwright:
            browser = launch_browser(playwright)
            context, page, _ = new_page(browser)
            page.goto(stack.url + "/#/login")
            page.get_by_label("Username").wait_for()
            page.screenshot(path=str(OUT / "login.png"))
            sign_in_with_tokens(page, stack.url, user, "#/")
            shots = [("dashboard", "#/"), ("files", "#/files?path=/Documents"),
                     ("details", f"#/file/{detail_id}"), ("storages", "#/storages"),
                     ("members", "#/members"), ("settings", "#/settings"), ("admin", "#/admin"),
                     ("shared", "#/shared"), ("trash", "#/trash")]
            for name, hash_ in shots:
                page.goto(f"{stack.url}/{hash_}")
                page.wait_for_load_state("networkidle")
                page.wait_for_timeout(400)        # let the last list render
                page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)
                print(f"docs/screenshots/{name}.png")
            # The share dialog on /Trip, then the link page as someone with no account.
            page.goto(f"{stack.url}/#/files")
            page.wait_for_load_state("networkidle")
            page.get_by_role("button", name="Actions for Trip").click()
            page.get_by_role("menuitem", name="Share").click()
            page.wait_for_load_state("networkidle")
            page.wait_for_timeout(400)
            page.screenshot(path=str(OUT / "share-dialog.png"))
            print("docs/screenshots/share-dialog.png")
            context.close()
            context, stranger, _ = new_page(browser)
            stranger.goto(user.link_url)
            stranger.wait_for_load_state("networkidle")
            stranger.wait_for_timeout(400)
            stranger.screenshot(path=str(OUT / "link.png"), full_page=True)
            print("docs/screenshots/link.png")
            context.close()
            context, phone, _ = new_page(browser, (390, 844))
            sign_in_with_tokens(phone, stack.url, user, "#/files?path=/Photos/2026")
            phone.wait_for_load_state("networkidle")
            phone.wait_for_timeout(400)
            phone.screenshot(path=str(OUT / "files-phone.png"))
            print("docs/screenshots/files-phone.png")
            context.close()
            browser.close()
    finally:
        if member is not None:
            member.terminate()
            member.wait(timeout=30)
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
