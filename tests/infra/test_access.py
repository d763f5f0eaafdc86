"""Least privilege, per function: what each function's role may and may not do, read from the
synthesized IAM policies and compared with infra/access.py (the one declaration)."""
from __future__ import annotations

import pytest

from infra import access
from tests.infra.conftest import evaluate

PREFIX = "cloudstrype-prod-1a2b3c4d-"
TABLE_WRITES = {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
                "dynamodb:BatchWriteItem"}
TABLE_READS = {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:BatchGetItem",
               "dynamodb:ConditionCheckItem"}


def _service_of(function: dict) -> str:
    return function["Properties"]["Description"].rsplit("(", 1)[1].split()[0]


@pytest.fixture(scope="module")
def functions_by_service(synthesized) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for function in synthesized.of_type("AWS::Lambda::Function").values():
        if function["Properties"]["Handler"].startswith("app."):
            found.setdefault(_service_of(function), []).append(function)
    return found


@pytest.fixture(scope="module")
def table_names(synthesized) -> dict[str, str]:
    """Table logical id -> schema name."""
    return {logical: evaluate(t["Properties"]["TableName"]).removeprefix(PREFIX)
            for logical, t in synthesized.of_type("AWS::DynamoDB::Table").items()}


def _statements(synthesized, role: str) -> list[dict]:
    statements = []
    for policy in synthesized.of_type("AWS::IAM::Policy").values():
        if {"Ref": role} in policy["Properties"]["Roles"]:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


def _grants(synthesized, function: dict, table_names: dict[str, str]):
    """(actions, {table name: actions on it}) of the function's role."""
    role = function["Properties"]["Role"]["Fn::GetAtt"][0]
    statements = _statements(synthesized, role)
    assert all(s["Effect"] == "Allow" for s in statements)
    actions: set[str] = set()
    tables: dict[str, set[str]] = {}
    for statement in statements:
        statement_actions = set(_listed(statement["Action"]))
        actions |= statement_actions
        for resource in _listed(statement["Resource"]):
            assert resource != "*" or not any(a.startswith("dynamodb:")
                                               for a in statement_actions)
            if isinstance(resource, dict) and "Fn::GetAtt" in resource:
                logical = resource["Fn::GetAtt"][0]
            elif isinstance(resource, dict) and "Fn::Join" in resource:
                logical = next((part["Fn::GetAtt"][0] for part in resource["Fn::Join"][1]
                                if isinstance(part, dict) and "Fn::GetAtt" in part), None)
            else:
                logical = None
            if logical in table_names:
                tables.setdefault(table_names[logical], set()).update(statement_actions)
    return actions, tables


def test_every_service_is_declared(functions_by_service):
    assert set(functions_by_service) == set(access.SERVICES)


def test_every_table_the_stack_makes_is_granted_to_a_service(table_names):
    """A table nobody may touch is a table whose code fails with AccessDenied once deployed
    (moto does not check IAM): the 'blobs' table was made and granted to no one."""
    granted = set().union(*(service.table_names() for service in access.SERVICES.values()))
    assert set(table_names.values()) - granted == set()


@pytest.mark.parametrize("service", sorted(access.SERVICES))
def test_each_function_may_touch_exactly_what_its_service_declares(
        synthesized, functions_by_service, table_names, service):
    declared = access.of(service)
    job_services = {_service_of(f) for f in synthesized.of_type("AWS::Lambda::Function").values()
                    if f["Properties"].get("Description", "").startswith("Scheduled ")}
    for function in functions_by_service[service]:
        actions, tables = _grants(synthesized, function, table_names)
        where = function["Properties"]["Description"]
        assert set(tables) == declared.table_names(), where
        for name, granted in tables.items():
            assert TABLE_READS <= granted, (where, name)
            if declared.tables[name] == access.WRITE:
                assert TABLE_WRITES <= granted, (where, name)
            else:
                assert not granted & TABLE_WRITES, (where, name)
        kms = {a for a in actions if a.startswith("kms:")}
        assert kms == {f"kms:{a}" for a in declared.kms}, where
        staging = {None: set(), access.READ: {"s3:GetObject", "s3:ListBucket"},
                   access.WRITE: {"s3:GetObject", "s3:ListBucket", "s3:PutObject",
                                  "s3:DeleteObject"}}[declared.staging]
        assert {a for a in actions if a.startswith("s3:")} == staging, where
        assert ("secretsmanager:GetSecretValue" in actions) == declared.oauth_secrets, where
        assert ("execute-api:ManageConnections" in actions) == declared.manage_connections
        cognito = {a for a in actions if a.startswith("cognito-idp:")}
        assert cognito == {f"cognito-idp:{a}" for a in declared.cognito}, where
        # Nothing else: no service gets rights this declaration does not name, except that
        # the roles of services with scheduled jobs may send a failed run to the jobs' queue.
        sqs = {a for a in actions if a.startswith("sqs:")}
        assert sqs <= {"sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}
        assert not sqs or service in job_services, where
        assert {a.split(":")[0] for a in actions} <= \
            {"dynamodb", "kms", "s3", "secretsmanager", "execute-api", "cognito-idp", "sqs"}


def test_the_public_auth_functions_hold_no_data_plane_rights(
        synthesized, functions_by_service, table_names):
    for function in functions_by_service["auth"]:
        actions, tables = _grants(synthesized, function, table_names)
        assert not tables
        assert not {a for a in actions if a.split(":")[0] in
                    ("dynamodb", "kms", "s3", "secretsmanager", "execute-api")}
        assert "cognito-idp:AdminDeleteUser" in actions      # it does manage users
        variables = function["Properties"]["Environment"]["Variables"]
        # It may not read the OAuth secret, so it must not try to at start-up.
        assert variables["CLOUDSTRYPE_OAUTH_SECRETS_ARN"] == ""


def test_meta_functions_have_no_policy_at_all(synthesized, functions_by_service):
    for function in functions_by_service["meta"]:
        assert not _statements(synthesized, function["Properties"]["Role"]["Fn::GetAtt"][0])


def test_the_user_key_key_is_never_granted_encrypt_or_admin(synthesized):
    for policy in synthesized.of_type("AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            for action in _listed(statement["Action"]):
                assert action in ("kms:GenerateDataKey", "kms:Decrypt") or \
                    not action.startswith("kms:"), action
