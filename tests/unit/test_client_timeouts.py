"""How long the CLI waits on the server: an answer within the gateway's own limit (a server
silent past it is gone quiet), and a body for as long as a slow uplink needs (network sweep:
`ls` against a stalled server took ten minutes; on a link under ~35 KB/s every 4 MiB part of
a big file timed out, again and again)."""
from cloudstrype import limits
from cloudstrype_client import api


class _Session:
    def __init__(self):
        self.timeouts = []

    def request(self, method, url, *, headers, timeout, **kwargs):
        self.timeouts.append(timeout)
        return "answered"


def _client() -> api.Client:
    client = api.Client("http://127.0.0.1:9", token="t")
    client._local.session = _Session()         # this thread's session, as Client.session keeps
    return client


def test_an_answer_is_waited_for_a_little_past_the_gateway_s_own_limit():
    assert limits.INTEGRATION_TIMEOUT_SECONDS < api.READ_TIMEOUT <= \
        limits.INTEGRATION_TIMEOUT_SECONDS + 10
    client = _client()
    client._send("GET", "/api/filesystem/info", auth=None)
    assert client.session.timeouts == [(api.CONNECT_TIMEOUT, api.READ_TIMEOUT)]


def test_a_body_may_take_as_long_as_the_slowest_uplink_needs():
    client = _client()
    part = b"x" * (4 * 1024 * 1024)
    client._send("PUT", "/api/filesystem/uploads/u/parts/0", auth=None, data=part)
    client._send("POST", "/api/filesystem/data", auth=None, data={"path": "/"},
                 files={"file": ("a.bin", part, "application/octet-stream")})
    slowest = len(part) / api.SLOWEST_UPLOAD_BYTES_PER_SECOND
    assert slowest > 300                      # ~8 KiB/s: minutes for 4 MiB, not 120 s
    assert client.session.timeouts == [(api.CONNECT_TIMEOUT, slowest)] * 2
