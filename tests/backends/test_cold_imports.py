"""Heavy libraries (boto3, botocore, requests, urllib3, oauthlib) are imported on first use, not
when a function's modules load: they were most of every handler's cold start (issue 11)."""
from __future__ import annotations

import subprocess
import sys

HEAVY = ("boto3", "botocore", "requests", "urllib3", "oauthlib", "requests_oauthlib")


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_library_modules_of_the_handlers_load_without_the_heavy_libraries():
    loaded = _run(
        "import sys\n"
        "import cloudstrype.storages.service, cloudstrype.backends.registry\n"
        "import cloudstrype.backends.outbound, cloudstrype.array.connections\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    assert loaded == "[]"


def test_the_oauth_connect_routes_and_the_api_description_load_without_the_flow():
    # The cloud function's cold start: the provider table is read, the flow (requests,
    # oauthlib) comes when a connection starts or returns.
    loaded = _run(
        "import sys\n"
        "import cloudstrype.storages.oauth_connect, cloudstrype.api.spec\n"
        "from cloudstrype.backends import registry\n"
        "assert 'dropbox' in registry.KINDS\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    assert loaded == "[]"


def test_the_aws_adapters_create_their_clients_without_boto3_at_import():
    # They catch botocore's exception classes (a small module); boto3 comes with the client.
    loaded = _run(
        "import sys\n"
        "import cloudstrype.staging.s3, cloudstrype.keys.protector, cloudstrype.identity.cognito\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    assert loaded == "['botocore']"


def test_the_kinds_are_all_there_in_their_order_whenever_the_registry_is_first_read():
    # `member` registers before anything reads the kinds; the OAuth kinds still come before it.
    order = _run(
        "import sys\n"
        "import cloudstrype.array.backend\n"
        "from cloudstrype.backends import registry\n"
        "assert 'requests' not in sys.modules\n"
        "print(','.join(registry.KINDS))\n")
    assert order == "local,s3,dropbox,gdrive,onedrive,box,member"


def test_a_kind_is_validated_before_anything_read_the_kinds():
    cleaned = _run(
        "from cloudstrype.backends import registry\n"
        "print(registry.validate_config('box', {'token': {'access_token': 'x'}}))\n")
    assert cleaned == "{'token': {'access_token': 'x'}}"


def test_guarding_loads_the_connection_classes_once():
    import requests
    from cloudstrype.backends import outbound

    session = outbound.guard_session(requests.Session())
    adapter = session.get_adapter("https://example.com/")
    assert outbound.guard_session(session).get_adapter("https://example.com/") is adapter
    assert outbound._session_adapter() is type(adapter)


def test_the_array_functions_modules_load_without_the_pipeline_and_the_storage_rules():
    # Its WebSocket handlers (connect, every message, disconnect) share the module with the
    # routes and use neither; both came in with it and were a third of its cold start.
    loaded = _run(
        "import sys\n"
        "import cloudstrype.array.service, cloudstrype.array.socket, cloudstrype.storages\n"
        "print(sorted(m for m in ('cloudstrype.pipeline.store', 'cloudstrype.storages.service',"
        " 'cloudstrype.vault') if m in sys.modules))\n")
    assert loaded == "[]"


def test_the_storages_package_still_gives_the_services_names_on_first_use():
    names = _run(
        "import sys\n"
        "from cloudstrype import storages\n"
        "assert 'cloudstrype.storages.service' not in sys.modules\n"
        "from cloudstrype.storages import service\n"
        "assert storages.backend_for is service.backend_for and storages.DRAINING == 'draining'\n"
        "print(storages.list_storages.__module__)\n")
    assert names == "cloudstrype.storages.service"
