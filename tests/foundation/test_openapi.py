"""The OpenAPI document and the routes the services declare stay in step."""
from cloudstrype.api import spec

import functions


def declared_routes() -> set[tuple[str, str]]:
    routes = set()
    for name in functions.available_services():
        for route in functions.load_app(name).routes_table():
            routes.add((route.method, route.path))
    return routes


def test_every_route_is_in_the_spec_and_every_spec_operation_is_a_route():
    documented = set(spec.OPERATIONS)
    routes = declared_routes()
    assert routes - documented == set(), "routes missing from the OpenAPI spec"
    assert documented - routes == set(), "spec operations with no route behind them"


def test_public_routes_are_exactly_those_documented_without_security():
    public_in_code = {(r.method, r.path) for name in functions.available_services()
                      for r in functions.load_app(name).routes_table() if r.auth == "public"}
    public_in_spec = {key for key, operation in spec.OPERATIONS.items()
                      if "security" not in operation}
    assert public_in_code == public_in_spec


def test_spec_is_served(api):
    response = api.get("/api/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    served = {(method.upper(), path) for path, ops in document["paths"].items() for method in ops}
    assert served == declared_routes()


def test_every_path_parameter_has_the_shape_its_validator_accepts():
    import re

    from cloudstrype.array.protocol import MEMBER_ID_RE
    from cloudstrype.auth.users import GROUP_RE, USERNAME_RE
    from cloudstrype.pipeline.store import CHUNK_ID_RE

    for (method, path), operation in spec.OPERATIONS.items():
        for param in operation.get("parameters", []):
            if param["in"] == "path":
                schema = param["schema"]
                assert "pattern" in schema or "enum" in schema, (method, path, param["name"])
    # The patterns are the validators' own (anchored for JSON Schema, which searches).
    for validator, name in ((CHUNK_ID_RE, "chunk_id"), (MEMBER_ID_RE, "member_id"),
                            (USERNAME_RE, "username"), (GROUP_RE, "group")):
        pattern = re.compile(spec.PATH_PARAMS[name]["pattern"])
        for sample in ("a", "abc", "ab-c_d.e", "x" * 64, "../etc", "a b", "", "a/b"):
            assert bool(pattern.search(sample)) == bool(validator.fullmatch(sample)), \
                (name, sample)


def test_every_operation_lists_its_errors_and_content_types():
    for (method, path), operation in spec.OPERATIONS.items():
        statuses = set(operation["responses"])
        if path.startswith("/api/auth/") or "security" in operation:
            # Bad input, and the stores behind every route being unavailable or full.
            assert {"400", "503", "507"} <= statuses, (method, path, statuses)
        if "security" in operation:
            assert "401" in statuses, (method, path)
        for status, answer in operation["responses"].items():
            if status in ("204", "302", "304"):
                assert "content" not in answer, (method, path, status)
            elif int(status) >= 400:
                assert list(answer["content"]) == ["application/json"], (method, path, status)
            else:
                assert answer.get("content"), (method, path, status)
    downloads = [spec.OPERATIONS[("GET", p)] for p in
                 ("/api/chunk/{chunk_id}", "/api/cloud/{chunk_id}", "/api/array/{chunk_id}")]
    for operation in downloads:
        assert list(operation["responses"]["200"]["content"]) == ["application/octet-stream"]
