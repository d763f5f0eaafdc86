"""A member given the API's URL finds the WebSocket as it would deployed: through a front that
behaves like the REST API's stage (only /prod/api/..., 403 for anything else, no WebSocket and no
/config.json), in front of the local stack."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from tests.array.conftest import Members
from tests.support import register_and_login


class RestStageFront:
    """Forwards /<stage>/api/... to the stack, answers anything else as API Gateway does."""

    def __init__(self, target: str, stage: str = "prod"):
        front = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _forward(self):
                prefix = f"/{stage}/api"
                if not (self.path == prefix or self.path.startswith(prefix + "/")):
                    front.refused.append(self.path)
                    self._answer(403, b'{"message":"Missing Authentication Token"}')
                    return
                length = int(self.headers.get("Content-Length") or 0)
                upstream = requests.request(
                    self.command, target + self.path[len(stage) + 1:],
                    data=self.rfile.read(length) if length else None, timeout=30,
                    headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
                front.forwarded.append(self.path)
                self._answer(upstream.status_code, upstream.content)

            def _answer(self, status, body):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _forward

        self.forwarded: list[str] = []
        self.refused: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/{stage}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def rest_front(stack):
    front = RestStageFront(stack.url)
    yield front
    front.close()


def test_member_given_the_api_url_connects(stack, api, rest_front, tmp_path):
    user = register_and_login(api)
    members = Members(stack, tmp_path)
    try:
        member = members.start(user, server=rest_front.url + "/")
        assert "/prod/api/config" in rest_front.forwarded
        assert member.alive()
    finally:
        members.stop_all()


def test_member_given_an_address_that_is_not_cloudstrype_says_so(stack, api, tmp_path):
    user = register_and_login(api)
    front = RestStageFront(stack.url, stage="elsewhere")   # answers 403 to /prod/...
    members = Members(stack, tmp_path)
    try:
        member = members.start(user, server=front.url.replace("/elsewhere", "/prod"),
                               wait=False)
        assert member.process.wait(timeout=30) == 2
        assert "does not say where its WebSocket is" in member.log()
        assert "--server" in member.log()
    finally:
        members.stop_all()
        front.close()
