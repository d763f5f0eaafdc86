"""A user with three local directories and two S3 buckets, the S3 side an independent moto
server in the test process (as a real S3-compatible provider would be)."""
from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.support import free_port, register_and_login

S3_KEYS = {"access_key": "AKIAEXAMPLEKEY", "secret_key": "s3cr3t-never-shown-anywhere"}


@pytest.fixture(scope="session")
def external_s3():
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="y")
    yield endpoint, client
    server.stop()


class Storages:
    def __init__(self, user, tmp: Path, s3_endpoint: str, s3_client):
        self.user, self.tmp, self.s3_endpoint, self.s3 = user, tmp, s3_endpoint, s3_client
        self.records: dict[str, dict] = {}

    def add_local(self, name: str) -> dict:
        response = self.user.api.post("/api/cloud/storages", json={
            "kind": "local", "name": name, "config": {"path": str(self.tmp / name)}})
        assert response.status_code == 201, response.text
        self.records[response.json()["id"]] = response.json()
        return response.json()

    def add_s3(self, name: str, bucket: str) -> dict:
        self.s3.create_bucket(Bucket=bucket)
        response = self.user.api.post("/api/cloud/storages", json={
            "kind": "s3", "name": name, "config": {"endpoint_url": self.s3_endpoint,
                                                   "region": "us-east-1", "bucket": bucket,
                                                   **S3_KEYS}})
        assert response.status_code == 201, response.text
        self.records[response.json()["id"]] = response.json()
        return response.json()

    # -- reaching shares behind the API's back, as a failing disk or provider would ---------
    def share_objects(self, chunk_id: str, index: int, storage_id: str) -> list:
        """Files or (bucket, key) pairs that hold share `index` of `chunk_id`."""
        record = self.records[storage_id]
        marker = f".{chunk_id.lower()}.{index}."
        if record["kind"] == "local":
            return [p for p in Path(record["settings"]["path"]).rglob("*")
                    if p.is_file() and marker in p.name]
        bucket = record["settings"]["bucket"]
        listed = self.s3.list_objects_v2(Bucket=bucket).get("Contents", [])
        return [(bucket, o["Key"]) for o in listed if marker in o["Key"]]

    def destroy(self, chunk_id: str, index: int, storage_id: str) -> None:
        found = self.share_objects(chunk_id, index, storage_id)
        assert found, f"share {index} of {chunk_id} not found on {storage_id}"
        for item in found:
            if isinstance(item, Path):
                item.unlink()
            else:
                self.s3.delete_object(Bucket=item[0], Key=item[1])

    def corrupt(self, chunk_id: str, index: int, storage_id: str, offset: int = 0) -> None:
        found = self.share_objects(chunk_id, index, storage_id)
        assert found, f"share {index} of {chunk_id} not found on {storage_id}"
        for item in found:
            if isinstance(item, Path):
                data = bytearray(item.read_bytes())
                data[offset % max(1, len(data))] ^= 0xFF
                item.write_bytes(bytes(data))
            else:
                data = bytearray(self.s3.get_object(Bucket=item[0], Key=item[1])["Body"].read())
                data[offset % max(1, len(data))] ^= 0xFF
                self.s3.put_object(Bucket=item[0], Key=item[1], Body=bytes(data))


@pytest.fixture(scope="module")
def five_storages(api, tmp_path_factory, external_s3):
    """Three local directories and two S3 buckets for one user."""
    user = register_and_login(api)
    endpoint, client = external_s3
    storages = Storages(user, tmp_path_factory.mktemp("disks"), endpoint, client)
    for n in range(3):
        storages.add_local(f"disk{n}")
    for n in range(2):
        storages.add_s3(f"bucket{n}", f"bucket-{user.username}-{n}")
    return storages
