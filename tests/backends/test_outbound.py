"""outbound: the address check and its pinning, in process (the HTTP attacks are in
tests/security/test_storages.py)."""
from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from cloudstrype.backends import outbound
from cloudstrype.settings import reset_settings_cache


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def dns(monkeypatch):
    """getaddrinfo for names ending in .test answers from `answers` (one list per call; the
    last repeats) and counts the lookups."""
    real = socket.getaddrinfo
    state = {"answers": [], "lookups": 0}

    def fake(host, port, *args, **kwargs):
        if not str(host).endswith(".test"):
            return real(host, port, *args, **kwargs)
        state["lookups"] += 1
        answers = state["answers"]
        addresses = answers[min(state["lookups"], len(answers)) - 1]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return state


def allow(monkeypatch, value: str):
    monkeypatch.setenv("CLOUDSTRYPE_OUTBOUND_ALLOW", value)
    reset_settings_cache()


def test_the_checked_address_is_pinned_so_rebinding_cannot_move_it(monkeypatch, server, dns):
    allow(monkeypatch, f"127.0.0.1:{server}")
    # First the allowed address, then (a rebinding DNS server) the metadata service.
    dns["answers"] = [["127.0.0.1"], ["169.254.169.254"]]
    session = outbound.guard_session(requests.Session())
    for _ in range(3):        # the server closes each connection: the pool reconnects
        answer = session.get(f"http://rebind.test:{server}/", timeout=5)
        assert answer.content == b"hello"
    assert dns["lookups"] == 1
    # A new connection resolves again, and the new answer is refused.
    with pytest.raises(outbound.OutboundRefused, match="cloud metadata"):
        outbound.guard_session(requests.Session()).get(f"http://rebind.test:{server}/",
                                                        timeout=5)


def test_a_name_with_one_private_address_among_public_ones_is_refused(monkeypatch, dns):
    allow(monkeypatch, "")
    dns["answers"] = [["93.184.216.34", "10.0.0.7"]]
    with pytest.raises(outbound.OutboundRefused, match="10.0.0.7.*private"):
        outbound.check_url("https://mixed.test/bucket")
    dns["answers"] = [["93.184.216.34"]]
    assert outbound.check_url("https://public.test/bucket") == "93.184.216.34"


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "::ffff:10.0.0.1", "64:ff9b::a9fe:a9fe",
                                     "2002:7f00:1::", "2002:a9fe:a9fe::1",     # 6to4 (sweep)
                                     "169.254.169.254", "fd00:ec2::254", "0.0.0.0", "fe80::1",
                                     "100.64.1.1", "224.0.0.251", "255.255.255.255"])
def test_addresses_of_the_servers_own_network_are_refused(monkeypatch, address):
    allow(monkeypatch, "")
    with pytest.raises(outbound.OutboundRefused):
        outbound.resolve(address, 443)


def test_allow_list_entries_match_host_address_network_and_port(monkeypatch, dns):
    dns["answers"] = [["10.1.2.3"]]
    allow(monkeypatch, "minio.test:9000, 192.168.0.0/16, [::1]:8080")
    assert outbound.resolve("minio.test", 9000) == "10.1.2.3"
    with pytest.raises(outbound.OutboundRefused):
        outbound.resolve("minio.test", 9001)
    assert outbound.resolve("192.168.44.5", 1) == "192.168.44.5"
    assert outbound.resolve("::1", 8080) == "::1"
    with pytest.raises(outbound.OutboundRefused):
        outbound.resolve("::1", 8081)
