"""Fixtures shared by the whole suite: one running local stack per test session."""
from __future__ import annotations

import pytest

from tests.support import Api, cli, register_and_login, start_stack, unique, login


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    running = start_stack(tmp_path_factory.mktemp("stack-data"))
    yield running
    code = running.stop()
    assert code == 0, f"the stack did not stop cleanly ({code}):\n{running.log()}"


@pytest.fixture(scope="session")
def api(stack) -> Api:
    return Api(stack.url)


@pytest.fixture
def user(api):
    return register_and_login(api)


@pytest.fixture
def other_user(api):
    return register_and_login(api)


@pytest.fixture(scope="session")
def admin(stack, api):
    username = unique("admin")
    done = cli("admin", "create", username, "--email", f"{username}@example.org",
               "--password", "Adm1nPassword", "--data-dir", str(stack.data_dir))
    assert done.returncode == 0, done.stderr
    tokens = login(api, username, "Adm1nPassword")
    return api.as_user(tokens["access_token"]), username
