"""Accessibility basics on every main page: each control has a name a screen reader can say, and
text meets WCAG AA contrast (4.5:1, 3:1 for large text) against the background it is drawn on."""
from __future__ import annotations

import os

import pytest
from playwright.sync_api import expect

from tests.support import register_and_login

from .helpers import open_files, row_action, sign_in_with_tokens

# Runs in the page: every visible form control or button without an accessible name.
UNNAMED_CONTROLS = """() => {
  const visible = e => !!(e.offsetWidth || e.offsetHeight || e.getClientRects().length)
      && getComputedStyle(e).visibility !== "hidden";
  const named = e => {
    if ((e.getAttribute("aria-label") || "").trim()) return true;
    const by = e.getAttribute("aria-labelledby");
    if (by && by.split(/\\s+/).some(id => (document.getElementById(id)?.textContent || "").trim()))
      return true;
    if (e.labels && [...e.labels].some(l => l.textContent.trim())) return true;
    if ((e.getAttribute("title") || "").trim()) return true;
    if (e.tagName === "BUTTON" || e.getAttribute("role") === "button" || e.tagName === "A")
      return !!e.textContent.trim();
    if (e.tagName === "INPUT" && ["submit", "button", "reset"].includes(e.type))
      return !!(e.value || "").trim();
    return false;
  };
  return [...document.querySelectorAll("input, select, textarea, button, a[href], [role=button]")]
    .filter(e => e.type !== "hidden" && visible(e) && !named(e))
    .map(e => e.outerHTML.slice(0, 160));
}"""

# Runs in the page: visible text whose contrast with its effective background is below WCAG AA.
LOW_CONTRAST = """() => {
  const parse = c => {
    const m = c.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const p = m[1].split(",").map(x => parseFloat(x));
    return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
  };
  const over = (top, base) => ({ r: top.r * top.a + base.r * (1 - top.a),
                                 g: top.g * top.a + base.g * (1 - top.a),
                                 b: top.b * top.a + base.b * (1 - top.a), a: 1 });
  const luminance = ({ r, g, b }) => {
    const f = v => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = el => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c.a > 0) { layers.push(c); if (c.a >= 1) break; }
    }
    let base = { r: 255, g: 255, b: 255, a: 1 };
    for (const c of layers.reverse()) base = over(c, base);
    return base;
  };
  const failures = [];
  for (const el of document.querySelectorAll("body *")) {
    const text = [...el.childNodes].filter(n => n.nodeType === 3).map(n => n.textContent)
      .join("").trim();
    if (!text) continue;
    const style = getComputedStyle(el);
    if (!(el.offsetWidth || el.offsetHeight) || style.visibility === "hidden"
        || parseFloat(style.opacity) === 0
        || el.closest("[disabled], [aria-hidden=true]")) continue;
    const bg = background(el);
    const fg = over(parse(style.color), bg);
    const [hi, lo] = [luminance(fg), luminance(bg)].sort((a, b) => b - a);
    const ratio = (hi + 0.05) / (lo + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && parseInt(style.fontWeight, 10) >= 700);
    if (ratio < (large ? 3 : 4.5))
      failures.push(`${el.tagName.toLowerCase()}.${el.className} "${text.slice(0, 40)}" `
                    + `${ratio.toFixed(2)}:1`);
  }
  return failures;
}"""

PAGES = ["#/", "#/files", "#/file", "#/storages", "#/members", "#/settings", "#/shared",
         "#/shared/<share>", "#/trash"]


@pytest.fixture
def stored_file(web_user):
    done = web_user.api.post("/api/filesystem/data", data={"path": "/a11y", "name": "note.txt"},
                             files={"file": ("note.txt", os.urandom(1000))})
    assert done.status_code == 201, done.text
    return done.json()["id"]


@pytest.fixture
def shared_and_trashed(api, web_user, stored_file, tmp_path):
    """Something in each of the sharing pages: a folder another user shares with web_user (with
    write access), and a file of web_user's in the trash. Returns the share's id."""
    friend = register_and_login(api)
    for n in range(2):
        added = friend.api.post("/api/cloud/storages", json={
            "kind": "local", "name": f"disk{n}", "config": {"path": str(tmp_path / f"f{n}")}})
        assert added.status_code == 201, added.text
    assert friend.api.put("/api/filesystem/settings",
                          json={"durability": "raid1(2)"}).status_code == 200
    done = friend.api.post("/api/filesystem/data", data={"path": "/for-you", "name": "hi.txt"},
                           files={"file": ("hi.txt", b"hello")})
    assert done.status_code == 201, done.text
    share = friend.api.post("/api/filesystem/shares", json={
        "path": "/for-you", "user": web_user.username, "level": "write"})
    assert share.status_code == 201, share.text
    gone = web_user.api.post("/api/filesystem/data", data={"path": "/a11y", "name": "old.txt"},
                             files={"file": ("old.txt", b"old")})
    assert web_user.api.delete(f"/api/filesystem/info/{gone.json()['id']}").status_code == 204
    return share.json()["id"]


def _check(page, where: str) -> None:
    page.wait_for_load_state("networkidle")
    page.locator("main h1, main h2").first.wait_for()
    unnamed = page.evaluate(UNNAMED_CONTROLS)
    assert not unnamed, f"{where}: controls without an accessible name: {unnamed}"
    low = page.evaluate(LOW_CONTRAST)
    assert not low, f"{where}: text below WCAG AA contrast: {low}"


def test_login_page_controls_are_named_and_readable(page, base_url):
    page.goto(base_url + "/#/login")
    page.get_by_label("Username").wait_for()
    _check(page, "#/login")


@pytest.mark.parametrize("hash_", PAGES)
def test_main_pages_controls_are_named_and_readable(page, base_url, web_user, stored_file,
                                                    shared_and_trashed, hash_):
    target = f"#/file/{stored_file}" if hash_ == "#/file" else \
        hash_.replace("<share>", shared_and_trashed)
    sign_in_with_tokens(page, base_url, web_user, target)
    _check(page, target)


@pytest.mark.parametrize("dialog", ["Share", "Get link"])
def test_sharing_dialogs_controls_are_named_and_readable(page, base_url, web_user, stored_file,
                                                         dialog):
    assert web_user.api.post("/api/filesystem/links",
                             json={"path": "/a11y"}).status_code == 201
    sign_in_with_tokens(page, base_url, web_user)
    open_files(page, base_url)
    row_action(page, "a11y", dialog)
    expect(page.get_by_role("dialog").get_by_role("status")).not_to_have_text("Loading…")
    page.wait_for_load_state("networkidle")
    _check(page, f"the {dialog} dialog")


@pytest.mark.parametrize("password", [False, True])
def test_the_public_link_page_is_named_and_readable_without_an_account(
        page, base_url, web_user, stored_file, password):
    body = {"path": "/a11y", **({"password": "pw"} if password else {})}
    made = web_user.api.post("/api/filesystem/links", json=body)
    assert made.status_code == 201, made.text
    page.goto(made.json()["url"])
    if password:
        page.get_by_label("Password").wait_for()
    else:
        page.locator('tr[data-name="note.txt"]').wait_for()
    _check(page, "#/link/<token>")


def test_the_checks_catch_what_they_look_for(page, base_url):
    """The two checks above find an unnamed button and grey-on-white text when they are there."""
    page.goto(base_url + "/#/login")
    page.get_by_label("Username").wait_for()
    page.evaluate("""() => {
      const b = document.createElement("button"); b.className = "probe-button";
      const p = document.createElement("p"); p.textContent = "faint words";
      p.style.color = "#bbbbbb"; p.style.background = "#ffffff";
      document.querySelector("main").append(b, p);
    }""")
    assert any("probe-button" in html for html in page.evaluate(UNNAMED_CONTROLS))
    assert any("faint words" in failure for failure in page.evaluate(LOW_CONTRAST))
