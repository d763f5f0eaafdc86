"""Storage kinds, config validation, opening backends, and the connection probe."""
from __future__ import annotations

import json

import pytest
from cloudstrype.backends.base import (
    Backend,
    BackendAuthError,
    BackendError,
    ShareNotFound,
    Usage,
)
from cloudstrype.backends.box import BoxBackend
from cloudstrype.backends.dropbox import DropboxBackend
from cloudstrype.backends.gdrive import GoogleDriveBackend
from cloudstrype.backends.local import LocalBackend
from cloudstrype.backends.onedrive import OneDriveBackend
from cloudstrype.backends.registry import (
    KINDS,
    ConfigError,
    available_kinds,
    open_backend,
    probe,
    validate_config,
)
from cloudstrype.backends.s3 import S3Backend
from cloudstrype.settings import reset_settings_cache

S3_CONFIG = {"endpoint_url": "http://127.0.0.1:9000", "region": "eu-west-1", "bucket": "shares",
             "access_key": "AKIA123", "secret_key": "s3cr3t", "prefix": "cloudstrype"}


def test_every_kind_is_described_for_the_api():
    # (the array's `member` kind appears too once the array package is loaded)
    assert set(KINDS) - {"member"} == {"local", "s3", "dropbox", "gdrive", "onedrive", "box"}
    described = json.loads(json.dumps([kind.describe() for kind in KINDS.values()]))
    by_kind = {entry["kind"]: entry for entry in described}
    assert by_kind["s3"]["auth"] == "keys"
    assert by_kind["box"]["auth"] == "oauth"
    assert by_kind["gdrive"]["label"] == "Google Drive"
    secrets = {f["name"] for f in by_kind["s3"]["fields"] if f["secret"]}
    assert secrets == {"secret_key"}
    assert [f["name"] for f in by_kind["dropbox"]["fields"] if f["secret"]] == ["token"]


def test_available_kinds_follow_the_settings(monkeypatch):
    for name in ("DROPBOX", "GDRIVE", "ONEDRIVE", "BOX"):
        monkeypatch.setenv(f"CLOUDSTRYPE_{name}_CLIENT_ID", "")
    monkeypatch.setenv("CLOUDSTRYPE_GDRIVE_CLIENT_ID", "an-app")
    monkeypatch.setenv("CLOUDSTRYPE_LOCAL_STORAGE_ENABLED", "false")
    reset_settings_cache()
    try:
        assert [k.kind for k in available_kinds()] == ["s3", "gdrive"]
        monkeypatch.setenv("CLOUDSTRYPE_LOCAL_STORAGE_ENABLED", "true")
        reset_settings_cache()
        assert [k.kind for k in available_kinds()] == ["local", "s3", "gdrive"]
    finally:
        monkeypatch.undo()
        reset_settings_cache()


def test_a_kind_registered_from_another_package_opens_for_its_storage(monkeypatch):
    # The array registers `member` itself (backends/ imports nothing from array/).
    from cloudstrype.array.backend import MemberBackend
    from cloudstrype.backends.registry import Target
    assert KINDS["member"].auth == "member"
    backend = open_backend("member", {"member_id": "m-12345678"},
                           target=Target(owner="u-1", storage_id="mb-m-12345678", name="desk"))
    assert isinstance(backend, MemberBackend)
    assert (backend.owner, backend.member_id, backend.name) == ("u-1", "m-12345678", "desk")
    with pytest.raises(ConfigError, match="unknown field 'path'"):
        validate_config("member", {"member_id": "m-1", "path": "/x"})
    # a member joins by connecting: it is never offered as a kind to add
    monkeypatch.setenv("CLOUDSTRYPE_LOCAL_STORAGE_ENABLED", "true")
    reset_settings_cache()
    try:
        assert "member" not in [k.kind for k in available_kinds()]
    finally:
        monkeypatch.undo()
        reset_settings_cache()


def test_s3_config_is_cleaned():
    cleaned = validate_config("s3", {**S3_CONFIG, "endpoint_url": " http://127.0.0.1:9000/ ",
                                     "prefix": "/cloudstrype/", "capacity": "1000"})
    assert cleaned == {**S3_CONFIG, "prefix": "cloudstrype/", "capacity": 1000}


def test_s3_optional_fields_get_defaults():
    cleaned = validate_config("s3", {"bucket": "b-1", "access_key": "k", "secret_key": "s"})
    assert cleaned["endpoint_url"] is None
    assert cleaned["region"] == "us-east-1"
    assert cleaned["prefix"] == ""
    assert cleaned["capacity"] is None


@pytest.mark.parametrize("kind, config, field, message", [
    ("s3", {**S3_CONFIG, "bucket": ""}, "bucket", "bucket .* is required"),
    ("s3", {k: v for k, v in S3_CONFIG.items() if k != "secret_key"}, "secret_key", "required"),
    ("s3", {**S3_CONFIG, "bucket": "bad bucket!"}, "bucket", "not valid"),
    ("s3", {**S3_CONFIG, "endpoint_url": "ftp://example.org"}, "endpoint_url", "http"),
    ("s3", {**S3_CONFIG, "endpoint_url": "not a url"}, "endpoint_url", "http"),
    ("s3", {**S3_CONFIG, "region": "Europe West"}, "region", "region"),
    ("s3", {**S3_CONFIG, "prefix": "a/../b"}, "prefix", "prefix"),
    ("s3", {**S3_CONFIG, "capacity": -5}, "capacity", "from 1 to"),
    ("s3", {**S3_CONFIG, "capacity": True}, "capacity", "from 1 to"),
    ("s3", {**S3_CONFIG, "capacity": "lots"}, "capacity", "from 1 to"),
    ("s3", {**S3_CONFIG, "access_key": 42}, "access_key", "text"),
    # Into the signed headers: a line break echoed the whole signed header (operator sweep).
    ("s3", {**S3_CONFIG, "access_key": "A\r\nX: y"}, "access_key", "printable ASCII"),
    ("s3", {**S3_CONFIG, "access_key": "A B"}, "access_key", "no spaces"),
    ("s3", {**S3_CONFIG, "access_key": "A" * 257}, "access_key", "1 to 256"),
    ("s3", {**S3_CONFIG, "secret_key": "s3cr\x00t"}, "secret_key", "^s3: secret_key is not"),
    ("s3", {**S3_CONFIG, "bukket": "x"}, "bukket", "unknown field 'bukket'"),
    ("local", {"path": "relative/dir"}, "path", "absolute"),
    ("local", {}, "path", "path .* is required"),
    ("local", {"path": "/srv/shares", "capacity": 0}, "capacity", "from 1 to"),
    ("dropbox", {}, "token", "required"),
    ("dropbox", {"token": "abc"}, "token", "access_token"),
    ("box", {"token": {"refresh_token": "r"}}, "token", "access_token"),
    ("ftp", {}, "kind", "unknown storage kind 'ftp'"),
])
def test_invalid_configs_name_the_field_to_fix(kind, config, field, message):
    with pytest.raises(ConfigError, match=message) as raised:
        validate_config(kind, config)
    assert raised.value.field == field
    assert isinstance(raised.value, ValueError)


def test_a_config_must_be_an_object():
    with pytest.raises(ConfigError, match="object"):
        validate_config("local", ["/srv"])


def test_local_config_is_cleaned(tmp_path):
    cleaned = validate_config("local", {"path": f"{tmp_path}/a/../shares/", "capacity": 4096})
    assert cleaned == {"path": str(tmp_path / "shares"), "capacity": 4096}


def test_open_backend_builds_a_local_backend(tmp_path):
    backend = open_backend("local", {"path": str(tmp_path / "shares"), "capacity": 10_000})

    assert isinstance(backend, LocalBackend)
    backend.put("k", b"data")
    assert backend.get("k") == b"data"
    assert backend.usage().capacity == 10_000


def test_open_backend_builds_an_s3_backend_with_the_cleaned_config():
    backend = open_backend("s3", {**S3_CONFIG, "prefix": "p", "capacity": 77})

    assert isinstance(backend, S3Backend)
    assert (backend.endpoint_url, backend.bucket, backend.prefix, backend.capacity_bytes) \
        == ("http://127.0.0.1:9000", "shares", "p/", 77)


@pytest.mark.parametrize("kind, backend_class", [
    ("dropbox", DropboxBackend), ("gdrive", GoogleDriveBackend),
    ("onedrive", OneDriveBackend), ("box", BoxBackend),
])
def test_open_backend_builds_each_oauth_backend(kind, backend_class, request, fast_retry):
    fake = request.getfixturevalue(f"{kind}_fake")

    backend = open_backend(kind, {"token": fake.issue_token()}, retry=fast_retry)

    assert isinstance(backend, backend_class)
    assert backend.kind == kind
    assert probe(backend).capacity == fake.quota_bytes


def test_open_backend_refuses_an_invalid_config():
    with pytest.raises(ConfigError):
        open_backend("s3", {"bucket": "b"})


# --- probe ---------------------------------------------------------------------------------------

def test_probe_writes_reads_deletes_and_reports_usage(tmp_path):
    backend = LocalBackend(tmp_path / "shares", capacity_bytes=1_000_000)

    usage = probe(backend)

    assert usage == Usage(used=0, capacity=1_000_000)
    assert list((tmp_path / "shares").iterdir()) == []   # the test object is gone


def test_probe_reports_an_auth_failure_with_the_failing_step(fake, fast_retry):
    backend = open_backend(fake.name, {"token": fake.issue_token()}, retry=fast_retry)
    fake.revoke_grants()

    with pytest.raises(BackendAuthError, match="storage check failed while writing"):
        probe(backend)


class CorruptingBackend(Backend):
    """Stores everything, but reads back something else."""
    kind = "test"

    def __init__(self):
        self.objects, self.deleted = {}, []

    def put(self, key, data):
        self.objects[key] = data

    def get(self, key):
        return self.objects[key][::-1] + b"!"

    def delete(self, key):
        self.deleted.append(key)
        self.objects.pop(key, None)

    def exists(self, key):
        return key in self.objects

    def usage(self):
        return Usage(used=0, capacity=None)


def test_probe_notices_data_that_reads_back_different_and_still_tidies_up():
    backend = CorruptingBackend()

    with pytest.raises(BackendError, match="differs"):
        probe(backend)
    assert backend.objects == {}
    assert len(backend.deleted) == 1


class LosingBackend(CorruptingBackend):
    """Accepts writes and then cannot find them."""

    def get(self, key):
        raise ShareNotFound(f"no {key}")


def test_probe_keeps_the_error_type_and_says_which_step_failed():
    with pytest.raises(ShareNotFound,
                       match="while reading the test object back: no cloudstrype-probe-"):
        probe(LosingBackend())


def test_a_function_that_never_imported_the_array_opens_member_storages():
    """Each function is its own Lambda in AWS: the chunk function must open member storages
    without having imported the array package itself."""
    import subprocess
    import sys
    code = ("import sys\n"
            "from cloudstrype.backends import registry\n"
            "assert 'cloudstrype.array.backend' not in sys.modules\n"
            "assert 'member' not in registry.KINDS\n"
            "registry._load('member')\n"
            "assert 'member' in registry.KINDS\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
