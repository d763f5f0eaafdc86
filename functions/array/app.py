"""Array service: the members' WebSocket API and /api/array/ (routes only; the work is in
cloudstrype.array)."""
from cloudstrype.api.service import Reply, ServiceApp
from cloudstrype.array import service, socket

app = ServiceApp("array", "/api/array")
app.experimental_feature_flags.update(["WEBSOCKETS"])


@app.on_ws_connect()
def connect(event):
    return socket.on_connect(event.to_dict(), event.connection_id)


@app.on_ws_message()
def message(event):
    socket.on_message(event.connection_id, event.body)


@app.on_ws_disconnect()
def disconnect(event):
    socket.on_disconnect(event.connection_id)
    return {"statusCode": 200}


@app.endpoint("/members")
def list_members(call):
    return {"members": service.list_members(call.principal.user_id)}


@app.endpoint("/members/{member_id}")
def get_member(call, member_id):
    return service.get_member(call.principal.user_id, member_id)


@app.endpoint("/members/{member_id}", ["DELETE"])
def delete_member(call, member_id):
    service.delete_member(call.principal.user_id, member_id)
    return Reply(status=204)


@app.endpoint("/members/{member_id}/drain", ["POST"])
def drain_member(call, member_id):
    result = service.drain_member(call.principal.user_id, member_id,
                                  start=not call.query_int("continue", 0, minimum=0, maximum=1))
    return Reply(result, status=200 if result["remaining"] == 0 else 202)


@app.endpoint("/members/{member_id}/drain", ["DELETE"])
def stop_draining_member(call, member_id):
    return service.stop_draining_member(call.principal.user_id, member_id)


@app.endpoint("/members/{member_id}/verify", ["POST"])
def verify_member(call, member_id):
    result = service.verify_member(call.principal.user_id, member_id)
    return Reply(result, status=200 if result["remaining"] == 0 else 202)


@app.endpoint("/{chunk_id}", ["POST"])
def put_blob(call, chunk_id):
    replicas = call.query_int("replicas", 0, minimum=1, maximum=16) or None
    return Reply(service.put_blob(call.principal.user_id, chunk_id, call.raw_body, replicas),
                 status=201)


@app.endpoint("/{chunk_id}")
def get_blob(call, chunk_id):
    return Reply(data=service.get_blob(call.principal.user_id, chunk_id),
                 content_type="application/octet-stream")


@app.endpoint("/{chunk_id}", ["DELETE"])
def delete_blob(call, chunk_id):
    service.delete_blob(call.principal.user_id, chunk_id)
    return Reply(status=204)
