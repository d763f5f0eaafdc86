"""Reaching a member's WebSocket connection through the API Gateway management API."""
from __future__ import annotations

import json
import logging

from cloudstrype.settings import get_settings

log = logging.getLogger("cloudstrype.array")

_client = None
_client_endpoint = None


def _management_client():
    global _client, _client_endpoint
    endpoint = get_settings().ws_management_url
    if not endpoint:
        raise RuntimeError("CLOUDSTRYPE_WS_MANAGEMENT_URL is not set; members cannot be reached.")
    if _client is None or _client_endpoint != endpoint:
        # Imported here, not at the top: boto3 is a large part of a cold start.
        import boto3
        from botocore.config import Config

        from cloudstrype.pipeline.store import SHARE_IO_THREADS
        _client = boto3.client("apigatewaymanagementapi", endpoint_url=endpoint,
                               region_name=get_settings().region,
                               # As many connections as share writes run at once: botocore's
                               # 10 made the rest open and drop one per message, with a
                               # warning each.
                               config=Config(retries={"max_attempts": 2}, connect_timeout=5,
                                             read_timeout=10,
                                             max_pool_connections=SHARE_IO_THREADS))
        _client_endpoint = endpoint
    return _client


def send(connection_id: str, message: dict) -> bool:
    """Send a JSON message to a connection; False when the connection is gone."""
    client = _management_client()
    try:
        client.post_to_connection(ConnectionId=connection_id,
                                  Data=json.dumps(message, separators=(",", ":")).encode())
    except client.exceptions.GoneException:
        return False
    return True


def close(connection_id: str) -> None:
    """Close a connection from the server side (a removed member); a gone one is fine."""
    client = _management_client()
    try:
        client.delete_connection(ConnectionId=connection_id)
    except client.exceptions.GoneException:
        pass
