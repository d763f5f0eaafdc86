"""What the browser tests (and the screenshot script) do to the web UI, in one place."""
from __future__ import annotations

import base64
import json
import time

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 20_000


def launch_browser(playwright):
    # Debian's Chromium, never a browser Playwright would download.
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def new_page(browser, viewport=(1280, 860)):
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]},
                                  accept_downloads=True, locale="en-US", timezone_id="UTC")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # Anything the page's Content-Security-Policy refuses is a bug of the page (or an attack).
    page.on("console", lambda message: errors.append(message.text)
            if message.type == "error" and "Content Security Policy" in message.text else None)
    return context, page, errors


def login_ui(page, base_url: str, username: str, password: str) -> None:
    page.goto(base_url + "/#/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.locator("#user-area .user-name").wait_for()


def _expiry(token: str) -> int:
    payload = token.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    return json.loads(base64.urlsafe_b64decode(payload))["exp"] * 1000


def sign_in_with_tokens(page, base_url: str, user, hash_: str = "#/files") -> None:
    """Start signed in as `user` (tokens from the API) without going through the login form."""
    page.goto(base_url + "/config.json")
    session = {"access_token": user.tokens["access_token"], "id_token": user.tokens["id_token"],
               "refresh_token": user.tokens["refresh_token"],
               "expires_at": _expiry(user.tokens["access_token"]), "username": user.username}
    page.evaluate("s => localStorage.setItem('cloudstrype.session', s)", json.dumps(session))
    page.goto(f"{base_url}/{hash_}")
    page.locator("#user-area .user-name").wait_for()


def open_files(page, base_url: str, path: str = "/") -> None:
    page.goto(f"{base_url}/#/files" + ("" if path == "/" else f"?path={path}"))
    page.locator(".listing:not([aria-busy])").wait_for()


def row(page, name: str):
    return page.locator(f'.file-table tbody tr[data-name="{name}"]')


def row_action(page, name: str, action: str) -> None:
    page.get_by_role("button", name=f"Actions for {name}").click()
    page.get_by_role("menuitem", name=action).click()


def upload_files(page, files: list[dict]) -> None:
    """files: [{"name", "mimeType", "buffer"}] through the 'Upload files' picker."""
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Upload files").click()
    chooser.value.set_files(files)


def wait_for_transfer(page, name: str, state: str = "done", timeout_ms: int = 60_000):
    item = page.locator(f'#transfers li[data-name="{name}"]')
    item.and_(page.locator(f'[data-state="{state}"]')).wait_for(timeout=timeout_ms)
    return item


def no_horizontal_scroll(page) -> dict:
    return page.evaluate("""() => ({
        scrollWidth: document.documentElement.scrollWidth,
        clientWidth: document.documentElement.clientWidth,
        bodyScrollWidth: document.body.scrollWidth,
        widest: [...document.querySelectorAll('body *')]
            .filter(el => el.getBoundingClientRect().right
                            > document.documentElement.clientWidth + 1
                          && getComputedStyle(el).position !== 'fixed'
                          && el.getClientRects().length)
            .slice(0, 5).map(el => el.tagName + '.' + el.className),
    })""")


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
