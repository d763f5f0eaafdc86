"""Key protectors (a local master key file; KMS on moto in-process) and the user-key table."""
from __future__ import annotations

import os
import stat
import threading

import boto3
import pytest
from cloudstrype.keys.protector import KeyProtectorError, KmsProtector, LocalProtector
from moto import mock_aws

from tests.support import embedded_library

ALICE = {"cloudstrype:user": "alice"}
BOB = {"cloudstrype:user": "bob"}


def test_local_protector_makes_a_private_master_key_on_first_use(tmp_path):
    path = tmp_path / "secrets" / "master.key"
    protector = LocalProtector(path)
    assert not path.exists()                     # nothing until it is needed
    plain, wrapped = protector.generate_data_key(ALICE)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_bytes()) == 32 and len(plain) == 32
    assert plain not in wrapped and path.read_bytes() not in wrapped
    assert protector.unwrap(wrapped, ALICE) == plain
    # another process (a new protector on the same file) opens it too
    assert LocalProtector(path).unwrap(wrapped, ALICE) == plain
    assert [p.name for p in path.parent.iterdir()] == ["master.key"]   # no temporary left


def test_local_protector_refuses_another_context_or_master_key(tmp_path):
    protector = LocalProtector(tmp_path / "master.key")
    plain, wrapped = protector.generate_data_key(ALICE)
    with pytest.raises(KeyProtectorError, match="does not open"):
        protector.unwrap(wrapped, BOB)
    tampered = wrapped[:-1] + bytes([wrapped[-1] ^ 1])
    with pytest.raises(KeyProtectorError):
        protector.unwrap(tampered, ALICE)
    with pytest.raises(KeyProtectorError):
        LocalProtector(tmp_path / "other.key").unwrap(wrapped, ALICE)
    with pytest.raises(KeyProtectorError, match="not made by the local master key"):
        protector.unwrap(b"\x02" + wrapped[1:], ALICE)
    assert protector.unwrap(protector.wrap(plain, BOB), BOB) == plain


def test_local_protector_refuses_a_master_key_others_can_read(tmp_path):
    path = tmp_path / "master.key"
    LocalProtector(path).generate_data_key(ALICE)
    os.chmod(path, 0o644)
    with pytest.raises(KeyProtectorError, match="chmod 600"):
        LocalProtector(path).generate_data_key(ALICE)


def test_local_protector_refuses_a_damaged_master_key(tmp_path):
    path = tmp_path / "master.key"
    path.write_bytes(b"short")
    os.chmod(path, 0o600)
    with pytest.raises(KeyProtectorError, match="damaged"):
        LocalProtector(path).generate_data_key(ALICE)


def test_local_protectors_racing_to_create_agree_on_one_master_key(tmp_path):
    path = tmp_path / "master.key"
    protectors = [LocalProtector(path) for _ in range(6)]
    barrier = threading.Barrier(len(protectors))
    wrapped: list = [None] * len(protectors)

    def run(i):
        barrier.wait()
        wrapped[i] = protectors[i].generate_data_key(ALICE)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(protectors))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for plain, blob in wrapped:
        assert LocalProtector(path).unwrap(blob, ALICE) == plain


def test_local_protector_needs_a_path():
    with pytest.raises(KeyProtectorError, match="MASTER_KEY_PATH"):
        LocalProtector("")


@pytest.fixture
def kms(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("kms", region_name="us-east-1")
        yield client, client.create_key(Description="user keys")["KeyMetadata"]["KeyId"]


def test_kms_protector_wraps_and_binds_the_context(kms):
    client, key_id = kms
    protector = KmsProtector(key_id, "us-east-1")
    plain, wrapped = protector.generate_data_key(ALICE)
    assert len(plain) == 32 and plain not in wrapped
    assert protector.unwrap(wrapped, ALICE) == plain
    with pytest.raises(KeyProtectorError):
        protector.unwrap(wrapped, BOB)
    assert protector.unwrap(protector.wrap(plain, BOB), BOB) == plain
    with pytest.raises(KeyProtectorError):
        KmsProtector("no-such-key", "us-east-1", client=client).generate_data_key(ALICE)


def test_kms_protector_needs_a_key_id():
    with pytest.raises(KeyProtectorError, match="KMS_KEY_ID"):
        KmsProtector("", "us-east-1")


@pytest.fixture
def local_keys(tmp_path, monkeypatch):
    """The vault on a SQLite store and a local master key, as `serve` runs it."""
    with embedded_library(tmp_path, monkeypatch) as engine:
        yield engine


def test_first_requests_of_a_new_user_agree_on_one_key(local_keys):
    from cloudstrype import vault
    from cloudstrype.keys.store import UserKeyStore
    barrier = threading.Barrier(5)
    keys: list = [None] * 5

    def run(i):
        barrier.wait()
        keys[i] = vault._load_or_create("carol")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(keys)) == 1
    stored = UserKeyStore().get("carol")
    assert stored.protector == "local" and keys[0] not in stored.encrypted_key
    sealed = vault.seal("carol", b"secret", "purpose")
    vault.forget_cached_keys()
    assert vault.open_sealed("carol", sealed, "purpose") == b"secret"
    with pytest.raises(vault.VaultError):
        vault.open_sealed("carol", sealed, "another purpose")


def test_a_key_wrapped_by_another_protector_is_a_clear_503(local_keys):
    from cloudstrype import errors, vault
    from cloudstrype.keys.store import UserKeyStore
    UserKeyStore().create("dave", b"kms-wrapped", "kms")
    with pytest.raises(errors.ServiceUnavailable, match="protected by 'kms'"):
        vault.user_key("dave")
