"""Under CLOUDSTRYPE_TOKEN the CLI has no login to say whose it is: it reads the user the token
names (unchecked; the server checks it), so one user's resumable uploads are kept apart from
another's on a shared machine (the resume key's user was empty for every token)."""
from pathlib import Path

from cloudstrype_client.api import Client
from cloudstrype_client.config import UploadState

from tests.support import register_and_login


def test_the_token_names_its_user_and_keeps_uploads_apart(stack, api):
    alice, bob = register_and_login(api), register_and_login(api)
    clients = [Client(stack.url, token=user.access_token) for user in (alice, bob)]
    assert [c.username for c in clients] == [alice.username, bob.username]
    keys = {UploadState.key(c.server, c.username, Path("/tmp/big.bin"), 5, 1, "/", "big.bin",
                            None) for c in clients}
    assert len(keys) == 2
    for bad in ("", "not-a-jwt", "a.%%%.c", "a.bnVsbA.c"):       # (the last: "null")
        assert Client(stack.url, token=bad).username is None
