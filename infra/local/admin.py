"""`cloudstrype admin`: create the first admin, promote a user, or set a user's password (the
recovery for a forgotten one: every sign-in of the user ends).

Locally it opens the data directory's metadata database itself: a stopped server is fine, and a
running one shares the file safely (SQLite in WAL mode). Against a deployment (`--user-pool-id`)
it uses Cognito with the caller's AWS credentials. Either way it goes through the same identity
provider the server uses.
"""
from __future__ import annotations

import contextlib
import getpass
import json
import sys
from pathlib import Path

from cloudstrype import errors


@contextlib.contextmanager
def _identity(args):
    if args.user_pool_id:
        import boto3
        from cloudstrype.identity.cognito import CognitoIdentity
        client = boto3.client("cognito-idp")
        clients = client.list_user_pool_clients(UserPoolId=args.user_pool_id,
                                                MaxResults=60)["UserPoolClients"]
        if not clients:
            raise errors.NotFound(f"the user pool {args.user_pool_id} has no app client")
        yield CognitoIdentity(args.user_pool_id, clients[0]["ClientId"],
                              client.meta.region_name, client=client)
        return
    data_dir = Path(args.data_dir).resolve()
    stack_file = data_dir / "stack.json"
    stack = json.loads(stack_file.read_text()) if stack_file.exists() else {}
    if stack.get("mode") == "aws-emulated":
        # A running test stack on moto (the AWS adapters): its Cognito pool.
        import boto3
        from cloudstrype.identity.cognito import CognitoIdentity

        from infra.local import aws
        aws.configure_process_for_local_aws(stack["aws_endpoint"])
        yield CognitoIdentity(stack["user_pool_id"], stack["user_pool_client_id"], aws.REGION,
                              client=boto3.client("cognito-idp"))
        return
    from cloudstrype.identity.local import LocalIdentity
    from cloudstrype.identity.local_store import IdentityStore
    from cloudstrype.metadata import schema
    from cloudstrype.metadata.sqlite import SqliteEngine

    from infra.local.services import METADATA_FILE

    if not (data_dir / METADATA_FILE).exists():
        # A mistyped (or left out) --data-dir would otherwise become a new, empty one, and an
        # admin created there is not the running server's (it reported success all the same).
        raise errors.NotFound(f"{data_dir} holds no Cloudstrype data (no {METADATA_FILE}); give "
                              f"the --data-dir that 'cloudstrype serve' uses (start it once "
                              f"first for a new one)")
    engine = SqliteEngine(str(data_dir / METADATA_FILE))
    try:
        engine.create_tables(schema.all_tables())   # one served by an older release
        # No signing key: creating and promoting users issues no token.
        yield LocalIdentity(None, "", "", store=IdentityStore(engine))
    finally:
        engine.close()


def _new_password(whose: str) -> str:
    """Asked twice on a terminal (a typo would make a password no one can sign in with); else
    the first line of stdin, as `login --password-stdin` reads it."""
    if not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise errors.BadRequest("no password: type it at the prompt, or give it on the "
                                    "first line of stdin")
        return password
    password = getpass.getpass(f"Password for {whose}: ")
    if getpass.getpass("The same again: ") != password:
        raise errors.BadRequest("the two passwords differ; nothing was changed")
    return password


def run_admin(args) -> int:
    from cloudstrype.auth import pool, users

    try:
        with _identity(args) as identity:
            if args.admin_command == "set-password":
                password = _new_password(args.username)
                users.validate_password(password)
                identity.reset_password(args.username, password)
                print(f"{args.username} has a new password; every sign-in they had has ended.")
                return 0
            if args.admin_command == "create":
                password = args.password or _new_password("the new admin")
                users.validate_username(args.username)
                users.validate_email(args.email)
                users.validate_password(password)
                identity.register(args.username, args.email, password, confirmed=True)
            identity.set_membership(pool.ADMIN_GROUP, args.username, True)
    except errors.ApiError as exc:
        hints = {"username_taken": f"the user '{args.username}' exists already (use "
                                   f"'cloudstrype admin promote')",
                 "user_not_found": f"there is no user '{args.username}'"}
        message = hints.get(exc.code, exc.message.rstrip("."))
        print(f"cloudstrype admin: {message}.", file=sys.stderr)
        return 2 if isinstance(exc, errors.BadRequest) else 1
    made = f"Created the user {args.username} ({args.email}); " \
        if args.admin_command == "create" else ""
    print(f"{made}{args.username} is now in the '{pool.ADMIN_GROUP}' group: the admin routes "
          f"answer them from their next request.")
    return 0
