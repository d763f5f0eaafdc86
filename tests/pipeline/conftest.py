import random

import pytest


@pytest.fixture
def rng():
    """Deterministic bytes, so a failure reproduces."""
    return random.Random(20261124)


@pytest.fixture
def key_for(rng):
    """key_for(encryption) -> a 32-byte data key, or None for 'none'."""
    return lambda encryption: None if encryption == "none" else rng.randbytes(32)
