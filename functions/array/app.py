"""Array service: the members' WebSocket API (routes only; the work is in cloudstrype.array)."""
import json

from cloudstrype import errors
from cloudstrype.api.service import ServiceApp
from cloudstrype.array import connections
from cloudstrype.auth.tokens import authenticate

app = ServiceApp("array", "/api/array")
app.experimental_feature_flags.update(["WEBSOCKETS"])

def _connect_credentials(event) -> str | None:
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    if headers.get("authorization"):
        return headers["authorization"]
    token = (event.get("queryStringParameters") or {}).get("token")
    # Clients that cannot set headers (browsers) pass the token as a query parameter.
    return f"Bearer {token}" if token else None

@app.on_ws_connect()
def connect(event):
    try:
        authenticate(_connect_credentials(event.to_dict()))
    except errors.ApiError as exc:
        return {"statusCode": exc.status, "body": exc.message}
    return {"statusCode": 200}

@app.on_ws_message()
def message(event):
    try:
        request = json.loads(event.body)
    except ValueError:
        connections.send(event.connection_id, {"type": "error", "error": "Messages must be JSON."})
        return
    if request.get("type") == "ping":
        connections.send(event.connection_id, {"type": "pong", "id": request.get("id")})
    else:
        connections.send(event.connection_id, {"type": "error", "id": request.get("id"),
                                               "error": f"Unknown message type "
                                                        f"{request.get('type')!r}."})

@app.on_ws_disconnect()
def disconnect(event):
    return {"statusCode": 200}
