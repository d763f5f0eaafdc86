"""The local gateway behaves like API Gateway in front of the functions."""
import re
from pathlib import Path

import pytest
import requests
from cloudstrype import limits

from tests.support import assert_error


def test_health(api):
    response = api.get("/api/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


NO_ROUTE = {"error": {"code": "not_found", "message": "No route matches this method and path; "
                                                   "GET /api/openapi.json lists the routes."}}


@pytest.mark.parametrize("path", ["/api/nothing-here", "/api/auth/nope", "/api/auth/users/a/b/c",
                                  "/api", "/api/cloud/oauth",
                                  "/api/auth/groups/g1/members/x/y"])
def test_unknown_routes_are_answered_as_api_gateway_does(api, path):
    # The deployed API's gateway response for a path no resource matches. A path naming a
    # resource that only exists as a parent (/api/cloud/oauth) does not fall through to a
    # parameter route beside it (/api/cloud/{chunk_id}).
    response = api.get(path)
    assert_error(response, 404, "not_found")
    assert response.json() == NO_ROUTE


@pytest.mark.parametrize("method, path", [
    ("DELETE", "/api/auth/me"),
    ("GET", "/api/auth/login"),
    ("PATCH", "/api/auth/groups"),
    ("PUT", "/api/cloud/storages"),      # not /api/cloud/{chunk_id}'s PUT either: it has none
])
def test_wrong_method_is_404_as_deployed(api, method, path):
    # API Gateway answers a method the resource lacks as it answers an unknown path: 404 here
    # (MISSING_AUTHENTICATION_TOKEN, mapped by the CDK stack), never 405, no Allow header.
    response = api.request(method, path)
    assert_error(response, 404, "not_found")
    assert response.json() == NO_ROUTE
    assert "Allow" not in response.headers


def test_trailing_slash_reaches_the_same_route(api):
    assert api.get("/api/health/").json() == {"status": "ok"}


def test_an_encoded_slash_stays_in_its_segment(user):
    """API Gateway routes on the path as sent: /info/%2F asks for the item whose id is "/" (there
    is none), not for the root's listing; an id with an encoded "/" reaches the function whole."""
    for path, item in (("%2F", "/"), ("%2Fphotos%2F..", "/photos/..")):
        gone = user.api.get(f"/api/filesystem/info/{path}")
        assert gone.status_code == 404, gone.text
        assert gone.json()["error"]["code"] == "node_not_found", gone.text
        assert f"No file or directory {item}." == gone.json()["error"]["message"]
    assert user.api.get("/api/filesystem/info").status_code == 200          # the root


def test_body_over_10_mb_is_json_413(api):
    response = api.post("/api/auth/register", data=b"x" * (10 * 1024 * 1024 + 1),
                        headers={"Content-Type": "application/json"})
    assert_error(response, 413, "payload_too_large")


def test_body_over_10_mb_without_content_length_is_413(api):
    def chunks():
        for _ in range(11):
            yield b"y" * (1024 * 1024)
    response = api.post("/api/auth/register", data=chunks(),
                        headers={"Content-Type": "application/json"})
    assert_error(response, 413, "payload_too_large")


def test_binary_body_reaches_the_function_intact(api):
    # Bytes that are not valid UTF-8 travel base64-encoded in the event and are decoded again.
    response = api.post("/api/auth/login", data=bytes(range(256)),
                        headers={"Content-Type": "application/octet-stream"})
    assert_error(response, 400, "invalid_json")


@pytest.mark.parametrize("path", ["/api/auth/me", "/api/filesystem/data/some-id", "/api/auth",
                                  "/api"])
def test_cors_preflight_is_the_cdk_mock_answer_on_every_resource(api, path):
    preflight = requests.options(api.base_url + path, timeout=10,
                                 headers={"Origin": "http://example.org",
                                          "Access-Control-Request-Method": "GET"})
    assert preflight.status_code == 204
    assert preflight.content == b""
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert preflight.headers["Access-Control-Allow-Headers"] == \
        "Content-Type,X-Amz-Date,Authorization,X-Api-Key,X-Amz-Security-Token,X-Amz-User-Agent," \
        "Range,If-Match,If-None-Match,If-Range,X-Link-Password"
    assert preflight.headers["Access-Control-Allow-Methods"] == \
        "OPTIONS,GET,PUT,POST,DELETE,PATCH,HEAD"
    assert preflight.headers["Access-Control-Max-Age"] == "3600"        # as the CDK's
    answer = api.get("/api/health")
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    # A page of another origin (the deployed UI on CloudFront) reads what it waits and ranges by.
    exposed = {name.strip() for name in answer.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"Retry-After", "Content-Range", "ETag"} <= exposed, exposed


def test_preflight_of_an_unknown_path_is_404(api):
    response = requests.options(api.base_url + "/api/nothing-here", timeout=10,
                                headers={"Origin": "http://example.org",
                                         "Access-Control-Request-Method": "GET"})
    assert_error(response, 404, "not_found")


def test_cdk_preflight_allows_what_the_local_gateway_allows():
    # One definition: the CDK stack builds its preflight from cloudstrype.limits too.
    from infra.constructs import api as cdk_api
    assert list(cdk_api.CORS_ALLOWED_HEADERS) == list(limits.CORS_ALLOW_HEADERS)
    assert list(cdk_api.CORS_ALLOWED_METHODS) == list(limits.CORS_ALLOW_METHODS)


def test_one_shot_upload_over_the_lambda_payload_is_413_pointing_at_upload_sessions(user):
    # Under API Gateway's 10 MB, but over Lambda's 6 MB invocation once base64-encoded.
    response = user.api.post("/api/filesystem/data", data={"path": "/big.bin"},
                             files={"file": ("big.bin", b"z" * (5 * limits.MiB))})
    error = assert_error(response, 413, "payload_too_large")
    assert "/api/filesystem/uploads" in error["message"]


def test_a_one_shot_upload_up_to_the_limit_reaches_the_function(user):
    # The function answers (this user has no storage yet), not the gateway.
    response = user.api.post("/api/filesystem/data", data={"path": "/fits.bin"},
                             files={"file": ("fits.bin", b"z" * (limits.ONE_SHOT_MAX_BYTES
                                                                 - 4096))})
    assert_error(response, 422, "not_enough_storages")


def test_web_ui_is_served_at_root(api):
    page = requests.get(api.base_url + "/", timeout=10)
    assert page.status_code == 200
    assert "<title>Cloudstrype</title>" in page.text
    assert requests.get(api.base_url + "/app.js", timeout=10).status_code == 200
    config = requests.get(api.base_url + "/config.json", timeout=10).json()
    assert config["apiBaseUrl"] == "" and config["websocketUrl"].endswith("/ws")


def test_the_web_ui_and_file_content_come_with_their_security_headers(api, user):
    """The UI: a strict Content-Security-Policy (its scripts and styles only, no frames), no
    sniffing, no framing; HEAD answered as CloudFront does. A file's content, whatever type
    its uploader gave (here HTML with a script), is never run in the API's origin."""
    for path in ("/", "/app.js", "/config.json"):
        page = requests.get(api.base_url + path, timeout=10)
        policy = page.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy, policy
        assert f"ws://{api.base_url.split('://')[1]}" in policy
        assert page.headers["X-Content-Type-Options"] == "nosniff"
        assert page.headers["X-Frame-Options"] == "DENY"
    assert requests.head(api.base_url + "/", timeout=10).status_code == 200
    assert user.api.post("/api/cloud/storages", json={
        "kind": "local", "name": "sh", "config": {"path": "sec-headers"}}).status_code == 201
    made = user.api.post("/api/filesystem/data", data={"path": "/", "name": "page.html"},
                         files={"file": ("page.html", b"<script>alert(1)</script>",
                                         "text/html")})
    assert made.status_code == 201, made.text
    content = user.api.get(f"/api/filesystem/data/{made.json()['id']}")
    assert content.status_code == 200
    assert content.headers["X-Content-Type-Options"] == "nosniff"
    assert content.headers["Content-Security-Policy"].startswith("sandbox")
    assert content.headers["Content-Disposition"].startswith("attachment")
    assert user.api.get("/api/filesystem/usage").headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("path", ["/../pyproject.toml", "/%2e%2e/pyproject.toml",
                                  "/missing.html", "/index.html%00", "/%00", "/js/app%00.js",
                                  "/" + "n" * 300 + ".js"])
def test_static_files_never_escape_the_web_folder(api, path):
    # A NUL or a name too long for the file system is no page either (they were 500s, with a
    # traceback in the log).
    response = requests.get(api.base_url + path, timeout=10)
    assert_error(response, 404, "not_found")
    assert "[project]" not in response.text


def _js_constant(path: str, name: str) -> int:
    text = (Path(__file__).resolve().parents[2] / path).read_text()
    found = re.search(rf"const {name} = ([0-9* ]+);", text)
    assert found, f"{name} not found in {path}"
    value = 1
    for factor in found.group(1).split("*"):
        value *= int(factor)
    return value


def test_the_clients_copies_of_the_limits_match_the_server():
    # The CLI (but for the codec of its direct reads, when installed) and the web UI import no
    # server code; their copies are checked here.
    from cloudstrype_client import member, transfer
    room_for_the_form = 64 * 1024
    assert transfer.ONE_SHOT_MAX + room_for_the_form <= limits.ONE_SHOT_MAX_BYTES
    assert transfer.RANGE_SIZE == limits.RANGE_MAX_BYTES
    assert member.MAX_MESSAGE_BYTES == limits.WS_MESSAGE_MAX_BYTES
    web_one_shot = _js_constant("web/js/transfers.js", "ONE_SHOT_MAX")
    assert web_one_shot + room_for_the_form <= limits.ONE_SHOT_MAX_BYTES
    assert _js_constant("web/js/transfers.js", "RANGE_SIZE") == limits.RANGE_MAX_BYTES
    assert _js_constant("web/js/format.js", "CHUNK_SIZE") == limits.CHUNK_BYTES


def test_every_header_the_web_ui_sends_is_allowed_by_the_preflight():
    """Deployed, the web UI (CloudFront) calls the API (API Gateway) across origins: a header
    the preflight does not allow blocks the request (X-Link-Password was missing, so a
    password-protected link could not open)."""
    web = Path(__file__).resolve().parents[2] / "web"
    sent = set()
    for script in [web / "app.js", *web.joinpath("js").rglob("*.js")]:
        text = script.read_text()
        sent |= set(re.findall(r'"?\b((?:X-[A-Za-z-]+)|Range|If-[A-Za-z-]+|Content-Type)"?\s*:',
                               text))
        sent |= set(re.findall(r"headers\.([A-Z][A-Za-z]+)\s*=", text))
    assert {"X-Link-Password", "Range", "Content-Type", "Authorization"} <= sent
    allowed = {h.lower() for h in limits.CORS_ALLOW_HEADERS}
    assert {h for h in sent if h.lower() not in allowed} == set()


def test_the_web_uis_password_help_says_the_pools_policy():
    from cloudstrype.auth import pool
    text = (Path(__file__).resolve().parents[2] / "web/js/format.js").read_text()
    policy = pool.PASSWORD_POLICY
    assert f"At least {policy['MinimumLength']} characters" in text
    for rule, words in (("RequireUppercase", "upper-case"), ("RequireLowercase", "lower-case"),
                        ("RequireNumbers", "digit"), ("RequireSymbols", "symbol")):
        assert (words in text.split("PASSWORD_HELP")[1]) == policy[rule], rule


def test_the_librarys_sizes_are_the_platform_limits():
    # Until tree/ and pipeline/ import them from cloudstrype.limits, they must equal them.
    from cloudstrype.pipeline import codec
    from cloudstrype.tree import files
    assert files.CHUNK_SIZE == codec.MAX_CHUNK_SIZE == limits.CHUNK_BYTES
    assert files.MAX_RESPONSE_BYTES == limits.RANGE_MAX_BYTES
    assert limits.RANGE_MAX_BYTES * 4 // 3 + limits.EVENT_ENVELOPE_BYTES \
        <= limits.LAMBDA_PAYLOAD_MAX_BYTES


def test_a_client_that_goes_away_mid_answer_is_no_server_error(stack, user):
    """A download stopped half-way (the CLI killed, a browser tab closed) is the client's
    doing: the gateway notes it in one line (at INFO), not as an error with a traceback."""
    import socket
    import struct
    import time
    from urllib.parse import urlsplit

    from tests.support import unique
    assert user.api.post("/api/cloud/storages", json={
        "kind": "local", "name": "gone", "config": {"path": unique("gone")}}).status_code == 201
    data = b"x" * (4 * 1024 * 1024)
    made = user.api.post("/api/filesystem/data", files={"file": ("gone.bin", data)},
                         data={"path": "/gateway-gone"})
    assert made.status_code == 201, made.text
    before = stack.log().count("Traceback")
    address = urlsplit(stack.url)
    for _ in range(3):
        with socket.create_connection((address.hostname, address.port), timeout=10) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(f"GET /api/filesystem/data/{made.json()['id']} HTTP/1.1\r\n"
                      f"Host: {address.netloc}\r\nAuthorization: Bearer {user.access_token}"
                      f"\r\n\r\n".encode())
            assert s.recv(1024).startswith(b"HTTP/1.1 200")
            # Closed with a reset, with most of the body unread.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # The gateway's writes meet the reset within moments; a traceback would be logged then.
    deadline = time.monotonic() + 3
    while stack.log().count("Traceback") == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert stack.log().count("Traceback") == before, stack.log()[-3000:]
    assert user.api.get("/api/health").status_code == 200


def test_a_request_aiohttp_cannot_parse_is_a_400_and_no_traceback(api, stack):
    """A NUL in a header (any client can send one) was answered 400 and logged as an ERROR with
    a traceback each time (found by an attacker sweep)."""
    import socket
    import time
    from urllib.parse import urlsplit
    before = stack.log().count("Traceback")
    address = urlsplit(stack.url)
    for header in (b"If-Match: \x00", b"Range: \x00", b"If-Range: a\x00b"):
        with socket.create_connection((address.hostname, address.port), timeout=10) as s:
            s.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n\r\n")
            assert s.recv(1024).split(b" ")[1] == b"400"
    time.sleep(0.5)
    assert stack.log().count("Traceback") == before, stack.log()[-3000:]
    assert api.get("/api/health").status_code == 200
