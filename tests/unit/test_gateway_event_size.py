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
