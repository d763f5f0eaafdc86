"""Service-wide endpoints: health and the OpenAPI contract."""
from cloudstrype.api import spec
from cloudstrype.api.service import PUBLIC, ServiceApp

app = ServiceApp("meta", "/api")


@app.endpoint("/health", auth=PUBLIC)
def health(call):
    return {"status": "ok"}


@app.endpoint("/openapi.json", auth=PUBLIC)
def openapi(call):
    return spec.document()
