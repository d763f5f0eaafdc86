"""The array's tables: members, their WebSocket connections, and requests awaiting an answer.

A member is also a storage (`StorageRecord` of kind `member`, id `mb-<member id>`), so placement,
drain, usage and health treat it like any other backend. These tables hold what only members have:
which connection reaches a member now, when it was last heard from, and the answers to requests
sent to it. An answer arrives as a separate `$default` invocation (in AWS another Lambda), so it
is written to `MemberRequest` and the side that sent the request polls that item.
"""
from __future__ import annotations

from pynamodb.attributes import (JSONAttribute, NumberAttribute, UnicodeAttribute)
from pynamodb.models import Model

from cloudstrype import db


@db.register
class MemberRecord(Model):
    """One member program of one user. `connection_id` is set while it is connected."""

    class Meta(db.BaseMeta):
        table_name = db.table_name("members")

    owner = UnicodeAttribute(hash_key=True)
    member_id = UnicodeAttribute(range_key=True)
    storage_id = UnicodeAttribute()
    name = UnicodeAttribute()
    connection_id = UnicodeAttribute(null=True)
    connected_at = NumberAttribute(default=0)
    last_seen = NumberAttribute(default=0)
    version = UnicodeAttribute(null=True)           # the member program's version
    protocol = NumberAttribute(default=1)
    created = NumberAttribute(default=0)


@db.register
class ConnectionRecord(Model):
    """Who is on a WebSocket connection. `$default` events carry only the connection id, so the
    identity proven at `$connect` is kept here."""

    class Meta(db.BaseMeta):
        table_name = db.table_name("member-connections")
        ttl_attribute = "expires_at"

    connection_id = UnicodeAttribute(hash_key=True)
    owner = UnicodeAttribute()
    username = UnicodeAttribute(null=True)
    member_id = UnicodeAttribute(null=True)          # set by $connect (?member_id=) or hello
    connected_at = NumberAttribute()
    # API Gateway closes a connection after 2 hours at most; the row outlives it a little.
    expires_at = NumberAttribute()


@db.register
class MemberRequest(Model):
    """A request sent to a member and, once it answers, its result."""

    class Meta(db.BaseMeta):
        table_name = db.table_name("member-requests")
        ttl_attribute = "expires_at"

    request_id = UnicodeAttribute(hash_key=True)
    owner = UnicodeAttribute()
    member_id = UnicodeAttribute()
    op = UnicodeAttribute()
    key = UnicodeAttribute()
    status = UnicodeAttribute(default="pending")     # pending | done
    result = JSONAttribute(null=True)
    created = NumberAttribute()
    expires_at = NumberAttribute()
