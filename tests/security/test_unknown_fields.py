"""Every JSON body is held to the fields its operation's schema names (api/spec.py, the one
place they are declared): a field no route reads is a 400 naming it, before anything is done,
so a misspelt optional field ("expire_in" for a link's "expires_in") is never silently
ignored."""
from __future__ import annotations

import re

import pytest
from cloudstrype.api import spec

from tests.support import Api, cli, login, start_stack, unique

JSON_OPERATIONS = sorted((method, path) for (method, path) in spec.OPERATIONS
                         if spec.json_fields(method, path) is not None)


@pytest.fixture(scope="module")
def admin_api(tmp_path_factory):
    stack = start_stack(tmp_path_factory.mktemp("unknown-fields"))
    username = unique("strict")
    done = cli("admin", "create", username, "--email", f"{username}@example.org",
               "--password", "Str1ctPassword", "--data-dir", str(stack.data_dir))
    assert done.returncode == 0, done.stderr
    yield Api(stack.url, login(Api(stack.url), username, "Str1ctPassword")["access_token"])
    stack.stop()


def test_the_operations_with_json_bodies_are_found():
    # The rule covers the routes a sweep found lax (links, shares, restore, uploads, auth).
    for operation in [("POST", "/api/filesystem/links"), ("POST", "/api/filesystem/shares"),
                      ("PUT", "/api/filesystem/shares/{share_id}"),
                      ("POST", "/api/filesystem/trash/{item_id}/restore"),
                      ("POST", "/api/filesystem/uploads"), ("POST", "/api/auth/login"),
                      ("POST", "/api/cloud/storages")]:
        assert operation in JSON_OPERATIONS, operation
    assert spec.json_fields("POST", "/api/filesystem/links") == (
        "expires_in", "node_id", "password", "path")
    assert spec.json_fields("POST", "/api/filesystem/data") is None      # a form
    # A route that takes no body takes no JSON field either (`{"x": 1}` to logout was taken:
    # accounts sweep); a body of another type is left to it.
    assert spec.json_fields("POST", "/api/auth/logout") == ()


@pytest.mark.parametrize("method,path", JSON_OPERATIONS)
def test_a_field_the_operation_does_not_take_is_refused_by_name(admin_api, method, path):
    url = re.sub(r"\{[^}]+\}", "x", path)
    body = {"kind": "local", "expire_in": 60}
    answer = admin_api.request(method, url, json=body)
    assert answer.status_code == 400, (answer.status_code, answer.text)
    error = answer.json()["error"]
    assert error["code"] == "unknown_field" and error["details"] == {"field": "expire_in"}, error
    for name in spec.json_fields(method, path):
        assert name in error["message"], error
