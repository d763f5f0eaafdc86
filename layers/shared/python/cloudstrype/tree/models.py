"""The file tree in DynamoDB.

- `nodes` (owner, node_id): a file or directory with its metadata; a file's current version is
  denormalized onto it.
- `entries` (owner#parent_id, name): the directory index. A name is unique in its directory
  because entries are written with `attribute_not_exists`; listing a directory is one paginated
  query, sorted by name, with what a listing shows copied onto the entry.
- `versions` (owner, node_id#version_id): each upload of a file. A version's chunks are named
  `<version_id>-<n>` (n = 0, 1, ...), so a version record stays small whatever the file's size.
- `uploads` / `upload-parts`: upload sessions for files larger than one request (with TTL).
- `profiles` (owner): a user's defaults.
"""
from __future__ import annotations

from pynamodb.attributes import (BooleanAttribute, JSONAttribute, NumberAttribute,
                                 UnicodeAttribute, UTCDateTimeAttribute, VersionAttribute)
from pynamodb.models import Model

from cloudstrype import db

DIRECTORY, FILE = "directory", "file"
ROOT = "root"


@db.register
class NodeRecord(Model):
    class Meta(db.BaseMeta):
        table_name = db.table_name("nodes")

    owner = UnicodeAttribute(hash_key=True)
    node_id = UnicodeAttribute(range_key=True)
    type = UnicodeAttribute()
    name = UnicodeAttribute()
    parent_id = UnicodeAttribute(null=True)          # None for the root
    created = UTCDateTimeAttribute()
    modified = UTCDateTimeAttribute()
    attributes = JSONAttribute(default=dict)
    # Files: the current version.
    version_id = UnicodeAttribute(null=True)
    size = NumberAttribute(default=0)
    content_type = UnicodeAttribute(null=True)
    sha256 = UnicodeAttribute(null=True)
    etag = UnicodeAttribute(null=True)
    durability = UnicodeAttribute(null=True)
    encryption = UnicodeAttribute(null=True)
    revision = VersionAttribute()


@db.register
class EntryRecord(Model):
    class Meta(db.BaseMeta):
        table_name = db.table_name("entries")

    parent_ref = UnicodeAttribute(hash_key=True)     # "<owner>#<parent node id>"
    name = UnicodeAttribute(range_key=True)
    node_id = UnicodeAttribute()
    type = UnicodeAttribute()
    size = NumberAttribute(default=0)
    modified = UTCDateTimeAttribute()


@db.register
class VersionRecord(Model):
    class Meta(db.BaseMeta):
        table_name = db.table_name("versions")

    # One partition per file, not per user: listing a file's versions reads only that file's
    # items, and a user's files spread over DynamoDB's partitions.
    file_ref = UnicodeAttribute(hash_key=True)       # "<owner>#<node id>", see version_file_ref
    version_id = UnicodeAttribute(range_key=True)
    size = NumberAttribute()
    chunk_size = NumberAttribute()
    chunk_count = NumberAttribute()
    sha256 = UnicodeAttribute(null=True)
    etag = UnicodeAttribute()
    content_type = UnicodeAttribute()
    durability = UnicodeAttribute()
    encryption = UnicodeAttribute()
    created = UTCDateTimeAttribute()


def version_file_ref(owner: str, node_id: str) -> str:
    return f"{owner}#{node_id}"


@db.register
class UploadRecord(Model):
    class Meta(db.BaseMeta):
        table_name = db.table_name("uploads")
        # DynamoDB's TTL is only the backstop, well after `expires_at`: the scheduled sweep must
        # see an expired session first, to free the chunks of its parts.
        ttl_attribute = "purge_at"

    owner = UnicodeAttribute(hash_key=True)
    upload_id = UnicodeAttribute(range_key=True)
    directory = UnicodeAttribute()
    name = UnicodeAttribute()
    size = NumberAttribute()
    chunk_size = NumberAttribute()
    content_type = UnicodeAttribute()
    durability = UnicodeAttribute()
    encryption = UnicodeAttribute()
    sha256 = UnicodeAttribute(null=True)             # as declared by the client, if it did
    version_id = UnicodeAttribute()
    created = UTCDateTimeAttribute()
    expires_at = NumberAttribute()
    purge_at = NumberAttribute(null=True)
    committed = BooleanAttribute(default=False)


@db.register
class UploadPart(Model):
    class Meta(db.BaseMeta):
        table_name = db.table_name("upload-parts")
        ttl_attribute = "purge_at"                   # as the session's

    upload_ref = UnicodeAttribute(hash_key=True)     # "<owner>#<upload id>"
    part = NumberAttribute(range_key=True)
    size = NumberAttribute()
    sha256 = UnicodeAttribute()
    expires_at = NumberAttribute()
    purge_at = NumberAttribute(null=True)


@db.register
class Profile(Model):
    class Meta(db.BaseMeta):
        table_name = db.table_name("profiles")

    owner = UnicodeAttribute(hash_key=True)
    default_durability = UnicodeAttribute(null=True)
    default_encryption = UnicodeAttribute(null=True)
