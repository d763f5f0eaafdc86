"""A member's WebSocket lives no longer than the sign-in that opened it (accounts sweep: a token
was checked at `$connect` only, so after a logout, a password change or the account's deletion
the connection went on — locally for ever — and a `hello` on it still registered a new member
as the user's storage, a placement target for their new chunks).

The local identity ends a sign-in at once, for every request; Cognito's access tokens live
until they expire (REST alike), and API Gateway closes a WebSocket after two hours."""
from __future__ import annotations

import json

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.support import PASSWORD, login, register_and_login, unique


def _member(stack, token: str, name: str):
    """A WebSocket opened as a member of the user of `token`: (the connection, its member id)."""
    member_id = unique(name).replace(".", "-")[:40]
    ws = connect(f"{stack.ws_url}?member_id={member_id}",
                 additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10)
    return ws, member_id


def _hello(ws, member_id: str) -> dict:
    ws.send(json.dumps({"type": "hello", "id": "h1", "member_id": member_id, "protocol": 1,
                        "capacity": 10**9, "used": 0, "free": 10**9}))
    return json.loads(ws.recv(timeout=10))


@pytest.mark.parametrize("ending", ["logout", "password", "deleted"])
def test_a_connection_ends_with_the_sign_in_that_opened_it(api, stack, admin, ending):
    user = register_and_login(api)
    # The member's own sign-in (a password change ends every sign-in but the one making it).
    member = login(api, user.username)
    ws, member_id = _member(stack, member["access_token"], "ends")
    with ws:
        ws.send(json.dumps({"type": "ping", "id": "p1"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "pong"
        if ending == "logout":
            assert api.as_user(member["access_token"]).post("/api/auth/logout").status_code \
                == 204
        elif ending == "password":
            changed = user.api.post("/api/auth/password", json={
                "old_password": PASSWORD, "new_password": PASSWORD + "x9"})
            assert changed.status_code == 204, changed.text
        else:
            admin_api, _ = admin
            assert admin_api.delete(f"/api/auth/users/{user.username}").status_code == 204
        answer = _hello(ws, member_id)
        assert answer.get("code") == "signed_out" and "log in again" in answer["error"], answer
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
    if ending != "deleted":
        # Nothing was registered on the ended sign-in.
        tokens = login(api, user.username, PASSWORD + ("x9" if ending == "password" else ""))
        storages = api.as_user(tokens["access_token"]).get("/api/cloud/storages").json()
        assert not [s for s in storages["storages"] if member_id in s["id"]], storages


def test_a_connection_of_a_live_sign_in_goes_on(api, stack):
    """The check costs the member nothing while the sign-in lives: another sign-in of the same
    user ending leaves it be."""
    user = register_and_login(api)
    other = login(api, user.username)
    ws, member_id = _member(stack, user.access_token, "lives")
    with ws:
        assert api.as_user(other["access_token"]).post("/api/auth/logout").status_code == 204
        assert _hello(ws, member_id)["type"] == "welcome"
