"""OAuth account-linking CSRF (issue 12, finding 5), attacked through HTTP against the running
stack and the fake providers (tests/fakes).

The attack: Mallory starts connecting Dropbox to *her* Cloudstrype account and sends the consent
link to Victor. Victor, signed in at Dropbox, approves; his browser goes through our callback.
Before the fix the callback alone saved Victor's Dropbox as a storage of Mallory's (the state
named her), so her files' shares went to, and her reads came from, his account. Now the callback
only holds the grant and hands a one-time finish code to the browser that came back (Victor's);
the storage is made only by the user who started, with that code.
"""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import requests

from tests.support import assert_error, register_and_login


def start(user, provider: str) -> dict:
    started = user.api.get(f"/api/cloud/oauth/{provider}/authorize")
    assert started.status_code == 200, started.text
    return started.json()


def approve_in_browser(authorize_url: str) -> tuple[requests.Response, dict]:
    """A browser of its own (no Cloudstrype token) approves at the provider and follows the
    provider back to our callback: its answer, and what reached the browser's fragment."""
    browser = requests.Session()
    consent = browser.get(authorize_url, allow_redirects=False, timeout=10)
    assert consent.status_code == 302, consent.text
    callback = browser.get(consent.headers["Location"], allow_redirects=False, timeout=30)
    assert callback.status_code == 302, callback.text
    location = urlsplit(callback.headers["Location"])
    fragment = {k: v[0] for k, v in parse_qs(location.fragment.partition("?")[2]).items()}
    return callback, fragment


def finish(user, provider: str, state: str, code: str) -> requests.Response:
    return user.api.post(f"/api/cloud/oauth/{provider}/finish",
                         json={"state": state, "code": code})


def storages_of(user) -> list[dict]:
    return user.api.get("/api/cloud/storages").json()["storages"]


def test_an_attackers_consent_link_approved_by_a_victim_connects_nothing(api, stack):
    mallory, victor = register_and_login(api), register_and_login(api)
    started = start(mallory, "dropbox")
    callback, back = approve_in_browser(started["authorize_url"])

    # The callback connected nothing: before the fix Mallory now had Victor's Dropbox.
    assert storages_of(mallory) == [] and storages_of(victor) == []
    # The finish code went to Victor's browser only, in the fragment: not in the query (which
    # reaches servers and logs), not in a cookie, not in the log.
    assert urlsplit(callback.headers["Location"]).query == ""
    assert "Set-Cookie" not in callback.headers
    assert back["state"] == started["state"] and back["finish_code"]
    assert back["finish_code"] not in stack.log()

    # Victor's own web UI finishing it (signed in as Victor) is not his connection: nothing.
    assert_error(finish(victor, "dropbox", back["state"], back["finish_code"]), 404,
                 "unknown_connection")
    # Mallory has the state but not the code: guesses are refused, and after a few the
    # connection is dead, so even the right code no longer works.
    assert_error(finish(mallory, "dropbox", started["state"], ""), 400)
    for guess in range(5):
        assert_error(finish(mallory, "dropbox", started["state"], f"guess-{guess}"), 400,
                     "invalid_finish_code")
    assert_error(finish(mallory, "dropbox", started["state"], f"guess-{guess + 1}"), 410,
                 "too_many_attempts")
    assert_error(finish(mallory, "dropbox", started["state"], back["finish_code"]), 410,
                 "too_many_attempts")
    assert storages_of(mallory) == [] and storages_of(victor) == []


def test_a_leaked_finish_code_is_useless_to_another_account(api):
    victor, mallory = register_and_login(api), register_and_login(api)
    started = start(victor, "box")
    _, back = approve_in_browser(started["authorize_url"])
    # Mallory learns the state and the code (a shared screen, a pasted link): not her connect.
    assert_error(finish(mallory, "box", back["state"], back["finish_code"]), 404,
                 "unknown_connection")
    assert storages_of(mallory) == []
    # Victor, who started, finishes it; once.
    done = finish(victor, "box", back["state"], back["finish_code"])
    assert done.status_code == 201, done.text
    assert [s["id"] for s in storages_of(victor)] == [done.json()["id"]]
    assert_error(finish(victor, "box", back["state"], back["finish_code"]), 410,
                 "already_finished")
    assert_error(finish(mallory, "box", back["state"], back["finish_code"]), 404,
                 "unknown_connection")
    assert storages_of(mallory) == []


def test_the_callback_cannot_be_replayed_to_get_a_second_code(api):
    mallory = register_and_login(api)
    started = start(mallory, "gdrive")
    consent = requests.get(started["authorize_url"], allow_redirects=False, timeout=10)
    callback_url = consent.headers["Location"]
    first = requests.get(callback_url, allow_redirects=False, timeout=30)
    assert first.status_code == 302, first.text
    # Replaying the provider's redirect (from a log, a history) yields no new finish code.
    assert_error(requests.get(callback_url, allow_redirects=False, timeout=30), 400,
                 "reused_state")
    assert storages_of(mallory) == []
