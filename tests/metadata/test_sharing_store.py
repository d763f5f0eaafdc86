"""SharingStore conformance: shares, links and link rate counters, on each engine."""
from __future__ import annotations

import threading
import uuid

import pytest
from cloudstrype.sharing.store import (
    GROUP,
    READ,
    USER,
    WRITE,
    Link,
    Share,
    SharingStore,
)


@pytest.fixture
def store(engine) -> SharingStore:
    return SharingStore(engine)


def ident(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def share(owner: str, node_id: str, kind: str, grantee: str, level: str = READ) -> Share:
    return Share(owner=owner, owner_name="alice", node_id=node_id,
                 share_id=uuid.uuid4().hex[:24], grantee_kind=kind, grantee=grantee,
                 grantee_name=grantee, level=level, created=1_700_000_000,
                 modified=1_700_000_000)


def test_a_share_is_read_by_node_by_id_by_grantee_and_by_owner(store):
    owner, node, bob = ident("o"), uuid.uuid4().hex, ident("u")
    made = store.put_share(share(owner, node, USER, bob, WRITE))
    group = store.put_share(share(owner, node, GROUP, "team"))
    assert {s.share_id for s in store.shares_of_node(owner, node)} == \
        {made.share_id, group.share_id}
    assert store.get_share(made.share_id) == made
    assert [s.share_id for s in store.shares_for(USER, bob)] == [made.share_id]
    assert [s.share_id for s in store.shares_for(GROUP, "team")] == [group.share_id]
    assert {s.share_id for s in store.shares_by_owner(owner)} == {made.share_id, group.share_id}
    # Nothing leaks to another owner's node of the same id, or another grantee.
    assert store.shares_of_node(ident("o"), node) == []
    assert store.shares_for(USER, ident("u")) == []


def test_sharing_again_with_the_same_grantee_changes_the_level_and_keeps_the_id(store):
    owner, node, bob = ident("o"), uuid.uuid4().hex, ident("u")
    first = store.put_share(share(owner, node, USER, bob, READ))
    again = store.put_share(share(owner, node, USER, bob, WRITE))
    assert again.share_id == first.share_id and again.level == WRITE
    assert [s.level for s in store.shares_of_node(owner, node)] == [WRITE]


def test_level_changes_and_revokes_are_seen_at_once(store):
    owner, node, bob = ident("o"), uuid.uuid4().hex, ident("u")
    made = store.put_share(share(owner, node, USER, bob))
    assert store.set_level(made, WRITE, 1_700_000_100).level == WRITE
    assert store.get_share(made.share_id).level == WRITE
    assert store.delete_share(made) is True
    assert store.get_share(made.share_id) is None
    assert store.shares_of_node(owner, node) == []
    assert store.delete_share(made) is False
    with pytest.raises(KeyError):
        store.set_level(made, READ, 1_700_000_200)


def test_a_stale_share_cannot_revoke_or_change_its_successor(store):
    owner, node, bob = ident("o"), uuid.uuid4().hex, ident("u")
    old = store.put_share(share(owner, node, USER, bob))
    store.delete_share(old)
    new = store.put_share(share(owner, node, USER, bob))
    assert new.share_id != old.share_id
    assert store.delete_share(old) is False
    with pytest.raises(KeyError):
        store.set_level(old, WRITE, 1)
    assert store.get_share(new.share_id) == new
    assert store.get_share(old.share_id) is None


def test_links_are_kept_by_hash_listed_by_owner_and_revoked_by_their_owner_only(store):
    alice, mallory = ident("o"), ident("o")
    link = Link(link_id=uuid.uuid4().hex * 2, owner=alice, node_id=uuid.uuid4().hex,
                created=1_700_000_000, password_hash="$argon2id$...", expires_at=1_800_000_000)
    plain = Link(link_id=uuid.uuid4().hex * 2, owner=alice, node_id=link.node_id,
                 created=1_700_000_001)
    store.create_link(link)
    store.create_link(plain)
    assert store.get_link(link.link_id) == link
    assert store.get_link(plain.link_id) == plain
    assert [x.link_id for x in store.links_by_owner(alice)] == [link.link_id, plain.link_id]
    assert store.links_by_owner(mallory) == []
    assert store.revoke_link(mallory, link.link_id) is False
    assert store.get_link(link.link_id).revoked is False
    assert store.revoke_link(alice, link.link_id) is True
    assert store.get_link(link.link_id).revoked is True
    assert store.revoke_link(alice, uuid.uuid4().hex * 2) is False


def test_rate_counters_never_let_concurrent_requests_past_the_limit(store):
    bucket = ident("link")
    results: list[bool] = []
    lock = threading.Lock()

    def hit():
        allowed = store.hit(bucket, 5, 4_000_000_000)
        with lock:
            results.append(allowed)

    threads = [threading.Thread(target=hit) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 5 and results.count(False) == 7
    assert store.hit(ident("link"), 1, 4_000_000_000) is True      # another bucket: its own
    assert store.hit(bucket, 5, 4_000_000_000) is False
