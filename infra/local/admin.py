"""`cloudstrype admin`: create the first admin, or promote a user, in a user pool.

Against the local stack it talks to the running stack's moto endpoint when the stack is up,
and otherwise opens the data directory itself (the state is saved back on exit). Against a
deployment (`--user-pool-id`) it uses the caller's AWS credentials.
"""
from __future__ import annotations

import contextlib
import getpass
import json
import os
import sys
from pathlib import Path

import boto3
from botocore.exceptions import ClientError, EndpointConnectionError

from infra.local import aws


@contextlib.contextmanager
def _pool(args):
    if args.user_pool_id:
        client = boto3.client("cognito-idp")
        clients = client.list_user_pool_clients(UserPoolId=args.user_pool_id,
                                                MaxResults=60)["UserPoolClients"]
        yield client, args.user_pool_id, clients[0]["ClientId"] if clients else None
        return
    data_dir = Path(args.data_dir).resolve()
    stack_file = data_dir / "stack.json"
    if stack_file.exists():
        stack = json.loads(stack_file.read_text())
        aws.configure_process_for_local_aws(stack["aws_endpoint"])
        try:
            client = boto3.client("cognito-idp")
            client.describe_user_pool(UserPoolId=stack["user_pool_id"])
        except EndpointConnectionError:
            pass  # a stale stack file from a server that did not stop cleanly
        else:
            yield client, stack["user_pool_id"], stack["user_pool_client_id"]
            return
    # No server running: open the state ourselves and save it back.
    data_dir.mkdir(parents=True, exist_ok=True)
    moto = aws.MotoServer(data_dir)
    aws.configure_process_for_local_aws(moto.endpoint)
    moto.start()
    try:
        resources = aws.ensure_resources(data_dir / "resources.json")
        yield boto3.client("cognito-idp"), resources.user_pool_id, resources.user_pool_client_id
    finally:
        moto.stop()


def run_admin(args) -> int:
    from cloudstrype.auth import pool as pool_definition
    from cloudstrype.auth.pool import password_problems

    with _pool(args) as (client, pool_id, client_id):
        try:
            if args.admin_command == "create":
                password = args.password or getpass.getpass("Password for the new admin: ")
                problems = password_problems(password)
                if problems:
                    print("cloudstrype admin: the password needs " + ", ".join(problems) + ".",
                          file=sys.stderr)
                    return 2
                client.admin_create_user(
                    UserPoolId=pool_id, Username=args.username, MessageAction="SUPPRESS",
                    UserAttributes=[{"Name": "email", "Value": args.email},
                                    {"Name": "email_verified", "Value": "true"}])
                client.admin_set_user_password(UserPoolId=pool_id, Username=args.username,
                                               Password=password, Permanent=True)
            client.admin_add_user_to_group(UserPoolId=pool_id, Username=args.username,
                                           GroupName=pool_definition.ADMIN_GROUP)
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            messages = {"UsernameExistsException": f"the user '{args.username}' exists already "
                                                   f"(use 'cloudstrype admin promote')",
                        "UserNotFoundException": f"there is no user '{args.username}'",
                        "InvalidPasswordException": "the password does not meet the policy"}
            print(f"cloudstrype admin: {messages.get(code, exc.response['Error']['Message'])}.",
                  file=sys.stderr)
            return 1
    print(f"{args.username} is now in the '{pool_definition.ADMIN_GROUP}' group. Tokens issued "
          f"from now on carry it: log in again.")
    return 0
