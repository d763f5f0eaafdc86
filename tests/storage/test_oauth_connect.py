"""Connecting cloud accounts through OAuth, end to end over HTTP against the local stack and
local servers that speak each provider's API (tests/fakes)."""
import os
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from cloudstrype.metadata.engine import Change
from cloudstrype.metadata.sqlite import SqliteEngine
from cloudstrype.storages.store import OAUTH_STATES, StorageStore

from tests.support import assert_error, register_and_login

PROVIDERS = ["dropbox", "gdrive", "onedrive", "box"]


def authorize(user, provider, **params):
    response = user.api.get(f"/api/cloud/oauth/{provider}/authorize", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def consent(authorize_url: str) -> str:
    """The provider's consent page, approved: it redirects the browser to our callback."""
    response = requests.get(authorize_url, allow_redirects=False, timeout=10)
    assert response.status_code == 302, response.text
    return response.headers["Location"]


def fragment(location: str) -> dict:
    """The query the callback put in the fragment of the web UI address it redirected to."""
    hash_route = urlsplit(location).fragment
    return {name: values[0] for name, values in parse_qs(hash_route.partition("?")[2]).items()}


def approve(started: dict, account: str | None = None) -> dict:
    """The browser's part: consent at the provider (signed in to the fake's default account,
    or to another one named `account`), then the callback, which answers with the web UI
    address carrying the finish code."""
    url = started["authorize_url"] + (f"&fake_account={account}" if account else "")
    callback = requests.get(consent(url), allow_redirects=False, timeout=30)
    assert callback.status_code == 302, callback.text
    return fragment(callback.headers["Location"])


def finish(user, provider, state, code):
    return user.api.post(f"/api/cloud/oauth/{provider}/finish",
                         json={"state": state, "code": code})


def connect(user, provider, account: str | None = None, status: int = 201, **params) -> dict:
    started = authorize(user, provider, **params)
    back = approve(started, account)
    finished = finish(user, provider, back["state"], back["finish_code"])
    assert finished.status_code == status, finished.text
    return finished.json()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_authorize_url_carries_state_and_pkce_where_supported(user, provider, stack):
    started = authorize(user, provider)
    query = parse_qs(urlsplit(started["authorize_url"]).query)
    assert query["state"] == [started["state"]]
    assert query["redirect_uri"] == [f"{stack.url}/api/cloud/oauth/{provider}/callback"]
    assert query["response_type"] == ["code"]
    if provider == "box":
        assert "code_challenge" not in query
    else:
        assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0]


def test_connect_every_provider_and_store_chunks_across_them(api):
    user = register_and_login(api)
    connected = [connect(user, provider, name=f"My {provider}") for provider in PROVIDERS]
    assert [c["kind"] for c in connected] == PROVIDERS
    for storage in connected:
        assert storage["online"] is True and storage["name"].startswith("My ")
        assert "token" not in storage["settings"] and "access_token" not in str(storage)
    listed = user.api.get("/api/cloud/storages").json()["storages"]
    assert {s["kind"] for s in listed} == set(PROVIDERS)

    data = os.urandom(300_000)
    stored = user.api.post("/api/chunk", files={"file": ("c", data)},
                           data={"durability": "rs(2,2)"})
    assert stored.status_code == 201, stored.text
    assert {s["storage_id"] for s in stored.json()["shares"]} == {c["id"] for c in connected}
    assert user.api.get(f"/api/chunk/{stored.json()['chunk_id']}").content == data


def test_accounts_connected_under_one_name_are_numbered(api):
    """The name is checked when connecting starts; two connections of two accounts started
    under one free name both finish (the provider granted them), the second numbered."""
    user = register_and_login(api)
    first, second = (authorize(user, "dropbox") for _ in range(2))   # default name: Dropbox
    names = []
    for started, account in ((first, "numbered-1"), (second, "numbered-2")):
        back = approve(started, account)
        finished = finish(user, "dropbox", back["state"], back["finish_code"])
        assert finished.status_code == 201, finished.text
        names.append(finished.json()["name"])
    assert names == ["Dropbox", "Dropbox 2"]
    assert_error(user.api.get("/api/cloud/oauth/box/authorize", params={"name": "dropbox 2"}),
                 409, "name_taken")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_account_connected_again_is_its_storage_reconnected(api, fake_providers, provider):
    """One account is one storage (two would let two copies of a chunk sit in one account):
    connecting it again gives that storage the new grant, and is how a storage whose access
    was revoked is mended. Another account of the same provider is a storage of its own."""
    user = register_and_login(api)
    account = f"again-{os.urandom(4).hex()}"
    storage = connect(user, provider, account, name="Mine")
    stored = user.api.post("/api/chunk", files={"file": ("c", b"kept through it")},
                           data={"durability": "raid1(1)"})
    assert stored.status_code == 201, stored.text
    chunk = stored.json()["chunk_id"]

    fake_providers[provider].revoke_account(account)       # disconnected at the provider
    assert_error(user.api.get(f"/api/chunk/{chunk}"), 503, "not_enough_shares")
    [down] = user.api.get("/api/cloud/storages").json()["storages"]
    assert down["online"] is False and down["last_error"], down

    again = connect(user, provider, account, status=200, name="Another name")
    assert again["reconnected"] is True
    assert (again["id"], again["name"]) == (storage["id"], "Mine")
    assert again["online"] is True and not again.get("last_error"), again
    assert user.api.get(f"/api/chunk/{chunk}").content == b"kept through it"
    assert [s["id"] for s in user.api.get("/api/cloud/storages").json()["storages"]] == \
        [storage["id"]]

    other = connect(user, provider, account + "-other")
    assert other["id"] != storage["id"] and "reconnected" not in other
    assert len(user.api.get("/api/cloud/storages").json()["storages"]) == 2


def test_an_account_is_reconnected_only_for_its_own_user(api):
    """Another user connecting the same provider account gets a storage of their own: whose
    account it is at the provider is the provider's business, and one user's storages are
    never another's."""
    first, second = register_and_login(api), register_and_login(api)
    account = f"two-users-{os.urandom(4).hex()}"
    mine = connect(first, "box", account)
    theirs = connect(second, "box", account)
    assert theirs["id"] != mine["id"] and "reconnected" not in theirs
    assert [s["id"] for s in first.api.get("/api/cloud/storages").json()["storages"]] == \
        [mine["id"]]


def _metadata(stack) -> SqliteEngine:
    """The stack's metadata database, opened beside the running server."""
    return SqliteEngine(str(stack.data_dir / "metadata.db"))


def _sealed_secrets(stack, owner: str, storage_id: str) -> bytes:
    engine = _metadata(stack)
    try:
        return StorageStore(engine).get(owner, storage_id).sealed_secrets
    finally:
        engine.close()


def test_expired_access_tokens_are_refreshed_and_saved(api, fake_providers, stack):
    user = register_and_login(api)
    storage = connect(user, "dropbox")
    stored = user.api.post("/api/chunk", files={"file": ("c", b"refresh me")},
                           data={"durability": "raid1(1)"}).json()
    sealed_before = _sealed_secrets(stack, user.user_id, storage["id"])
    fake = fake_providers["dropbox"]
    grants_before = fake.token_grants.count("refresh_token")
    fake.expire_access_tokens()
    response = user.api.get(f"/api/chunk/{stored['chunk_id']}")
    assert response.status_code == 200 and response.content == b"refresh me"
    assert fake.token_grants.count("refresh_token") == grants_before + 1
    assert stored["shares"][0]["storage_id"] == storage["id"]
    # The new token was sealed and saved, so it survives the function (or server) going away.
    assert _sealed_secrets(stack, user.user_id, storage["id"]) != sealed_before


def test_state_is_single_use(user):
    started = authorize(user, "gdrive")
    callback_url = consent(started["authorize_url"])
    assert requests.get(callback_url, allow_redirects=False, timeout=30).status_code == 302
    again = requests.get(callback_url, allow_redirects=False, timeout=30)
    assert_error(again, 400, "reused_state")


def test_the_callback_alone_connects_nothing_and_the_finish_code_is_single_use(user, stack):
    started = authorize(user, "onedrive", name="Held")
    back = approve(started)
    assert back["provider"] == "onedrive" and back["state"] == started["state"]
    assert user.api.get("/api/cloud/storages").json()["storages"] == []
    # The code is kept only as its hash.
    engine = _metadata(stack)
    try:
        row = engine.get(OAUTH_STATES, {"state": started["state"]})
    finally:
        engine.close()
    assert back["finish_code"] not in repr(row) and row["finish_hash"]
    created = finish(user, "onedrive", back["state"], back["finish_code"])
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "Held" and created.json()["kind"] == "onedrive"
    assert_error(finish(user, "onedrive", back["state"], back["finish_code"]), 410,
                 "already_finished")
    assert [s["name"] for s in user.api.get("/api/cloud/storages").json()["storages"]] == \
        ["Held"]


def test_finish_refusals_say_what_happened(user, other_user, stack):
    started = authorize(user, "box")
    # Before the provider sent the browser back there is nothing to finish.
    assert_error(finish(user, "box", started["state"], "anything"), 400, "not_approved")
    back = approve(started)
    assert_error(finish(user, "box", back["state"], "not-the-code"), 400,
                 "invalid_finish_code")
    # Another user, the wrong provider or a made-up state: no such connection (no hint that
    # the state exists).
    assert_error(finish(other_user, "box", back["state"], back["finish_code"]), 404,
                 "unknown_connection")
    assert_error(finish(user, "dropbox", back["state"], back["finish_code"]), 404,
                 "unknown_connection")
    assert_error(finish(user, "box", "made-up", back["finish_code"]), 404, "unknown_connection")
    for body in ({"state": back["state"]}, {"state": back["state"], "code": ""},
                 {"state": back["state"], "code": "x" * 201}):
        assert_error(user.api.post("/api/cloud/oauth/box/finish", json=body), 400)
    engine = _metadata(stack)
    try:
        engine.update(OAUTH_STATES, {"state": back["state"]},
                      Change(set={"finish_expires_at": int(time.time()) - 1}))
    finally:
        engine.close()
    assert_error(finish(user, "box", back["state"], back["finish_code"]), 410,
                 "expired_finish_code")
    assert user.api.get("/api/cloud/storages").json()["storages"] == []


def test_state_for_another_provider_is_refused(user, stack):
    started = authorize(user, "dropbox")
    callback = consent(started["authorize_url"]).replace("/oauth/dropbox/", "/oauth/box/")
    assert_error(requests.get(callback, allow_redirects=False, timeout=30), 400, "invalid_state")


def test_unknown_state_and_missing_parameters_are_refused(stack):
    base = f"{stack.url}/api/cloud/oauth/onedrive/callback"
    assert_error(requests.get(base, params={"code": "c", "state": "made-up"}, timeout=10), 400,
                 "invalid_state")
    assert_error(requests.get(base, params={"state": "s"}, timeout=10), 400, "missing_parameter")
    denied = assert_error(requests.get(base, params={"error": "access_denied"}, timeout=10),
                          400, "access_denied")
    assert "(access_denied)" in denied["message"]
    # Anything but an OAuth error code is not repeated: it would be someone's text on our site.
    told = assert_error(requests.get(base, params={"error": "Go to evil.example " * 200},
                                     timeout=10), 400, "access_denied")
    assert "evil" not in told["message"]
    assert_error(requests.get(f"{stack.url}/api/cloud/oauth/myspace/callback",
                              params={"code": "c", "state": "s"}, timeout=10), 404,
                 "unknown_provider")


def test_expired_state_is_refused(user, stack):
    started = authorize(user, "box")
    engine = _metadata(stack)
    try:
        engine.update(OAUTH_STATES, {"state": started["state"]},
                      Change(set={"expires_at": int(time.time()) - 1}))
    finally:
        engine.close()
    callback = requests.get(consent(started["authorize_url"]), allow_redirects=False, timeout=30)
    assert_error(callback, 400, "expired_state")


def test_the_callback_returns_to_the_web_ui_with_the_code_in_the_fragment(user, stack):
    started = authorize(user, "dropbox", return_to="/#/storages")
    callback = requests.get(consent(started["authorize_url"]), allow_redirects=False, timeout=30)
    assert callback.status_code == 302
    location = urlsplit(callback.headers["Location"])
    # Absolute, on the web UI's origin (the local stack serves it itself); the code only in the
    # fragment, which a browser never sends to a server.
    assert f"{location.scheme}://{location.netloc}" == stack.url and location.path == "/"
    assert location.query == "" and location.fragment.startswith("/storages?")
    assert set(fragment(callback.headers["Location"])) == {"provider", "state", "finish_code"}
    # Without return_to (the command line), the storages page, which shows the code.
    back = requests.get(consent(authorize(user, "gdrive")["authorize_url"]),
                        allow_redirects=False, timeout=30)
    assert back.headers["Location"].startswith(f"{stack.url}/#/storages?provider=gdrive&")
    # A path without a route of the web UI: the storages page's route is added.
    plain = requests.get(consent(authorize(user, "box", return_to="/")["authorize_url"]),
                         allow_redirects=False, timeout=30)
    assert plain.headers["Location"].startswith(f"{stack.url}/#/storages?provider=box&")
    # A return_to of other letters is percent-encoded: a header is ASCII.
    other = requests.get(consent(authorize(user, "box", return_to="/#/files?path=/été")[
        "authorize_url"]), allow_redirects=False, timeout=30)
    assert other.headers["Location"].startswith(f"{stack.url}/#/files?path=/%C3%A9t%C3%A9&")


def test_return_to_redirects_back_to_the_site_only(user):
    for evil in ("https://evil.example/", "//evil.example/x", "/\\evil"):
        assert_error(user.api.get("/api/cloud/oauth/dropbox/authorize",
                                  params={"return_to": evil}), 400, "invalid_return_to")


def test_authorize_needs_a_signed_in_user(api):
    assert_error(api.as_user(None).get("/api/cloud/oauth/dropbox/authorize"), 401)
    assert_error(api.get("/api/cloud/oauth/nope/authorize",
                         headers={"Authorization": "Bearer x"}), 401)
