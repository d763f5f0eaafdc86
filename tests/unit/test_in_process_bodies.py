"""Large bodies pass between the local gateway and a function in its process as bytes
(InProcessBody), while an event shaped as AWS sends it still gets base64 text back: the same
handler answers both, and the Lambda payload limit is counted on the text either way."""
import base64
import json
import os

import pytest
from chalice.app import Request
from cloudstrype.api.body import (
    IN_PROCESS_EVENT,
    IN_PROCESS_MIN_BYTES,
    InProcessBody,
    base64_length,
)
from cloudstrype.api.service import PUBLIC, Reply, ServiceApp

from infra.local.gateway import _event_body, _event_size
from tests.aws.events import LambdaContext, rest_event

app = ServiceApp("echo", "/api/echo")


@app.endpoint("", ["PUT"], auth=PUBLIC)
def echo(call):
    # The bytes back, reversed: proves the handler read them, not that a body was passed on.
    return Reply(data=call.raw_body[::-1], headers={"X-Size": str(len(call.raw_body))})


def _in_process(event: dict, data: bytes) -> dict:
    return {**event, "body": _event_body(data), "isBase64Encoded": bool(data),
            IN_PROCESS_EVENT: True}


@pytest.mark.parametrize("size", [0, 1, 2, 3, 100, 65535, 65536, 3 * 1024 * 1024 + 1])
def test_base64_length_is_the_texts(size):
    assert base64_length(size) == len(base64.b64encode(b"x" * size))


def test_an_aws_event_gets_base64_text_back():
    data = os.urandom(IN_PROCESS_MIN_BYTES * 4)
    result = app(rest_event("PUT", "/api/echo", body=data), LambdaContext())
    assert result["statusCode"] == 200 and result["isBase64Encoded"] is True
    assert type(result["body"]) is str
    assert base64.b64decode(result["body"]) == data[::-1]


def test_a_large_in_process_body_goes_both_ways_as_bytes():
    data = os.urandom(IN_PROCESS_MIN_BYTES * 4)
    event = _in_process(rest_event("PUT", "/api/echo"), data)
    assert isinstance(event["body"], InProcessBody) and event["body"].raw is data

    result = app(event, LambdaContext())

    assert result["statusCode"] == 200 and result["isBase64Encoded"] is True
    assert result["headers"]["X-Size"] == str(len(data))
    assert isinstance(result["body"], InProcessBody)
    assert result["body"].raw == data[::-1]
    # Where the text's length matters (Lambda's 6 MB response limit), it is the text's.
    assert len(result["body"]) == len(base64.b64encode(data))


def test_a_small_in_process_body_is_base64_text_as_in_aws():
    data = os.urandom(IN_PROCESS_MIN_BYTES - 1)
    event = _in_process(rest_event("PUT", "/api/echo"), data)
    assert type(event["body"]) is str

    result = app(event, LambdaContext())

    assert type(result["body"]) is str
    assert base64.b64decode(result["body"]) == data[::-1]


def test_chalice_itself_reads_an_in_process_body():
    # Code that asks chalice for the body (not cloudstrype's Call) still gets the bytes.
    data = os.urandom(IN_PROCESS_MIN_BYTES)
    event = _in_process(rest_event("PUT", "/api/echo"), data)
    assert Request(event).raw_body == data


@pytest.mark.parametrize("size", [1, IN_PROCESS_MIN_BYTES - 1, IN_PROCESS_MIN_BYTES,
                                  3 * 1024 * 1024 + 2])
def test_the_event_size_counts_the_text_aws_would_send(size):
    data = os.urandom(size)
    aws = rest_event("PUT", "/api/echo", body=data)
    assert _event_size(_in_process(aws, data)) == len(json.dumps(aws, separators=(",", ":")))
