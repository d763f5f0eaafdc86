"""The local gateway behaves like API Gateway in front of the functions."""
import pytest
import requests

from tests.support import assert_error


def test_health(api):
    response = api.get("/api/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize("path", ["/api/nothing-here", "/api/auth/nope", "/api/auth/users/a/b/c",
                                  "/api"])
def test_unknown_routes_are_json_404(api, path):
    assert_error(api.get(path), 404, "not_found")


@pytest.mark.parametrize("method, path, allowed", [
    ("DELETE", "/api/auth/me", "GET"),
    ("GET", "/api/auth/login", "POST"),
    ("PATCH", "/api/auth/groups", "GET, POST"),
])
def test_wrong_method_is_json_405_with_allow(api, method, path, allowed):
    response = api.request(method, path)
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["Allow"] == allowed


def test_trailing_slash_reaches_the_same_route(api):
    assert api.get("/api/health/").json() == {"status": "ok"}


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


def test_cors_preflight_and_headers(api):
    preflight = requests.options(api.base_url + "/api/auth/me", timeout=10,
                                 headers={"Origin": "http://example.org",
                                          "Access-Control-Request-Method": "GET"})
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    assert api.get("/api/health").headers["Access-Control-Allow-Origin"] == "*"


def test_web_ui_is_served_at_root(api):
    page = requests.get(api.base_url + "/", timeout=10)
    assert page.status_code == 200
    assert "<title>Cloudstrype</title>" in page.text
    assert requests.get(api.base_url + "/app.js", timeout=10).status_code == 200
    config = requests.get(api.base_url + "/config.json", timeout=10).json()
    assert config["apiBaseUrl"] == "" and config["websocketUrl"].endswith("/ws")


@pytest.mark.parametrize("path", ["/../pyproject.toml", "/%2e%2e/pyproject.toml",
                                  "/missing.html"])
def test_static_files_never_escape_the_web_folder(api, path):
    response = requests.get(api.base_url + path, timeout=10)
    assert response.status_code == 404
    assert "[project]" not in response.text
