"""Cloud service: connecting storages, and raw blobs on the user's clouds. Routes only."""
from cloudstrype import errors, storages
from cloudstrype.api.service import PUBLIC, Reply, ServiceApp
from cloudstrype.backends import registry
from cloudstrype.pipeline import store
from cloudstrype.storages import oauth_connect as connect
from cloudstrype.storages.store import MEMBER_PREFIX

app = ServiceApp("cloud", "/api/cloud")

# Raw blobs here are stored as given (the caller encrypted them), copied to N storages: cloud
# storages only (the kinds a user adds here), never array members.
CLOUD_KINDS = frozenset(k for k, info in registry.KINDS.items() if info.auth in registry.ADDABLE)


@app.endpoint("/providers")
def providers(call):
    return {"providers": [kind.describe() for kind in registry.available_kinds()]}


@app.endpoint("/storages", ["POST"])
def add_storage(call):
    config = call.field("config", dict, required=False, default={})
    record = storages.add_storage(call.principal.user_id, call.field("kind"),
                                  call.field("name", required=False), config)
    return Reply(record.public(), status=201)


@app.endpoint("/storages")
def list_storages(call):
    records = [storages.refresh_usage(r) for r in storages.list_storages(call.principal.user_id)]
    return {"storages": [r.public() for r in records]}


@app.endpoint("/storages/{storage_id}")
def get_storage(call, storage_id):
    return storages.get_storage(call.principal.user_id, storage_id).public()


@app.endpoint("/storages/{storage_id}", ["DELETE"])
def delete_storage(call, storage_id):
    owner = call.principal.user_id
    if storage_id.startswith(MEMBER_PREFIX):
        # A member's storage goes with the member: its program is told and stops (else it
        # would register itself again at its next hello).
        from cloudstrype.array import service as array_service
        try:
            array_service.delete_member(owner, storage_id[len(MEMBER_PREFIX):])
            return Reply(status=204)
        except errors.NotFound as exc:
            if exc.code != "member_not_found":
                raise
            # No member (its first step, before anything changes): the storage alone.
    held = len(store.shares_on(owner, storage_id))
    if not held:
        store.delete_leftovers_on(owner, storage_id)
    storages.delete_storage(owner, storage_id, held)
    return Reply(status=204)


@app.endpoint("/storages/{storage_id}/drain", ["POST"])
def drain_storage(call, storage_id):
    # continue=1: the next round of a drain under way, not a new one (a drain stopped since
    # stays stopped; the answer's status says so).
    result = store.drain_storage(call.principal.user_id, storage_id,
                                 start=not call.query_int("continue", 0, minimum=0, maximum=1))
    return Reply(result, status=200 if result["remaining"] == 0 else 202)


@app.endpoint("/storages/{storage_id}/drain", ["DELETE"])
def stop_draining(call, storage_id):
    return storages.stop_draining(call.principal.user_id, storage_id).public()


@app.endpoint("/oauth/{provider}/authorize")
def oauth_authorize(call, provider):
    return connect.start(call.principal.user_id, provider, call.query.get("name"),
                         call.query.get("return_to"))


# The provider redirects the browser here: no bearer token. It holds the grant and sends the
# browser to the web UI with a finish code; nothing is connected until /finish.
@app.endpoint("/oauth/{provider}/callback", auth=PUBLIC)
def oauth_callback(call, provider):
    location = connect.callback(provider, call.query.get("code"), call.query.get("state"),
                                call.query.get("error"))
    return Reply(status=302, headers={"Location": location})


@app.endpoint("/oauth/{provider}/finish", ["POST"])
def oauth_finish(call, provider):
    record, reconnected = connect.finish(call.principal.user_id, provider,
                                         call.field("state"), call.field("code"))
    if reconnected:
        return Reply({**record.public(), "reconnected": True}, status=200)
    return Reply(record.public(), status=201)


@app.endpoint("/{chunk_id}", ["POST"])
def put_blob(call, chunk_id):
    replicas = call.query_int("replicas", 0, minimum=1, maximum=16) or None
    stored = store.put_chunk(call.principal.user_id, call.raw_body, encryption="none",
                             durability=f"raid1({replicas})" if replicas else None,
                             chunk_id=store.check_named_chunk_id(chunk_id),
                             kinds=CLOUD_KINDS)
    return Reply(stored.public(), status=201)


@app.endpoint("/{chunk_id}")
def get_blob(call, chunk_id):
    return Reply(data=store.get_chunk(call.principal.user_id, chunk_id),
                 content_type="application/octet-stream")


@app.endpoint("/{chunk_id}", ["DELETE"])
def delete_blob(call, chunk_id):
    store.delete_named_chunk(call.principal.user_id, chunk_id)
    return Reply(status=204)
