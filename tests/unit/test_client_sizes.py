"""The CLI's byte counts for people: any figure a server sends is shown, never a crash."""
import pytest
from cloudstrype_client.progress import human_size


@pytest.mark.parametrize("value, shown", [
    (None, "-"), (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (5 * 1024 ** 3, "5.0 GiB"),
    (3 * 1024 ** 5, "3072.0 TiB"),
    (10 ** 400, f"{10 ** 400} B"), (-5, "-5 B"), ("12", "12 B"), (True, "True B"),
])
def test_human_size(value, shown):
    assert human_size(value) == shown
