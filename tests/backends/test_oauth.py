"""The authorization-code flow, the provider registry and its URL overrides, token refresh."""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from cloudstrype.backends import oauth
from cloudstrype.backends.base import BackendAuthError, BackendError
from cloudstrype.backends.oauth import (
    PROVIDERS,
    ProviderNotConfigured,
    authorization_url,
    code_challenge_s256,
    exchange_code,
    make_session,
)
from cloudstrype.backends.registry import Target, open_backend
from cloudstrype.settings import reset_settings_cache
from oauthlib.oauth2 import WebApplicationClient

from tests.fakes import CLIENT_ID

REDIRECT_URI = "http://127.0.0.1:8080/api/cloud/oauth/callback"
PKCE_PROVIDERS = ["dropbox", "gdrive", "onedrive"]


def query_of(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def authorize(fake, state="state-123"):
    """Go through the fake's consent page; returns (code, code_verifier)."""
    url, verifier = authorization_url(fake.name, REDIRECT_URI, state)
    answer = requests.get(url, allow_redirects=False, timeout=5)
    assert answer.status_code == 302, answer.text
    location = answer.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?")
    returned = query_of(location)
    assert returned["state"] == state
    return returned["code"], verifier


def test_the_authorization_url_carries_client_redirect_state_and_scopes(fake):
    url, _ = authorization_url(fake.name, REDIRECT_URI, "state-xyz")

    assert url.startswith(f"{fake.url}/")
    params = query_of(url)
    assert params["client_id"] == CLIENT_ID
    assert params["redirect_uri"] == REDIRECT_URI
    assert params["response_type"] == "code"
    assert params["state"] == "state-xyz"
    scopes = PROVIDERS[fake.name].scopes
    assert params.get("scope", "").split() == list(scopes)


@pytest.mark.parametrize("name", PKCE_PROVIDERS)
def test_pkce_providers_get_an_s256_challenge_of_the_returned_verifier(name, request):
    request.getfixturevalue(f"{name}_fake")

    url, verifier = authorization_url(name, REDIRECT_URI, "s")

    params = query_of(url)
    assert params["code_challenge_method"] == "S256"
    assert 43 <= len(verifier) <= 128
    assert params["code_challenge"] == code_challenge_s256(verifier)
    assert verifier not in url
    # A fresh verifier each time.
    assert authorization_url(name, REDIRECT_URI, "s")[1] != verifier


def test_box_gets_no_pkce_challenge(box_fake):
    url, verifier = authorization_url("box", REDIRECT_URI, "s")

    assert verifier is None
    assert "code_challenge" not in query_of(url)


def test_code_challenge_agrees_with_oauthlibs_s256():
    verifier = oauth.new_code_verifier()
    reference = WebApplicationClient("any").create_code_challenge(verifier, "S256")
    assert code_challenge_s256(verifier) == reference


@pytest.mark.parametrize("name, expected", [
    ("dropbox", {"token_access_type": "offline"}),        # else no refresh token
    ("gdrive", {"access_type": "offline", "prompt": "consent"}),
])
def test_provider_specific_authorization_parameters(name, expected, request):
    request.getfixturevalue(f"{name}_fake")

    params = query_of(authorization_url(name, REDIRECT_URI, "s")[0])

    assert {key: params.get(key) for key in expected} == expected


def test_microsoft_is_asked_for_a_refresh_token_with_offline_access(onedrive_fake):
    params = query_of(authorization_url("onedrive", REDIRECT_URI, "s")[0])
    assert "offline_access" in params["scope"].split()


def test_an_empty_state_is_refused(dropbox_fake):
    with pytest.raises(ValueError, match="state"):
        authorization_url("dropbox", REDIRECT_URI, "")


def test_the_code_exchange_yields_a_working_token(fake, fast_retry):
    code, verifier = authorize(fake)

    token = exchange_code(fake.name, code, REDIRECT_URI, verifier)

    assert token["access_token"] and token["refresh_token"]
    assert token["expires_at"] > 0
    assert fake.token_grants == ["authorization_code"]
    backend = open_backend(fake.name, {"token": token}, retry=fast_retry)
    backend.put("share-1", b"hello")
    assert backend.get("share-1") == b"hello"


@pytest.mark.parametrize("name", PKCE_PROVIDERS)
def test_a_wrong_code_verifier_is_refused(name, request):
    fake = request.getfixturevalue(f"{name}_fake")
    code, _ = authorize(fake)

    with pytest.raises(BackendAuthError, match="invalid_grant"):
        exchange_code(name, code, REDIRECT_URI, oauth.new_code_verifier())


@pytest.mark.parametrize("name", PKCE_PROVIDERS)
def test_a_pkce_provider_needs_the_code_verifier(name, request):
    request.getfixturevalue(f"{name}_fake")
    with pytest.raises(ValueError, match="verifier"):
        exchange_code(name, "some-code", REDIRECT_URI, None)


def test_a_code_works_once(fake):
    code, verifier = authorize(fake)
    exchange_code(fake.name, code, REDIRECT_URI, verifier)

    with pytest.raises(BackendAuthError):
        exchange_code(fake.name, code, REDIRECT_URI, verifier)


def test_the_redirect_uri_must_match(fake):
    code, verifier = authorize(fake)

    with pytest.raises(BackendAuthError):
        exchange_code(fake.name, code, REDIRECT_URI + "/elsewhere", verifier)


def test_a_token_endpoint_that_is_down_is_a_passing_error_not_an_auth_error(fake):
    code, verifier = authorize(fake)
    fake.fail_next_token_request(503)

    with pytest.raises(BackendError, match="503") as raised:
        exchange_code(fake.name, code, REDIRECT_URI, verifier)
    assert type(raised.value) is BackendError


def test_a_token_endpoint_that_redirects_is_refused_and_nothing_follows_it(fake, monkeypatch):
    """The exchange carries the client secret, the code and the PKCE verifier: a redirect to
    an address the server may not reach (here a loopback port no rule allows) is not followed,
    so none of them reaches it."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    monkeypatch.setenv("CLOUDSTRYPE_OUTBOUND_ALLOW", "127.0.0.1:1")
    reset_settings_cache()
    try:
        for status in (301, 307, 308):
            code, verifier = authorize(fake)
            fake.answer_next_token_request(status, headers={
                "Location": f"http://127.0.0.1:{listener.getsockname()[1]}/stolen"})
            with pytest.raises(BackendError, match="redirect"):
                exchange_code(fake.name, code, REDIRECT_URI, verifier)
            with pytest.raises(socket.timeout):
                listener.accept()
    finally:
        listener.close()


@pytest.mark.parametrize("body", [
    "[1, 2, 3]", '{"access_token": "x", "token_type": "bearer", "expires_in": "soon"}',
    '{"access_token": "x", "token_type": "mac"}', '{"access_token": 5, "token_type": "bearer"}',
    "not json"])
def test_a_token_answer_that_is_not_a_bearer_token_is_a_backend_error(fake, body):
    code, verifier = authorize(fake)
    fake.answer_next_token_request(200, body, {"Content-Type": "application/json"})
    with pytest.raises(BackendError) as raised:
        exchange_code(fake.name, code, REDIRECT_URI, verifier)
    assert "token" in str(raised.value)


def test_a_refresh_that_meets_a_busy_token_endpoint_is_a_passing_error(backend, fake):
    backend.put("share-1", b"x")
    fake.expire_access_tokens()
    fake.fail_next_token_request(500)

    with pytest.raises(BackendError, match="500") as raised:
        backend.get("share-1")
    assert type(raised.value) is BackendError
    # The grant is intact: the next attempt refreshes and reads.
    assert backend.get("share-1") == b"x"


def test_a_refresh_whose_token_endpoint_redirects_sends_its_secrets_nowhere_else(
        backend, fake, monkeypatch):
    """A refresh carries the client secret and the refresh token, as the code exchange does:
    a redirect, even to an address the server may reach, is refused, not followed."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    backend.put("share-1", b"x")
    monkeypatch.setenv("CLOUDSTRYPE_OUTBOUND_ALLOW",
                       f"{os.environ.get('CLOUDSTRYPE_OUTBOUND_ALLOW', '')},127.0.0.1:{port}")
    reset_settings_cache()
    try:
        for status in (301, 302, 307, 308):
            fake.expire_access_tokens()
            fake.answer_next_token_request(status, headers={
                "Location": f"http://127.0.0.1:{port}/stolen"})
            with pytest.raises(BackendError, match="redirect") as raised:
                backend.get("share-1")
            assert type(raised.value) is BackendError      # a passing error, not a dead grant
            with pytest.raises(socket.timeout):
                listener.accept()
    finally:
        listener.close()
    # The grant is intact: the next attempt refreshes and reads.
    assert backend.get("share-1") == b"x"


def test_a_token_without_a_refresh_token_cannot_outlive_its_access_token(fake, fast_retry):
    token = fake.issue_token()
    del token["refresh_token"]
    backend = open_backend(fake.name, {"token": token}, retry=fast_retry)
    fake.expire_access_tokens()

    with pytest.raises(BackendAuthError, match="no refresh token"):
        backend.usage()


def test_microsoft_refreshes_repeat_the_scopes(onedrive_fake, fast_retry):
    backend = open_backend("onedrive", {"token": onedrive_fake.issue_token(lifetime=1)},
                           retry=fast_retry)
    backend.usage()

    refresh = onedrive_fake.token_requests[-1]
    assert refresh["grant_type"] == "refresh_token"
    assert refresh["scope"].split() == list(PROVIDERS["onedrive"].scopes)


def test_box_refresh_tokens_are_single_use_so_the_new_one_reaches_the_callback(
        box_fake, fast_retry):
    saved = []
    first = box_fake.issue_token()
    backend = open_backend("box", {"token": first}, on_token_refreshed=saved.append,
                           retry=fast_retry)
    box_fake.expire_access_tokens()

    backend.usage()

    assert not box_fake.refresh_token_is_valid(first["refresh_token"])
    assert box_fake.refresh_token_is_valid(saved[-1]["refresh_token"])
    # A backend opened from the saved token keeps working after the next expiry.
    box_fake.expire_access_tokens()
    reopened = open_backend("box", {"token": saved[-1]}, on_token_refreshed=saved.append,
                            retry=fast_retry)
    reopened.usage()
    assert len(saved) == 2


def test_a_session_whose_refresh_token_another_process_used_takes_the_stored_one(
        box_fake, fast_retry):
    """Two backends of one storage (two server processes or Lambda instances) opened from the
    stored token: the first refreshed and stored the new one, Box retired the old, and the
    second's refresh with it was 'reconnect the storage' though the store held a good token
    (providers sweep). Refused, it looks at the stored token and goes on with it."""
    stored = {"token": box_fake.issue_token(lifetime=30)}   # within the refresh margin

    def save(token):
        stored["token"] = token

    def opened():
        return open_backend("box", {"token": dict(stored["token"])}, on_token_refreshed=save,
                            retry=fast_retry,
                            target=Target(owner="u", storage_id="s",
                                          stored_token=lambda: dict(stored["token"])))

    first, second = opened(), opened()
    first.put("k", b"v")                          # refreshes; the new token is stored
    assert second.get("k") == b"v"                # the old one refused: the stored one used
    assert box_fake.refresh_token_is_valid(stored["token"]["refresh_token"])
    # A grant the provider refuses and the store holds no other of is still said as such.
    box_fake.revoke_grants()
    with pytest.raises(BackendAuthError, match="reconnect the storage"):
        opened().get("k")


def test_first_writes_at_once_to_a_storage_open_one_backend_and_refresh_once(
        box_fake, monkeypatch):
    """Eight first writes at once to a storage idle past its token's hour each opened a
    backend of their own, each refreshed with the same refresh token, and Box took the first
    alone: 7 of 8 writes were 'reconnect the storage', and the backend left cached for five
    minutes was often one of those (providers sweep)."""
    from cloudstrype.storages import service
    from cloudstrype.storages.store import Storage

    token = box_fake.issue_token(lifetime=-10)          # expired while the storage sat idle
    record = Storage(owner="u-cold", storage_id="st-cold", kind="box", name="Box")
    monkeypatch.setattr(service, "_full_config", lambda _record: {"token": dict(token)})
    monkeypatch.setattr(service, "_store", type("NoRecord", (), {
        "get": staticmethod(lambda owner, storage_id: None)})())
    monkeypatch.setattr(service, "_backend_cache", {})
    start, opened, answers = threading.Barrier(8), set(), []

    def write(i: int) -> None:
        start.wait()
        backend = service.backend_for(record)
        opened.add(id(backend))
        try:
            backend.put(f"share-{i}", b"x")
            answers.append("ok")
        except BackendError as exc:
            answers.append(str(exc))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == ["ok"] * 8, answers
    assert len(opened) == 1
    assert [t["grant_type"] for t in box_fake.token_requests].count("refresh_token") == 1


def test_no_token_reaches_the_log(fake, fast_retry, caplog):
    caplog.set_level(logging.DEBUG)
    code, verifier = authorize(fake)
    token = exchange_code(fake.name, code, REDIRECT_URI, verifier)
    saved = []
    backend = open_backend(fake.name, {"token": token}, on_token_refreshed=saved.append,
                           retry=fast_retry)
    backend.put("share-1", b"x")
    fake.expire_access_tokens()
    fake.fail_next(503)
    backend.get("share-1")

    secrets_seen = [token["access_token"], token["refresh_token"], saved[0]["access_token"],
                    saved[0]["refresh_token"], code]
    assert "retrying" in caplog.text   # the log did record the request's story
    for secret in secrets_seen:
        assert secret not in caplog.text


# --- settings: client credentials and URL overrides ----------------------------------------------

@pytest.fixture
def settings_env(monkeypatch):
    """Set settings environment variables for one test."""
    def set_env(**variables):
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        reset_settings_cache()
    yield set_env
    monkeypatch.undo()
    reset_settings_cache()


def test_default_urls_are_the_providers_documented_ones(settings_env):
    settings_env(CLOUDSTRYPE_PROVIDER_URL_OVERRIDES="")

    assert PROVIDERS["dropbox"].authorize_url == "https://www.dropbox.com/oauth2/authorize"
    assert PROVIDERS["dropbox"].token_url == "https://api.dropboxapi.com/oauth2/token"
    assert PROVIDERS["dropbox"].base_url("content") == "https://content.dropboxapi.com"
    assert PROVIDERS["gdrive"].authorize_url == "https://accounts.google.com/o/oauth2/v2/auth"
    assert PROVIDERS["gdrive"].token_url == "https://oauth2.googleapis.com/token"
    assert PROVIDERS["gdrive"].base_url("api") == "https://www.googleapis.com"
    assert PROVIDERS["onedrive"].authorize_url \
        == "https://login.microsoftonline.com/common/oauth2/v2.0/authorize"
    assert PROVIDERS["onedrive"].token_url \
        == "https://login.microsoftonline.com/common/oauth2/v2.0/token"
    assert PROVIDERS["onedrive"].base_url("api") == "https://graph.microsoft.com"
    assert PROVIDERS["box"].authorize_url == "https://account.box.com/api/oauth2/authorize"
    assert PROVIDERS["box"].token_url == "https://api.box.com/oauth2/token"
    assert PROVIDERS["box"].base_url("upload") == "https://upload.box.com"


def test_a_provider_wide_override_moves_every_role_and_a_role_override_wins(settings_env):
    settings_env(CLOUDSTRYPE_PROVIDER_URL_OVERRIDES=json.dumps(
        {"box": "http://127.0.0.1:9/box/", "box_upload": "http://127.0.0.1:9/up"}))

    assert PROVIDERS["box"].token_url == "http://127.0.0.1:9/box/oauth2/token"
    assert PROVIDERS["box"].base_url("api") == "http://127.0.0.1:9/box"
    assert PROVIDERS["box"].base_url("upload") == "http://127.0.0.1:9/up"
    assert PROVIDERS["dropbox"].base_url("api") == "https://api.dropboxapi.com"


@pytest.mark.parametrize("value, complaint", [
    ("{not json", "not valid JSON"),
    ('["http://x"]', "JSON object"),
    ('{"dropbox_api": 5}', "JSON object"),
    ('{"dropbox_apii": "http://x"}', "unknown keys"),
])
def test_malformed_overrides_are_reported(settings_env, value, complaint):
    settings_env(CLOUDSTRYPE_PROVIDER_URL_OVERRIDES=value)
    with pytest.raises(ValueError, match=complaint):
        PROVIDERS["dropbox"].base_url("api")


def test_a_provider_without_a_client_id_is_not_configured(settings_env):
    settings_env(CLOUDSTRYPE_BOX_CLIENT_ID="", CLOUDSTRYPE_PROVIDER_URL_OVERRIDES="")

    assert not PROVIDERS["box"].configured
    with pytest.raises(ProviderNotConfigured, match="CLOUDSTRYPE_BOX_CLIENT_ID"):
        authorization_url("box", REDIRECT_URI, "s")
    with pytest.raises(ProviderNotConfigured):
        make_session("box", {"access_token": "a", "token_type": "bearer"})


def test_an_unknown_provider_is_refused():
    with pytest.raises(ValueError, match="unknown OAuth provider"):
        oauth.get_provider("myspace")


def test_a_session_needs_an_access_token(dropbox_fake):
    with pytest.raises(ValueError, match="access_token"):
        make_session("dropbox", {"refresh_token": "r"})
