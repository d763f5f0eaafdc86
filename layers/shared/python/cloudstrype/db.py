"""DynamoDB through pynamodb: the base every table model derives from, and the table registry.

Table names carry the deployment's prefix; the CDK stack and the local stack create exactly the
tables registered here, with the keys, indexes and TTL attribute the models declare.
"""
from __future__ import annotations

import functools
import os

from pynamodb.connection import Connection
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

_PREFIX = os.environ.get("CLOUDSTRYPE_TABLE_PREFIX", "cloudstrype-")
_REGION = os.environ.get("AWS_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))

TABLES: list[type[Model]] = []


def table_name(short: str) -> str:
    return _PREFIX + short


def register(model: type[Model]) -> type[Model]:
    """Class decorator: add a model to the tables every stack creates."""
    TABLES.append(model)
    return model


class BaseMeta:
    region = _REGION
    # The local stack reaches moto through AWS_ENDPOINT_URL; in AWS this stays unset.
    host = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL")
    billing_mode = "PAY_PER_REQUEST"
    # A TTL attribute name, when the table expires items (OAuth states, upload sessions).
    ttl_attribute: str | None = None


def all_tables() -> list[type[Model]]:
    # Importing the domain modules registers their tables.
    from cloudstrype import table_modules  # noqa: F401
    return list(TABLES)


@functools.cache
def _transaction_connection() -> Connection:
    # One per process, like each model's own: a new Connection means a new botocore session and
    # client, which costs 50-500 ms (endpoint rules are parsed again) on every request.
    return Connection(region=BaseMeta.region, host=BaseMeta.host)


def transaction() -> TransactWrite:
    """A DynamoDB transaction over the shared connection."""
    return TransactWrite(connection=_transaction_connection())
