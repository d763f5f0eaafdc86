"""The table of users' keys, each stored only in its protected (wrapped) form."""
from __future__ import annotations

import time
from dataclasses import dataclass

from cloudstrype.metadata import schema
from cloudstrype.metadata.engine import Condition, ConditionFailed, Engine, get_engine

USER_KEYS = schema.table(
    "user-keys", hash_key="owner", owner_module=__name__,
    fields={"owner": schema.STR, "encrypted_key": schema.BYTES,
            # Which protector wrapped it ("kms" / "local"), so a mismatch is a clear error.
            "protector": schema.STR, "created": schema.INT})


@dataclass(frozen=True)
class UserKey:
    owner: str
    encrypted_key: bytes
    protector: str = "kms"          # rows written before the field existed were all KMS
    created: float = 0.0


class UserKeyStore:
    def __init__(self, engine: Engine | None = None):
        self._engine = engine

    @property
    def engine(self) -> Engine:
        return self._engine or get_engine()

    def get(self, owner: str) -> UserKey | None:
        item = self.engine.get(USER_KEYS, {"owner": owner})
        if item is None or item["owner"] != owner:
            return None
        return UserKey(owner=item["owner"], encrypted_key=bytes(item["encrypted_key"]),
                       protector=item.get("protector", "kms"), created=item.get("created", 0))

    def holds_keys(self) -> bool:
        """Whether any user's key is stored (opened only by what wrapped it)."""
        return bool(self.engine.scan(USER_KEYS, limit=1).items)

    def create(self, owner: str, encrypted_key: bytes, protector: str) -> UserKey:
        """Store the user's key unless one exists; returns the key that is stored (the other
        one when a concurrent first request won the race)."""
        key = UserKey(owner, encrypted_key, protector, int(time.time()))
        try:
            self.engine.put(USER_KEYS, {"owner": owner, "encrypted_key": encrypted_key,
                                        "protector": protector, "created": key.created},
                            condition=Condition.absent())
            return key
        except ConditionFailed:
            existing = self.get(owner)
            if existing is None:        # cannot happen: the condition failed on an item
                raise
            return existing
