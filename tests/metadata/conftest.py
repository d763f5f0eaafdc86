"""The engines every store conformance suite runs against: SQLite on a real file (its tables as
made now, and clustered by key as data directories written before keep them), and DynamoDB
through pynamodb against moto in-process (the AWS stand-in, as a test tool), with the
aws-emulated stack's speed-ups to it (infra/local/moto_speedups.py), so that the suite holds the
stand-in the stack serves to DynamoDB's contract too."""
from __future__ import annotations

import uuid

import pytest

ENGINES = ("sqlite", "sqlite_clustered", "dynamodb")


@pytest.fixture(scope="session")
def _moto(tmp_path_factory):
    import os

    from moto import mock_aws
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                            "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1")
    os.environ.pop("AWS_ENDPOINT_URL", None)
    # moto answers requests from several threads at once without a lock, so two racing
    # transactions could both pass their conditions; DynamoDB serializes them. One request at a
    # time through moto's single entry point, as the service behaves.
    import threading

    from moto.core.botocore_stubber import BotocoreStubber
    lock, answer = threading.Lock(), BotocoreStubber.__call__

    def serialized(self, *args, **kwargs):
        with lock:
            return answer(self, *args, **kwargs)
    BotocoreStubber.__call__ = serialized
    from infra.local import moto_speedups
    moto_speedups.install()
    try:
        with mock_aws():
            yield
    finally:
        BotocoreStubber.__call__ = answer
        moto_speedups.uninstall()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def make_engine(kind: str, tmp_path, request):
    """A fresh, empty engine of one kind with every declared table."""
    from cloudstrype.metadata import schema
    if kind in ("sqlite", "sqlite_clustered"):
        from cloudstrype.metadata import sqlite
        if kind == "sqlite_clustered":
            request.getfixturevalue("monkeypatch").setattr(sqlite, "_new_table",
                                                           sqlite._new_clustered_table)
        engine = sqlite.SqliteEngine(str(tmp_path / f"metadata-{uuid.uuid4().hex[:6]}.db"))
    else:
        request.getfixturevalue("_moto")
        from cloudstrype.metadata.dynamodb import DynamoEngine
        engine = DynamoEngine(prefix=f"t{uuid.uuid4().hex[:8]}-", region="us-east-1")
    engine.create_tables(schema.all_tables())
    return engine


@pytest.fixture(params=ENGINES)
def engine(request, tmp_path):
    """Each engine in turn, installed as the process's engine for the domain stores."""
    from cloudstrype.metadata.engine import set_engine
    made = make_engine(request.param, tmp_path, request)
    set_engine(made)
    yield made
    set_engine(None)
    made.close()
