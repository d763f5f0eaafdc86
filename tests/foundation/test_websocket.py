"""The WebSocket mechanism: real WebSocket clients against the local gateway.

Connects become `$connect` events (authenticated), messages `$default` events, and the handlers
answer through the management API (`post_to_connection`), as they would in AWS.
"""
import json

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect


def test_authenticated_member_gets_a_pong_through_post_to_connection(stack, user):
    with connect(stack.ws_url, additional_headers={"Authorization": f"Bearer {user.access_token}"},
                 open_timeout=10) as ws:
        ws.send(json.dumps({"type": "ping", "id": "r1"}))
        assert json.loads(ws.recv(timeout=10)) == {"type": "pong", "id": "r1"}
        ws.send(json.dumps({"type": "ping", "id": "r2"}))
        assert json.loads(ws.recv(timeout=10)) == {"type": "pong", "id": "r2"}


def test_token_in_query_parameter_is_accepted(stack, user):
    with connect(f"{stack.ws_url}?token={user.access_token}", open_timeout=10) as ws:
        ws.send(json.dumps({"type": "ping", "id": 7}))
        assert json.loads(ws.recv(timeout=10))["id"] == 7


def test_unknown_message_type_gets_an_error_reply(stack, user):
    with connect(f"{stack.ws_url}?token={user.access_token}", open_timeout=10) as ws:
        ws.send(json.dumps({"type": "dance", "id": "x"}))
        reply = json.loads(ws.recv(timeout=10))
        assert reply["type"] == "error" and "dance" in reply["error"]
        ws.send("not json")
        assert json.loads(ws.recv(timeout=10))["type"] == "error"


def test_deep_json_lone_surrogates_and_huge_sizes_get_a_protocol_error_not_a_crash(stack, user):
    with connect(f"{stack.ws_url}?token={user.access_token}", open_timeout=10) as ws:
        for text, says in (("[" * 10000, "deep"), ('{"type": "hello", "name": "\\ud800"}',
                                                    "surrogate")):
            ws.send(text)
            reply = json.loads(ws.recv(timeout=10))
            assert reply["type"] == "error" and reply["code"] != "internal_error", reply
            assert says in reply["error"], reply
        ws.send(json.dumps({"type": "hello", "id": "h", "member_id": "member-big",
                            "capacity": 10 ** 30, "used": 0, "free": 10 ** 30}))
        reply = json.loads(ws.recv(timeout=10))
        assert reply["type"] == "error" and "1 EiB" in reply["error"], reply
        ws.send(json.dumps({"type": "ping", "id": "still"}))    # the connection still works
        assert json.loads(ws.recv(timeout=10)) == {"type": "pong", "id": "still"}


@pytest.mark.parametrize("suffix, headers", [
    ("", {}),
    ("?token=garbage", {}),
    ("", {"Authorization": "Bearer not.a.token"}),
])
def test_missing_or_bad_token_is_refused(stack, suffix, headers):
    with pytest.raises(InvalidStatus) as refused:
        with connect(stack.ws_url + suffix, additional_headers=headers, open_timeout=10):
            pass
    assert refused.value.response.status_code == 401


def test_message_over_128_kb_closes_the_connection(stack, user):
    with connect(f"{stack.ws_url}?token={user.access_token}", open_timeout=10,
                 max_size=None) as ws:
        ws.send(json.dumps({"type": "ping", "pad": "x" * (129 * 1024)}))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd.code == 1009


def test_binary_frames_are_refused(stack, user):
    with connect(f"{stack.ws_url}?token={user.access_token}", open_timeout=10) as ws:
        ws.send(b"\x00\x01binary")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd.code == 1003


def test_a_user_has_at_most_64_members(stack, user):
    def hello(ws, member_id):
        ws.send(json.dumps({"type": "hello", "id": member_id, "member_id": member_id,
                            "capacity": 10 ** 9, "used": 0, "free": 10 ** 9}))
        return json.loads(ws.recv(timeout=10))

    for n in range(64):
        with connect(f"{stack.ws_url}?token={user.access_token}", open_timeout=10) as ws:
            assert hello(ws, f"member-{n:04d}")["type"] == "welcome"
    with connect(f"{stack.ws_url}?token={user.access_token}", open_timeout=10) as ws:
        refused = hello(ws, "member-one-more")
        assert refused["type"] == "error" and refused["code"] == "too_many_members", refused
    with connect(f"{stack.ws_url}?token={user.access_token}", open_timeout=10) as ws:
        assert hello(ws, "member-0007")["type"] == "welcome"     # a known one comes back
    listed = user.api.get("/api/array/members").json()["members"]
    assert len(listed) == 64
