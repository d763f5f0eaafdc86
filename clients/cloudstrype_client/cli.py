"""The `cloudstrype` command.

Desktop commands speak HTTP and WebSocket only. `serve`, `backup`, `restore` and `admin` are
operator commands that load the server side lazily, so a desktop install never imports it.
"""
from __future__ import annotations

import argparse
import sys


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1-65535)")
    return port


def _serve(args) -> int:
    from infra.local.server import serve
    return serve(args.host, args.port, args.data_dir)


def _admin(args) -> int:
    from infra.local.admin import run_admin
    return run_admin(args)


def _backup(args) -> int:
    from infra.local.backup import run_backup
    return run_backup(args.data_dir, args.destination)


def _restore(args) -> int:
    from infra.local.backup import run_restore
    return run_restore(args.backup, args.data_dir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cloudstrype",
                                     description="Encrypted, redundant storage over the storage "
                                                 "you already have.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    serve = commands.add_parser("serve", help="run the whole stack locally (no AWS account)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=_port, default=8080, help="port to listen on")
    serve.add_argument("--data-dir", default=".cloudstrype-data",
                       help="where the local stack keeps its state")
    serve.set_defaults(run=_serve)

    backup = commands.add_parser(
        "backup", help="a consistent copy of a local stack's metadata and keys (while it runs)")
    backup.add_argument("destination", help="a new directory to write the backup into")
    backup.add_argument("--data-dir", default=".cloudstrype-data",
                        help="the local stack's data directory")
    backup.set_defaults(run=_backup)

    restore = commands.add_parser(
        "restore", help="put a backup back into a data directory (with the server stopped)")
    restore.add_argument("backup", help="a directory written by 'cloudstrype backup'")
    restore.add_argument("--data-dir", default=".cloudstrype-data",
                         help="the local stack's data directory")
    restore.set_defaults(run=_restore)

    admin = commands.add_parser("admin", help="operator tasks on a user pool")
    admin_commands = admin.add_subparsers(dest="admin_command", metavar="TASK")
    admin_commands.required = True
    create = admin_commands.add_parser("create", help="create a user in the admins group")
    create.add_argument("username")
    create.add_argument("--email", required=True)
    create.add_argument("--password", help="prompted for when omitted, which is better: a "
                        "password on the command line is seen in the process list and kept "
                        "in your shell's history")
    promote = admin_commands.add_parser("promote", help="add an existing user to admins")
    promote.add_argument("username")
    reset = admin_commands.add_parser(
        "set-password", help="give a user a new password (a forgotten one); every sign-in "
                             "they had ends. Prompted for twice, or the first line of stdin")
    reset.add_argument("username")
    for task in (create, promote, reset):
        task.add_argument("--data-dir", default=".cloudstrype-data",
                          help="the local stack's data directory (default)")
        task.add_argument("--user-pool-id",
                          help="a deployed Cognito user pool instead of the local stack")
        task.set_defaults(run=_admin)
    # `array`: this machine as an array member (its program, asyncio and websockets are loaded
    # only when it runs).
    from cloudstrype_client import array_command
    array_command.add_parser(commands)
    from cloudstrype_client import commands as desktop  # login, ls, put, get, ... (HTTP only)
    desktop.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        # (inside: a Ctrl-C while the commands' modules load is an interrupt too, not a
        # traceback)
        args = build_parser().parse_args(argv)
        return args.run(args) or 0
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
