"""The gateway sizes a Lambda event without serializing a large body twice; the shortcut must
give exactly what serializing the whole event gives (Lambda's 6 MB limit is checked with it)."""
import json
import os

import pytest

from infra.local.gateway import _b64, _event_size


@pytest.mark.parametrize("size", [0, 1, 2, 3, 1000, 65537, 3 * 1024 * 1024])
def test_event_size_equals_the_serialized_event(size):
    event = {"resource": "/api/x/{id}", "headers": {"A": "é \"quoted\"", "B": None},
             "multiValueQueryStringParameters": {"q": ["1", "2"]},
             "body": _b64(os.urandom(size)), "isBase64Encoded": bool(size)}
    assert _event_size(event) == len(json.dumps(event, separators=(",", ":")))


@pytest.mark.parametrize("value", ["plain", "é" * 300, "😀" * 500, '"\\' * 400])
@pytest.mark.parametrize("size", [0, 100, 1024 * 1024])
def test_the_cheap_bound_is_never_below_the_event_size(value, size):
    """The gateway serializes an event to size it only when this bound says it could be over
    Lambda's limit; a request whose headers and query escape at worst stays under the bound."""
    from aiohttp.test_utils import make_mocked_request
    from cloudstrype.api.body import InProcessBody
    from multidict import CIMultiDict

    from infra.local.gateway import Gateway, Route, _event_body, _event_size_bound
    headers = CIMultiDict([("X-One", value), ("X-One", value[::-1]), ("User-Agent", value),
                           ("Host", "example.test")])
    request = make_mocked_request("GET", f"/api/x/1?q={value}&q=2&{value}=3", headers=headers)
    body = _event_body(os.urandom(size))
    route = Route(resource="/api/x/{id}", pattern=None, params=["id"], literal_segments=2,
                  app=None, methods={"GET"})
    event = Gateway._rest_event(None, request, route, {"id": "1"}, body)
    if isinstance(body, InProcessBody):          # as AWS would send it: the body as text
        event = {**event, "body": body.encode().decode()}
    exact = len(json.dumps(event, separators=(",", ":")))
    assert exact <= _event_size_bound(request.raw_headers, request.raw_path, body)
