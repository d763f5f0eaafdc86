"""Fixtures shared by the whole suite: one running local stack per test session."""
from __future__ import annotations

import json
import os

import pytest

from tests.support import Api, cli, login, register_and_login, start_stack, unique


@pytest.fixture(scope="session", autouse=True)
def local_storage_roots(tmp_path_factory):
    """The tests keep local storages in pytest's temporary folders: the root an operator would
    name (CLOUDSTRYPE_LOCAL_STORAGE_ROOTS), for in-process tests and every stack started."""
    os.environ["CLOUDSTRYPE_LOCAL_STORAGE_ROOTS"] = str(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def fake_providers():
    """Dropbox, Google Drive, OneDrive and Box, as local servers speaking their APIs."""
    from tests.fakes import FAKES
    fakes = {name: fake_class().start() for name, fake_class in FAKES.items()}
    yield fakes
    for fake in fakes.values():
        fake.stop()


# The HTTP suites of these services also run against a stack whose services are the AWS
# adapters on moto (DynamoDB, Cognito, KMS, S3 staging), so the AWS path stays proven end to end.
AWS_EMULATED_SUITES = ("foundation/test_auth_api.py", "foundation/test_tokens.py",
                       "filesystem/test_files.py", "filesystem/test_upload_sweep.py",
                       "filesystem/test_batch.py", "filesystem/test_packs.py",
                       "storage/test_chunks.py", "array/")


def pytest_generate_tests(metafunc):
    if "stack" not in metafunc.fixturenames:
        return
    path = str(metafunc.definition.path)
    modes = ["local"]
    if any(f"/tests/{suite}" in path for suite in AWS_EMULATED_SUITES):
        modes.append("aws-emulated")
    metafunc.parametrize("stack", modes, indirect=True, scope="session")


@pytest.fixture(scope="session")
def stack(request, tmp_path_factory, fake_providers):
    """A running stack in the mode the test is parametrized with (the embedded default unless
    the suite is one of AWS_EMULATED_SUITES)."""
    mode = getattr(request, "param", "local")
    from tests.fakes import CLIENT_ID, CLIENT_SECRET
    overrides, env = {}, {}
    for name, fake in fake_providers.items():
        overrides.update(fake.url_overrides())
        env[f"CLOUDSTRYPE_{name.upper()}_CLIENT_ID"] = CLIENT_ID
        env[f"CLOUDSTRYPE_{name.upper()}_CLIENT_SECRET"] = CLIENT_SECRET
    env["CLOUDSTRYPE_PROVIDER_URL_OVERRIDES"] = json.dumps(overrides)
    # The fake providers speak plain HTTP on loopback; oauthlib insists on HTTPS otherwise.
    env["OAUTHLIB_INSECURE_TRANSPORT"] = "1"
    # They, and the tests' own S3 servers, listen on loopback, which the server refuses to reach
    # for users unless allowed (tests/security starts a stack without this).
    env["CLOUDSTRYPE_OUTBOUND_ALLOW"] = "127.0.0.1"
    running = start_stack(tmp_path_factory.mktemp(f"stack-{mode}"), env=env, mode=mode)
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
