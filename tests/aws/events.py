"""Events shaped as AWS sends them to Lambda, and invoking a handler with one.

The REST proxy event is API Gateway's (REST API, Lambda proxy integration) as documented, with
the deployed API's choices: the stage in the request context and the path, and every body
base64-encoded (the API's binary media type is */*).
"""
from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass, field

API_ID = "abc123defg"
REGION = "us-east-1"
STAGE = "prod"
API_HOST = f"{API_ID}.execute-api.{REGION}.amazonaws.com"


def rest_event(method: str, resource: str, path_params: dict | None = None,
               query: dict | None = None, headers: dict | None = None,
               body: bytes | None = None) -> dict:
    path = resource
    for name, value in (path_params or {}).items():
        path = path.replace("{" + name + "}", value)
    headers = {"Host": API_HOST, "User-Agent": "test", "X-Forwarded-Proto": "https",
               **(headers or {})}
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": path_params or None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "r3s0urc3", "resourcePath": resource, "httpMethod": method,
            "extendedRequestId": "x", "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "path": f"/{STAGE}{path}", "accountId": "123456789012", "protocol": "HTTP/1.1",
            "stage": STAGE, "domainPrefix": API_ID, "requestTimeEpoch": int(time.time() * 1000),
            "requestId": str(uuid.uuid4()), "domainName": API_HOST, "apiId": API_ID,
            "identity": {"sourceIp": "203.0.113.9", "userAgent": "test"},
        },
        "body": base64.b64encode(body).decode() if body else None,
        "isBase64Encoded": bool(body),
    }


@dataclass
class LambdaContext:
    function_name: str = "cloudstrype-test"
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:test"
    log_group_name: str = "/aws/lambda/test"
    log_stream_name: str = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


@dataclass
class Answer:
    status: int
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)


def invoke(app, event: dict) -> Answer:
    """Call a chalice app as Lambda does and decode its proxy response."""
    result = app(event, LambdaContext())
    body = result.get("body") or ""
    data = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode()
    headers = dict(result.get("headers") or {})
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers.setdefault(name, values[-1])
    return Answer(result["statusCode"], headers, data)
