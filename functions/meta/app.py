"""Service-wide endpoints: health, the OpenAPI contract and the public client configuration."""
from cloudstrype.api.service import PUBLIC, ServiceApp
from cloudstrype.settings import Settings

app = ServiceApp("meta", "/api")


@app.endpoint("/health", auth=PUBLIC)
def health(call):
    return {"status": "ok"}


@app.endpoint("/openapi.json", auth=PUBLIC)
def openapi(call):
    # Imported here: the contract reads every driver's rules, which /health and /config (what
    # members and load balancers call) have no use for at a cold start.
    from cloudstrype.api import spec
    return spec.document()


# What a client given only the API's URL needs to find the rest of the deployment (the same
# names as the web UI's config.json). From the environment alone: get_settings() would also
# fetch the OAuth secret, which this service is not allowed to read.
@app.endpoint("/config", auth=PUBLIC)
def client_config(call):
    settings = Settings.from_env()
    return {"websocketUrl": settings.websocket_endpoint(), "webUrl": settings.web_origin()}
