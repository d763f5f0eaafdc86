"""The OAuth callback as the deployed cloud function answers it: back to the web UI's origin,
with the finish code in the fragment."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import requests

import functions
from tests.aws.conftest import PUBLIC_URL, WEB_URL
from tests.aws.events import invoke, rest_event

CALLBACK = "/api/cloud/oauth/{provider}/callback"


def _granted(provider: str, return_to: str | None) -> dict:
    """Start connecting (as the authorize route does) and approve at the fake provider: the
    query the provider sends the browser back with."""
    from cloudstrype.storages import oauth_connect
    started = oauth_connect.start("user-oauth-1", provider, "My Dropbox", return_to)
    consent = requests.get(started["authorize_url"], allow_redirects=False, timeout=10)
    assert consent.status_code == 302, consent.text
    back = urlsplit(consent.headers["Location"])
    # The provider returns to the API's callback on the REST stage...
    assert f"{back.scheme}://{back.netloc}{back.path}" == \
        PUBLIC_URL.rstrip("/") + CALLBACK.format(provider=provider)
    return {name: values[0] for name, values in parse_qs(back.query).items()}


def _fragment(location: str) -> dict:
    return {name: values[0]
            for name, values in parse_qs(urlsplit(location).fragment.partition("?")[2]).items()}


def test_callback_redirects_to_the_web_ui_not_the_api_host(deployed):
    query = _granted("dropbox", "/#/storages")
    answer = invoke(functions.load_app("cloud"), rest_event(
        "GET", CALLBACK, {"provider": "dropbox"}, query=query))
    # ...and the function sends the browser on to the web UI on CloudFront, the finish code in
    # the fragment; the storage exists only once the user who started finishes with it.
    assert answer.status == 302, answer.body
    location = answer.headers["Location"]
    assert location.startswith(f"{WEB_URL}/#/storages?provider=dropbox&"), location
    back = _fragment(location)
    from cloudstrype import storages
    from cloudstrype.storages import oauth_connect
    assert storages.list_storages("user-oauth-1") == []
    created, reconnected = oauth_connect.finish("user-oauth-1", "dropbox", back["state"],
                                                back["finish_code"])
    assert not reconnected
    assert storages.get_storage("user-oauth-1", created.storage_id).kind == "dropbox"


def test_callback_without_return_to_goes_to_the_storages_page(deployed):
    query = _granted("dropbox", None)
    answer = invoke(functions.load_app("cloud"), rest_event(
        "GET", CALLBACK, {"provider": "dropbox"}, query=query))
    assert answer.status == 302, answer.body
    assert answer.headers["Location"].startswith(f"{WEB_URL}/#/storages?provider=dropbox&")
    assert set(_fragment(answer.headers["Location"])) == {"provider", "state", "finish_code"}
