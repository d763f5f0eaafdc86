"""What a caller is told when the metadata store fails under a request: a 507 or 503 in the
API's error shape, nothing about where the server keeps its files (the log has that, for the
operator); every answer says no cache may keep it."""
import base64
import json
import logging

import pytest
from cloudstrype.api.service import PUBLIC, ServiceApp
from cloudstrype.metadata.engine import MetadataError, StoreFull

from tests.aws.events import LambdaContext, rest_event

app = ServiceApp("fails", "/api/fails")
SECRET_PATH = "/srv/cloudstrype-data/metadata.db"


@app.endpoint("/full", ["POST"], auth=PUBLIC)
def full(call):
    raise StoreFull(f"The disk holding {SECRET_PATH} is full; nothing was written.")


@app.endpoint("/broken", ["POST"], auth=PUBLIC)
def broken(call):
    raise MetadataError(f"The metadata database {SECRET_PATH} failed: disk I/O error.")


@pytest.mark.parametrize("route, status, code", [("/full", 507, "insufficient_storage"),
                                                 ("/broken", 503, "unavailable")])
def test_a_store_failure_tells_the_caller_what_not_where(route, status, code, caplog):
    with caplog.at_level(logging.ERROR):
        result = app(rest_event("POST", f"/api/fails{route}"), LambdaContext())
    assert result["statusCode"] == status
    body = base64.b64decode(result["body"]).decode() if result["isBase64Encoded"] \
        else result["body"]
    error = json.loads(body)["error"]
    assert error["code"] == code and "nothing was written" in error["message"]
    assert SECRET_PATH not in body                          # the sweep saw the server's path
    assert result["headers"]["Retry-After"] == "30"
    assert result["headers"]["Cache-Control"] == "no-store"
    assert SECRET_PATH in caplog.text                       # the operator's log has it


def test_a_debug_log_leaves_out_what_libraries_say_of_credentials(tmp_path):
    """CLOUDSTRYPE_LOG_LEVEL=DEBUG logged botocore's signed Authorization headers for every S3
    call (operator sweep); requests-oauthlib's debug lines hold token requests and answers."""
    import subprocess
    import sys

    from tests.support import REPO
    script = (
        "import logging\n"
        "from infra.local.server import configure_logging, SECRET_TELLING_LOGGERS\n"
        "configure_logging('DEBUG')\n"
        "import cloudstrype.backends.oauth  # imported later by the functions\n"
        "for name in SECRET_TELLING_LOGGERS + ('botocore.endpoint', 'urllib3.connectionpool'):\n"
        "    logging.getLogger(name).debug('Authorization: AWS4-HMAC-SHA256 secret')\n"
        "    logging.getLogger(name).info('token: secret')\n"
        "logging.getLogger('cloudstrype.local').debug('our own debug line')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "secret" not in done.stderr and "our own debug line" in done.stderr
