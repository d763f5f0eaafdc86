"""Chunk service: the pipeline over HTTP — encrypt, replicate or erasure-code, place, read back,
repair. Routes only; the work is in cloudstrype.pipeline."""
from chalice import Rate
from cloudstrype import errors
from cloudstrype.api.body import take_field
from cloudstrype.api.service import Reply, ServiceApp
from cloudstrype.pipeline import store

app = ServiceApp("chunk", "/api/chunk")


@app.endpoint("", ["POST"])
def create_chunk(call):
    fields, data = {}, None
    for part in call.multipart():
        if part.name in ("encryption", "durability"):
            fields[part.name] = take_field(fields, part).strip()
        elif part.name in ("file", None, "") or part.filename is not None:
            if data is not None:
                raise errors.BadRequest("Send one data part (named 'file').",
                                        code="invalid_multipart")
            data = part.data
        else:
            raise errors.BadRequest(f"Unknown form field '{part.name}'; expected encryption, "
                                    f"durability and file.", code="invalid_multipart")
    if data is None:
        raise errors.BadRequest("The data part is missing: send the chunk as a form part named "
                                "'file'.", code="missing_field", details={"field": "file"})
    stored = store.put_chunk(call.principal.user_id, data, fields.get("encryption") or None,
                             fields.get("durability") or None)
    return Reply(stored.public(), status=201)


@app.endpoint("/{chunk_id}")
def read_chunk(call, chunk_id):
    return Reply(data=store.get_chunk(call.principal.user_id, chunk_id),
                 content_type="application/octet-stream")


@app.endpoint("/{chunk_id}/info")
def chunk_info(call, chunk_id):
    return store.chunk_info(call.principal.user_id, chunk_id)


@app.endpoint("/{chunk_id}", ["DELETE"])
def delete_chunk(call, chunk_id):
    store.delete_named_chunk(call.principal.user_id, chunk_id)
    return Reply(status=204)


@app.endpoint("/{chunk_id}/repair", ["POST"])
def repair_chunk(call, chunk_id):
    # Asked by the chunk's owner ("Repair now"): shares on storages out of reach are
    # re-created elsewhere too (the scrub waits for those storages instead).
    return store.repair_chunk(call.principal.user_id, chunk_id, unreachable_too=True)


# The scrub: every hour in AWS (an EventBridge rule); the local stack runs it on a timer too.
@app.schedule(Rate(1, unit=Rate.HOURS))
def scrub(event):
    return store.scrub(budget_seconds=600)
