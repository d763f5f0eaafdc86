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
