"""Browser tests: Debian's Chromium driven by Playwright (sync API) against the session's local
stack. Every test gets a fresh browser context; a failing test leaves a full-page screenshot in
test-artifacts/. Uncaught errors in the page fail the test that caused them."""
from __future__ import annotations

import re

import pytest

from tests.support import ARTIFACTS, register_and_login

from .helpers import launch_browser, new_page


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def playwright_instance():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def browser(playwright_instance):
    chromium = launch_browser(playwright_instance)
    yield chromium
    chromium.close()


@pytest.fixture
def pages(browser, stack, request):
    """A factory of pages, each in its own context (its own localStorage, so its own session).
    Screenshots of every page go to test-artifacts/ when the test fails."""
    opened = []

    def factory(viewport=(1280, 860)):
        context, page, errors = new_page(browser, viewport)
        opened.append((context, page, errors))
        return page

    yield factory
    failed = any(getattr(getattr(request.node, f"report_{when}", None), "failed", False)
                 for when in ("setup", "call"))
    ARTIFACTS.mkdir(exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    problems = []
    for index, (context, page, errors) in enumerate(opened):
        if failed:
            try:
                page.screenshot(path=str(ARTIFACTS / f"browser-{name}-{index}.png"), full_page=True)
            except Exception:  # noqa: BLE001 - the screenshot must not hide the real failure
                pass
        problems.extend(errors)
        context.close()
    if not failed:
        assert not problems, f"errors in the page: {problems}"


@pytest.fixture
def page(pages):
    return pages()


@pytest.fixture
def base_url(stack):
    return stack.url


@pytest.fixture
def web_user(api, tmp_path):
    """A user made through the API with two local storages, so files can be stored."""
    user = register_and_login(api)
    for name in ("disk-a", "disk-b"):
        response = user.api.post("/api/cloud/storages", json={
            "kind": "local", "name": name,
            "config": {"path": str(tmp_path / f"{user.username}-{name}")}})
        assert response.status_code == 201, response.text
    return user
