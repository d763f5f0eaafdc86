"""Where the local server says it is: an IPv6 address in brackets, as a URL writes it (it
printed http://::1:8080, which no client takes: review sweep); a wildcard as 127.0.0.1."""
from pathlib import Path

import pytest

from infra.local.server import LocalStack


@pytest.mark.parametrize("host, url", [
    ("127.0.0.1", "http://127.0.0.1:8080"), ("::1", "http://[::1]:8080"),
    ("0.0.0.0", "http://127.0.0.1:8080"), ("::", "http://127.0.0.1:8080"),
    ("localhost", "http://localhost:8080"),
])
def test_the_address_the_server_gives(host, url, tmp_path: Path):
    assert LocalStack(host, 8080, tmp_path).url == url
