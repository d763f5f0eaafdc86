"""Storages, members, settings and the dashboard: an S3 bucket added with keys, a cloud account
connected through the OAuth redirect (a fake Dropbox), drain and remove, default durability and
encryption, an offline storage and lost shares on the dashboard, repaired from there."""
from __future__ import annotations

import re
import shutil
import uuid

import boto3
import pytest
from moto.server import ThreadedMotoServer
from playwright.sync_api import expect

from tests.support import free_port, register_and_login

from .helpers import (
    open_files,
    row,
    sign_in_with_tokens,
    upload_files,
    wait_for_transfer,
    wait_until,
)


@pytest.fixture(scope="module")
def s3_endpoint():
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def upload_api(user, name, data, **fields):
    response = user.api.post("/api/filesystem/data", data={"path": "/", **fields},
                             files={"file": (name, data)})
    assert response.status_code == 201, response.text
    return response.json()


def storage_named(user, name):
    (found,) = [s for s in user.api.get("/api/cloud/storages").json()["storages"]
                if s["name"] == name]
    return found


def test_s3_bucket_added_with_keys_then_drained_and_removed(page, base_url, web_user, s3_endpoint,
                                                            tmp_path):
    bucket = f"web-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="x",
                 aws_secret_access_key="y").create_bucket(Bucket=bucket)
    sign_in_with_tokens(page, base_url, web_user, "#/storages")
    page.locator('.add-card[data-kind="s3"]').get_by_role("button", name="Add").click()
    dialog = page.get_by_role("dialog", name="Add s3-compatible bucket")
    dialog.get_by_label("Name").fill("bucket-one")
    dialog.get_by_label("Endpoint URL").fill(s3_endpoint)
    dialog.get_by_label("Region").fill("us-east-1")
    dialog.get_by_label("Bucket").fill(bucket)
    dialog.get_by_label("Access key id").fill("AKIAEXAMPLE")
    secret = dialog.get_by_label("Secret access key")
    expect(secret).to_have_attribute("type", "password")
    secret.fill("s3cr3t-key")
    dialog.get_by_role("button", name="Add storage").click()
    expect(dialog).to_be_hidden()
    card = page.locator('.storage-card[data-name="bucket-one"]')
    expect(card).to_contain_text("S3-compatible bucket")
    expect(card).to_contain_text(bucket)
    expect(card).to_contain_text("Online")
    expect(card.locator(".check-state")).to_have_text("not yet")     # the scrub's checks
    assert "s3cr3t-key" not in page.content()
    # What the checks found is shown as the API gives it (here the answer is altered: the scrub
    # finding shares is proven through the API in tests/storage/test_scrub.py).

    def found(route):
        answer = route.fetch().json()
        for storage in answer["storages"]:
            storage["check"].update(checked_at="2026-01-01T00:00:00+00:00", missing_found=2,
                                    corrupt_found=1)
            storage.update(last_error="timed out", last_error_at="2026-01-01T00:00:00+00:00")
        route.fulfill(json=answer)
    page.route("**/api/cloud/storages", found)
    page.reload()
    expect(card.locator(".check-state")).to_contain_text("2026")
    expect(card).to_contain_text("have found 2 shares missing and 1 corrupt")
    problem = card.locator(".alert").filter(has_text="Last problem (")
    expect(problem).to_contain_text("2026")          # when, in the browser's own time zone
    expect(problem).to_contain_text("): timed out")
    page.unroute("**/api/cloud/storages")
    page.reload()
    expect(card.locator(".check-state")).to_have_text("not yet")

    # Three copies put a share on the bucket; removing it is refused until it is drained.
    upload_api(web_user, "kept.txt", b"keep me" * 100, durability="raid1(3)")
    web_user.api.post("/api/cloud/storages", json={"kind": "local", "name": "disk-c",
                                                   "config": {"path": str(tmp_path / "disk-c")}})
    page.reload()
    expect(card.locator(".mini-facts")).to_contain_text("Shares1")
    card.get_by_role("button", name="Remove bucket-one").click()
    page.get_by_role("dialog", name="Remove bucket-one?").get_by_role(
        "button", name="Remove").click()
    expect(page.locator(".toast-error")).to_contain_text(
        "bucket-one still holds shares: drain it first (Drain moves them")
    expect(page.locator(".toast-error")).not_to_contain_text("POST /api")
    expect(card).to_be_visible()

    card.get_by_role("button", name="Drain bucket-one").click()
    page.get_by_role("dialog", name="Drain bucket-one?").get_by_role("button", name="Drain").click()
    expect(page.locator(".toast-success")).to_contain_text("bucket-one is drained")
    expect(card.locator(".mini-facts")).to_contain_text("Shares0")
    expect(card).to_contain_text("Drained")
    expect(card).to_contain_text("measured just now")
    # The dashboard tells a draining storage from a lost one.
    page.evaluate("location.hash = '#/'")
    online = page.locator(".stat", has_text="Storages online")
    expect(online).to_contain_text("1 draining")
    expect(online).not_to_contain_text("unreachable")
    risks = page.locator(".risks")
    expect(risks).to_contain_text("bucket-one is draining.")
    expect(risks).to_contain_text("It holds no shares any more; you can remove it.")
    page.evaluate("location.hash = '#/storages'")
    # A drain can be undone: it takes shares again (here: none to take back).
    card.get_by_role("button", name="Stop draining bucket-one").click()
    expect(page.locator(".toast-success").last).to_contain_text(
        "bucket-one takes new shares again")
    expect(card).to_contain_text("Online")
    assert storage_named(web_user, "bucket-one")["status"] == "active"
    card.get_by_role("button", name="Remove bucket-one").click()
    page.get_by_role("dialog", name="Remove bucket-one?").get_by_role(
        "button", name="Remove").click()
    expect(card).to_have_count(0)
    storages = web_user.api.get("/api/cloud/storages").json()["storages"]
    assert "bucket-one" not in [s["name"] for s in storages]
    info = web_user.api.get("/api/filesystem/info", params={"path": "/"}).json()
    (kept,) = info["children"]
    assert web_user.api.get(f"/api/filesystem/data/{kept['id']}").content == b"keep me" * 100


def test_cloud_account_connected_through_the_oauth_redirect(page, base_url, web_user):
    sign_in_with_tokens(page, base_url, web_user, "#/storages")
    expect(page.locator('.add-card[data-kind="box"]').get_by_role("button", name="Connect Box")
           ).to_be_enabled()
    page.locator('.add-card[data-kind="dropbox"]').get_by_role(
        "button", name="Connect Dropbox").click()
    dialog = page.get_by_role("dialog", name="Connect Dropbox")
    dialog.get_by_label("Name").fill("My Dropbox")
    dialog.get_by_role("button", name="Continue to Dropbox").click()
    # The fake provider grants at once and sends the browser back through the callback.
    expect(page.get_by_text("Connected My Dropbox (Dropbox).")).to_be_visible()
    assert page.url.endswith("#/storages")
    expect(page.locator('.storage-card[data-name="My Dropbox"]')).to_contain_text("Online")
    assert storage_named(web_user, "My Dropbox")["kind"] == "dropbox"
    # The same account again: that storage is reconnected, not a second one made.
    page.locator('.add-card[data-kind="dropbox"]').get_by_role(
        "button", name="Connect Dropbox").click()
    dialog = page.get_by_role("dialog", name="Connect Dropbox")
    dialog.get_by_label("Name").fill("Dropbox again")
    dialog.get_by_role("button", name="Continue to Dropbox").click()
    expect(page.get_by_text("This account is your storage My Dropbox (Dropbox) already: it is "
                            "reconnected, with the new access.")).to_be_visible()
    expect(page.locator('.storage-card[data-name="Dropbox again"]')).to_have_count(0)
    storages = web_user.api.get("/api/cloud/storages").json()["storages"]
    assert [s["name"] for s in storages if s["kind"] == "dropbox"] == ["My Dropbox"]


def test_a_return_this_tab_did_not_start_only_shows_the_finish_code(page, base_url, web_user,
                                                                     api):
    """Someone else's consent link (or a connect the command line started): approving brings
    this browser back with a finish code, which the page shows and never uses itself."""
    starter = register_and_login(api)
    started = starter.api.get("/api/cloud/oauth/dropbox/authorize").json()
    sign_in_with_tokens(page, base_url, web_user, "#/storages")
    had = web_user.api.get("/api/cloud/storages").json()["storages"]
    # The browser approves at the (fake) provider and follows it back through the callback.
    page.goto(started["authorize_url"])
    code = page.locator(".finish-code")
    expect(code).to_be_visible()
    expect(page.get_by_text("do not give this code to anyone")).to_be_visible()
    assert page.url.endswith("#/storages")                  # the code is gone from the address
    finish_code = code.inner_text()
    assert web_user.api.get("/api/cloud/storages").json()["storages"] == had
    assert starter.api.get("/api/cloud/storages").json()["storages"] == []
    # The code shown is the real one: the user who started finishes with it.
    done = starter.api.post("/api/cloud/oauth/dropbox/finish",
                            json={"state": started["state"], "code": finish_code})
    assert done.status_code == 201, done.text


def test_default_durability_and_encryption_apply_to_new_uploads(page, base_url, web_user):
    sign_in_with_tokens(page, base_url, web_user, "#/settings")
    durability = page.get_by_label("Durability")
    durability.select_option("raid1(3)")
    expect(page.locator(".settings-form .help").first).to_contain_text(
        "needs 3 storages and you have 2 online")
    durability.select_option("other")
    expect(page.get_by_label("Scheme")).to_be_focused()
    page.get_by_label("Scheme").fill("rs(0,2)")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".settings-form .alert-error")).to_be_visible()
    assert "{" not in page.locator(".settings-form .alert-error").text_content()

    durability.select_option("raid1(1)")
    page.get_by_label("None — shares are stored readable").check()
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".settings-form .alert-success")).to_have_text(
        "Saved. New files use raid1(1) and none.")
    assert web_user.api.get("/api/filesystem/settings").json() == {
        "durability": "raid1(1)", "encryption": "none",
        "trash_retention_days": 30}              # untouched by this form: the default
    page.reload()
    expect(page.get_by_label("Durability")).to_have_value("raid1(1)")

    open_files(page, base_url)
    upload_files(page, [{"name": "plain.txt", "mimeType": "text/plain", "buffer": b"readable"}])
    wait_for_transfer(page, "plain.txt")
    row(page, "plain.txt").get_by_role("link", name="plain.txt").click()
    facts = page.locator("dl.facts")
    expect(facts).to_contain_text("raid1(1) — 1 copy, no redundancy")
    expect(facts).to_contain_text("none — None")
    expect(page.locator(".shares-table .share")).to_have_count(1)

    # Back to automatic: the saved scheme is dropped, not kept.
    sign_in_with_tokens(page, base_url, web_user, "#/settings")
    page.get_by_label("Durability").select_option("")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".settings-form .alert-success")).to_contain_text("automatic durability")
    assert web_user.api.get("/api/filesystem/settings").json()["durability"] is None


def test_dashboard_shows_an_offline_storage_and_shares_awaiting_repair(page, base_url, web_user,
                                                                       tmp_path):
    disk_b = tmp_path / f"{web_user.username}-disk-b"
    first = upload_api(web_user, "before.txt", b"written while all was well")
    chunk = f"v{first['version']}-0"
    info = web_user.api.get(f"/api/chunk/{chunk}/info").json()
    assert {s["storage_name"] for s in info["shares"]} == {"disk-a", "disk-b"}
    web_user.api.post("/api/cloud/storages", json={"kind": "local", "name": "disk-c",
                                                   "config": {"path": str(tmp_path / "disk-c")}})
    sign_in_with_tokens(page, base_url, web_user, "#/")
    expect(page.get_by_text("Nothing at risk")).to_be_visible()
    expect(page.locator(".redundancy")).to_contain_text("raid1(2) — 1 file")

    # disk-b's directory turns into a file (its folder moved away): it is not the storage's
    # folder any more, and the storage is marked offline, saying why.
    shutil.move(disk_b, tmp_path / "disk-b-elsewhere")
    disk_b.write_text("not a directory any more")

    def offline():
        # New content each time: content the user stores already is not written again.
        probe = uuid.uuid4().hex
        upload_api(web_user, f"probe-{probe[:6]}.txt", probe.encode())
        return not storage_named(web_user, "disk-b")["online"]

    assert wait_until(offline, timeout=20), "disk-b never went offline"
    page.get_by_role("button", name="Check again").click()
    risks = page.locator(".risks")
    expect(risks).to_contain_text("disk-b is offline.")
    expect(risks).to_contain_text("its .cloudstrype-storage file is missing")
    expect(risks).to_contain_text(re.compile(
        r"(1 chunk has|[0-9]+ chunks have) shares missing or out of reach"))
    expect(risks.get_by_role("link", name="/before.txt")).to_be_visible()
    expect(page.locator('.bar-row[data-storage="disk-b"]')).to_contain_text("Offline")

    # The details page shows which share is gone; Repair now re-creates it elsewhere.
    risks.get_by_role("link", name="/before.txt").click()
    expect(page.locator('.share[data-storage="disk-b"] .badge')).not_to_have_text("Healthy")
    expect(page.get_by_text("out of reach; the file is still readable")).to_be_visible()
    page.get_by_role("button", name="Repair now").click()
    expect(page.locator(".toast-success")).to_contain_text("Re-created 1 share of chunk #1.")
    expect(page.get_by_text("Every share checked is healthy.")).to_be_visible()
    expect(page.locator('.share[data-storage="disk-c"]')).to_contain_text("Healthy")
    shares = web_user.api.get(f"/api/chunk/{chunk}/info").json()["shares"]
    assert {s["storage_name"] for s in shares} == {"disk-a", "disk-c"}


def test_dashboard_ratio_and_space_come_from_the_accounts_usage(page, base_url, web_user):
    """With more files than the scan samples, the counts say so; the stored-to-kept ratio and
    the space come from the account's usage, not from the sample (whose files are the current
    versions only, which made the ratio look larger than it is; found by a sweep)."""
    files = [("file", (f"s{n:03d}.txt", b"x" * 10)) for n in range(301)]
    sent = web_user.api.post("/api/filesystem/batch", data={"path": "/many"}, files=files)
    assert sent.status_code == 207 and sent.json()["created"] == 301, sent.text[:300]
    made = web_user.api.post("/api/filesystem/data", data={"path": "/", "name": "gone.bin"},
                             files={"file": ("gone.bin", b"y" * 5000)})
    assert made.status_code == 201, made.text
    assert web_user.api.delete(f"/api/filesystem/info/{made.json()['id']}").status_code == 204
    usage = web_user.api.get("/api/filesystem/usage").json()
    shares = sum(s["stored_bytes"] for s in
                 web_user.api.get("/api/cloud/storages").json()["storages"])
    sign_in_with_tokens(page, base_url, web_user, "#/")
    stats = page.locator(".stat")
    # The scan reads each of the 300 files it samples (two requests each): on a loaded machine
    # that is more than the default 5 s.
    expect(stats.first).to_contain_text("300+", timeout=30_000)
    expect(stats.first).to_contain_text("or more")
    expect(stats.nth(1)).to_contain_text(f"{shares / usage['stored_bytes']:.2f}× what you keep")
    space = stats.filter(has_text="Your space")
    expect(space).to_contain_text("files ")
    expect(space).to_contain_text(re.compile(r"trash [1-9][0-9.]* (KB|bytes)"))


def test_members_page_without_members(page, base_url, web_user):
    sign_in_with_tokens(page, base_url, web_user, "#/members")
    expect(page.get_by_text("No members yet.")).to_be_visible()
    expect(page.locator("pre.command")).to_contain_text(f"cloudstrype array --server {base_url}")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Dashboard").click()
    expect(page.locator(".stat").filter(has_text="Members online")).to_contain_text("0 of 0")


def test_a_members_drain_is_stopped_from_the_members_page(page, base_url, web_user):
    import json

    from websockets.sync.client import connect
    member_id = f"m{uuid.uuid4().hex[:10]}"
    # A member that said hello and hung up: offline, holding nothing.
    ws_url = base_url.replace("http://", "ws://") + f"/ws?token={web_user.access_token}"
    with connect(ws_url, open_timeout=10) as socket:
        socket.send(json.dumps({"type": "hello", "id": 1, "member_id": member_id,
                                "capacity": 10 ** 9, "used": 0, "free": 10 ** 9}))
        assert json.loads(socket.recv(timeout=10))["type"] == "welcome"
    drained = web_user.api.post(f"/api/array/members/{member_id}/drain")
    assert drained.status_code == 200, drained.text
    sign_in_with_tokens(page, base_url, web_user, "#/members")
    member_row = page.locator(f'tr[data-id="{member_id}"]')
    expect(member_row).to_contain_text("Draining")
    name = web_user.api.get(f"/api/array/members/{member_id}").json()["name"]
    member_row.get_by_role("button", name=f"Stop draining {name}").click()
    expect(member_row).to_contain_text("Offline")
    expect(member_row.get_by_role("button", name=f"Stop draining {name}")).to_have_count(0)
    status = web_user.api.get(f"/api/array/members/{member_id}").json()["status"]
    assert status == "offline", status


def test_details_show_the_shares_of_a_packed_file_and_of_content_stored_once(page, base_url,
                                                                             web_user):
    # Small files sent together are packed; the same large content twice is stored once.
    batch = web_user.api.post("/api/filesystem/batch", data={"path": "/"}, files=[
        ("file", (f"small-{n}.txt", f"small file {n} ".encode() * 20)) for n in range(3)])
    assert batch.status_code == 207 and batch.json()["failed"] == 0, batch.text
    big = uuid.uuid4().bytes * (300 * 1024 // 16)
    upload_api(web_user, "original.bin", big)
    upload_api(web_user, "copy.bin", big)

    sign_in_with_tokens(page, base_url, web_user, "#/files")
    open_files(page, base_url)
    row(page, "small-1.txt").get_by_role("link", name="small-1.txt").click()
    expect(page.get_by_role("heading", name="small-1.txt", level=1)).to_be_visible()
    expect(page.locator("dl.facts")).to_contain_text("Packed with other small files into one "
                                                     "chunk")
    expect(page.locator(".shares-table .share")).to_have_count(2)
    expect(page.get_by_text("Every share checked is healthy.")).to_be_visible()

    open_files(page, base_url)
    row(page, "copy.bin").get_by_role("link", name="copy.bin").click()
    expect(page.get_by_role("heading", name="copy.bin", level=1)).to_be_visible()
    expect(page.locator(".shares-table .share")).to_have_count(2)
    expect(page.get_by_text("Every share checked is healthy.")).to_be_visible()
    expect(page.locator(".shares .alert-error")).to_have_count(0)
