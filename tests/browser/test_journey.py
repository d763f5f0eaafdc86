"""A person's first session, end to end in the browser: sign up, log out, log in, add two
storages, upload with the picker, see the file, open its details, rename, download and compare
the bytes, delete, log out."""
from __future__ import annotations

import os

from playwright.sync_api import expect

from tests.support import PASSWORD, unique

from .helpers import open_files, row, row_action, upload_files, wait_for_transfer


def test_first_session_from_sign_up_to_log_out(page, base_url, api, tmp_path):
    username = unique("web")
    content = os.urandom(150_000) + b"the end"

    # Sign up: locally the account is confirmed at once and the user is signed in.
    page.goto(base_url + "/")
    expect(page.get_by_role("heading", name="Log in to Cloudstrype")).to_be_visible()
    page.get_by_role("link", name="Create an account").click()
    page.get_by_label("Username").fill(username)
    page.get_by_label("E-mail").fill(f"{username}@example.org")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name=f"Hello, {username}")).to_be_visible()
    expect(page.get_by_role("region", name="Getting started")).to_be_visible()

    # Log out, then log in with the new account.
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_text("You have logged out.")).to_be_visible()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name=f"Hello, {username}")).to_be_visible()

    # Two local storages (directories on the server), added through the form.
    page.get_by_role("link", name="Storages").click()
    for name in ("first-disk", "second-disk"):
        page.locator('.add-card[data-kind="local"]').get_by_role("button", name="Add").click()
        dialog = page.get_by_role("dialog", name="Add folder on the server")
        dialog.get_by_label("Name").fill(name)
        dialog.get_by_label("Directory").fill(str(tmp_path / name))
        dialog.get_by_label("Capacity").fill("5 GB")
        dialog.get_by_role("button", name="Add storage").click()
        expect(dialog).to_be_hidden()
        card = page.locator(f'.storage-card[data-name="{name}"]')
        expect(card).to_contain_text("Online")
        expect(card).to_contain_text("of 5 GB")

    # Upload with the picker; the file is listed with its size.
    open_files(page, base_url)
    upload_files(page, [{"name": "notes.bin", "mimeType": "application/octet-stream",
                         "buffer": content}])
    wait_for_transfer(page, "notes.bin")
    expect(row(page, "notes.bin")).to_be_visible()
    expect(row(page, "notes.bin").locator(".col-size")).to_have_text("150 KB")

    # Details: size, scheme, and each share on one of the two storages.
    row(page, "notes.bin").get_by_role("link", name="notes.bin").click()
    expect(page.get_by_role("heading", name="notes.bin", level=1)).to_be_visible()
    facts = page.locator("dl.facts")
    expect(facts).to_contain_text("150,007 bytes")
    expect(facts).to_contain_text("raid1(2)")
    expect(facts).to_contain_text("aes256-gcm")
    shares = page.locator(".shares-table .share")
    expect(shares).to_have_count(2)
    expect(page.locator('.share[data-storage="first-disk"]')).to_contain_text("Healthy")
    expect(page.locator('.share[data-storage="second-disk"]')).to_contain_text("Healthy")
    expect(page.get_by_text("Every share checked is healthy.")).to_be_visible()

    # Rename from the details page.
    page.get_by_role("button", name="Rename").click()
    dialog = page.get_by_role("dialog", name="Rename file")
    dialog.get_by_label("New name").fill("renamed.bin")
    dialog.get_by_role("button", name="Rename").click()
    expect(page.get_by_role("heading", name="renamed.bin", level=1)).to_be_visible()

    # Download and compare the bytes.
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download", exact=True).click()
    download = download_info.value
    assert download.suggested_filename == "renamed.bin"
    assert open(download.path(), "rb").read() == content

    # Back in the listing: the new name only; then delete with confirmation.
    page.get_by_role("navigation", name="Breadcrumb").get_by_role("link", name="My files").click()
    expect(row(page, "renamed.bin")).to_be_visible()
    expect(row(page, "notes.bin")).to_have_count(0)
    row_action(page, "renamed.bin", "Delete")
    confirm = page.get_by_role("dialog", name="Delete file?")
    expect(confirm).to_contain_text("move to the trash")
    confirm.get_by_role("button", name="Delete").click()
    expect(row(page, "renamed.bin")).to_have_count(0)
    expect(page.get_by_text("This folder is empty.")).to_be_visible()

    # Log out: back at the login form, and the app no longer opens signed in.
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in to Cloudstrype")).to_be_visible()
    page.goto(base_url + "/#/files")
    expect(page.get_by_role("heading", name="Log in to Cloudstrype")).to_be_visible()
    assert page.evaluate("localStorage.getItem('cloudstrype.session')") is None
