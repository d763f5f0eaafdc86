"""The desktop commands: login, logout, ls, put, get, mkdir, mv, rm, cat, info, storages, members,
share, unshare, shares, link, links, trash.

They speak HTTP only (cloudstrype_client.api). Messages go to stderr, results to stdout; the exit
codes are those of cloudstrype_client.errors. ``add_commands(subparsers)`` registers them on the
`cloudstrype` parser.
"""
from __future__ import annotations

import argparse
import errno
import functools
import getpass
import json
import os
import queue
import re
import sys
import threading
from datetime import datetime
from urllib.parse import quote

from cloudstrype_client import config, remote, transfer
from cloudstrype_client.api import Client, answer_lost, normalize_server
from cloudstrype_client.display import plural, shown
from cloudstrype_client.errors import (
    CONFLICT,
    FAILED,
    INTERRUPTED,
    OK,
    USAGE,
    AuthError,
    CliError,
    NotFoundError,
    Stopped,
    UsageError,
)
from cloudstrype_client.progress import human_size

EXIT_CODES_HELP = """exit codes: 0 ok, 1 an operation failed, 2 usage error, 3 not logged in or
login refused, 4 not found, 5 conflict (exists, not empty, storage still holds shares),
6 server unreachable, 130 interrupted"""

OAUTH_PROVIDERS = ("dropbox", "gdrive", "onedrive", "box")


# -- plumbing -------------------------------------------------------------------------------------

def _command(handler):
    """Run a handler: CliError -> its message on stderr and its exit code."""
    @functools.wraps(handler)
    def run(args) -> int:
        # Shared options are SUPPRESSed in the parsers (so that a nested parser's default never
        # overwrites a value given earlier on the line); fill in what was not given.
        for name, default in (("server", None), ("quiet", False), ("json", False)):
            if not hasattr(args, name):
                setattr(args, name, default)
        try:
            code = handler(args) or OK
            if sys.stdout is not None:
                sys.stdout.flush()      # a full disk or a closed pipe is met here, in words
            return code
        except CliError as exc:
            print(f"cloudstrype {args.command}: {shown(exc.message)}", file=sys.stderr,
                  flush=True)
            if isinstance(exc, Stopped):
                # A transfer that stopped may leave requests under way on its threads (the
                # server not answering): leave without waiting for them.
                sys.stdout.flush()
                os._exit(exc.exit_code)
            return exc.exit_code
        except BrokenPipeError:
            # The reader went away (`cloudstrype cat x | head`): stop quietly.
            _quiet_stdout()
            return OK
        except OSError as exc:
            # A local file or the output that cannot be written (a full disk, a closed output):
            # said in words, not a traceback.
            where = f"{shown(str(exc.filename))}: " if exc.filename else \
                "writing the output: " if exc.errno in _OUTPUT_ERRNOS else ""
            print(f"cloudstrype {args.command}: {where}{exc.strerror or exc}", file=sys.stderr,
                  flush=True)
            _quiet_stdout()
            return FAILED
        except EOFError:
            print(f"cloudstrype {args.command}: the input ended before an answer was typed; "
                  f"run it at a terminal (a password can come from --password-stdin).",
                  file=sys.stderr, flush=True)
            return USAGE
        except KeyboardInterrupt:
            # A second Ctrl-C can arrive while the first one's stop waits for the transfers:
            # the downloads' temporary files still go, as the first stop would have removed.
            transfer.discard_parts()
            print(f"\nInterrupted; {_AFTER_INTERRUPT.get(args.command, _DONE_SO_FAR)}",
                  file=sys.stderr, flush=True)
            # Worker threads may be mid-request: leave without waiting for them.
            os._exit(INTERRUPTED)
    return run


# What an interrupted command leaves, said as it stops.
_DONE_SO_FAR = "what was done before it stopped stays done."
_AFTER_INTERRUPT = {
    "put": "running the same command again resumes big uploads and skips what was sent.",
    "get": "running the same command again fetches the files again (nothing half-written "
           "was left).",
    "storages": "a drain goes on on the server (`cloudstrype storages list` shows it; "
                "`undrain` stops it); anything else was done or not.",
}
_OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EBADF, errno.EIO, errno.EFBIG})


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that Python's own flush as it exits does not fail again
    (and print a second error) on what could not be written."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, AttributeError, ValueError):
        pass


def _client(args, **kwargs) -> Client:
    jobs = getattr(args, "jobs", None) or 4
    client = Client.from_args(args, pool_size=max(16, 2 * jobs + 4), **kwargs)
    share = getattr(args, "share", None)
    if share:
        # Checked first: inside a share every 404 would otherwise read "no such file".
        try:
            client.get_json(f"/api/filesystem/shares/{share}")
        except CliError as exc:
            if exc.status == 404:
                raise NotFoundError(f"No share {share} is granted to you now (revoked, or you "
                                    f"left its group?); see 'cloudstrype shares --with-me'."
                                    ) from None
            raise
        client.share = share
    return client


def _print_json(data) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def _local_time(text: str | None) -> str:
    if not text:
        return "-"
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return stamp.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _table(rows: list[list[str]], headers: list[str], right: set[int] = frozenset()) -> None:
    """Aligned columns; every cell shown safe for a terminal (display.shown)."""
    rows = [[shown(c) for c in row] for row in rows]
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        cells = [str(c).rjust(widths[i]) if i in right else str(c).ljust(widths[i])
                 for i, c in enumerate(row)]
        print("  ".join(cells).rstrip())


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """'500G', '1.5TiB', '1048576' -> bytes (K, M, G, T, P are powers of 1024)."""
    match = _SIZE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 500G, 2T, 1048576)")
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * 1024 ** " kmgtp".index(unit or " "))


def _positive(text: str) -> int:
    """-j/--jobs: a whole number from 1 to 64 (argparse names the option before the words)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give how many transfers "
                                         f"run at once, 1 to 64") from None
    if value < 1 or value > 64:
        raise argparse.ArgumentTypeError(f"{value} is out of range; use 1 to 64")
    return value


# -- login / logout -------------------------------------------------------------------------------

@_command
def cmd_login(args) -> int:
    saved = config.load_credentials()
    server = normalize_server(args.server or os.environ.get("CLOUDSTRYPE_SERVER") or
                              config.remembered_server() or config.DEFAULT_SERVER)
    username = args.username
    if not username:
        if args.password_stdin or not sys.stdin.isatty():
            raise UsageError("Give --username (it cannot be asked for when stdin is not a "
                             "terminal).")
        sys.stderr.write("Username: ")
        sys.stderr.flush()
        username = sys.stdin.readline().strip()
    if not username:
        raise UsageError("A username is needed.")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = _ask_hidden("Password: ")
    if not password:
        raise UsageError("A password is needed.")
    client = Client(server)
    try:
        response = client.request("POST", "/api/auth/login", auth=False, retry=True,
                                  ok=(200,), json={"username": username, "password": password})
    except CliError as exc:
        if exc.status in (404, 405):        # no login route there: not a server's address
            raise _not_a_server(server) from None
        raise
    tokens = response.json()
    if saved and (normalize_server(saved["server"]) != server or
                  (saved.get("username") or "").lower() != username.lower()):
        # The login this one replaces, someone else's or another server's (best effort). Not
        # the same user's: deployed, Cognito's sign-out would end the new sign-in too.
        _end_sign_in(saved)
    config.save_credentials(config.tokens_to_credentials(server, username, tokens))
    if not args.quiet:
        print(f"Logged in to {server} as {username} (credentials in "
              f"{config.credentials_path()}).", file=sys.stderr)
    return OK


def _not_a_server(server: str) -> UsageError:
    """A login refused as an unknown route: the address is not a Cloudstrype server's (often
    its API's, ending in /api, given instead)."""
    suggestion = re.sub(r"/api/?$", "", server)
    hint = f" Give its address without '/api': {suggestion}" if suggestion != server else \
        " Give the address the server was started on, such as http://127.0.0.1:8080"
    return UsageError(f"{server} does not look like a Cloudstrype server (it has no "
                      f"/api/auth/login).{hint}")


def _end_sign_in(saved: dict) -> str | None:
    """Ask the server to end a saved sign-in (its tokens then stop working there, not only
    here); None when it did or had already, else why it could not be told."""
    try:
        client = Client(saved["server"], saved, retries=0)
        client.request("POST", "/api/auth/logout", retry=False, ok=(204,),
                       timeout=(5, 10))
    except AuthError:
        return None                 # refused: that sign-in has ended already
    except CliError as exc:
        return exc.message
    return None


@_command
def cmd_logout(args) -> int:
    if os.environ.get("CLOUDSTRYPE_TOKEN"):
        # The sign-in every command used: ended on its server; a saved login is another one,
        # left as it is (it said "Not logged in." and the token kept working).
        client = Client.from_args(args)
        try:
            client.request("POST", "/api/auth/logout", ok=(204,), what="logging out")
        except CliError as exc:
            if exc.status != 401:
                raise               # (401: that sign-in has ended already, or expired)
        if not args.quiet:
            print(f"Ended the sign-in of CLOUDSTRYPE_TOKEN at {client.server}: the token is "
                  f"refused from now on (unset it).", file=sys.stderr)
            if config.load_credentials():
                print("The saved login is another sign-in and stays; run 'cloudstrype "
                      "logout' without CLOUDSTRYPE_TOKEN to end it too.", file=sys.stderr)
        return OK
    saved = config.load_credentials()
    problem = _end_sign_in(saved) if saved else None
    removed = config.delete_credentials()
    if not args.quiet:
        if removed and saved:
            print(f"Logged out of {saved.get('server')}.", file=sys.stderr)
            if problem:
                print(f"The server could not be told ({problem}); the sign-in's tokens, "
                      f"deleted here, stay valid there until they expire.", file=sys.stderr)
        else:
            print("Not logged in.", file=sys.stderr)
    return OK


@_command
def cmd_passwd(args) -> int:
    client = Client.from_args(args)
    if args.password_stdin:
        old, new = (sys.stdin.readline().rstrip("\r\n") for _ in range(2))
    else:
        old = _ask_hidden("Current password: ")
        new = _ask_hidden("New password: ")
        if _ask_hidden("New password again: ") != new:
            raise UsageError("The two new passwords differ; nothing was changed.")
    if not old or not new:
        raise UsageError("Both the current and the new password are needed (with "
                         "--password-stdin: the current one on the first line, the new one on "
                         "the second).")
    client.request("POST", "/api/auth/password", ok=(204,), retry=False,
                   json={"old_password": old, "new_password": new})
    if not args.quiet:
        print("Password changed. Your other sign-ins have ended (deployed: log out to end "
              "them); this one goes on.", file=sys.stderr)
    return OK


# -- listing and metadata -------------------------------------------------------------------------

def _entry_json(entry: dict, path: str) -> dict:
    return {"id": entry.get("id"), "name": entry.get("name"), "path": path,
            "type": entry.get("type"), "size": int(entry.get("size") or 0),
            "modified": entry.get("modified")}


@_command
def cmd_ls(args) -> int:
    client = _client(args)
    path = remote.normalize(args.path)
    node = remote.lookup(client, path)
    if node.get("type") != remote.DIRECTORY:
        rows = [(node.get("name") or path, node, path)]
    elif args.recursive:
        rows = [(rel, entry, remote.join(path, rel))
                for rel, entry in sorted(remote.walk(client, path, args.jobs),
                                         key=lambda item: item[0])]
    else:
        rows = [(e["name"], e, remote.join(path, e["name"]))
                for e in sorted(remote.list_dir(client, path), key=lambda e: e["name"])]
    if args.json:
        _print_json([_entry_json(entry, full) for _, entry, full in rows])
        return OK
    out = []
    for name_, entry, _ in rows:
        is_dir = entry.get("type") == remote.DIRECTORY
        name = shown(name_) + ("/" if is_dir else "")
        if args.long:
            size = "-" if is_dir else str(int(entry.get("size") or 0))
            out.append(f"{'d' if is_dir else '-'} {size:>14} {_local_time(entry.get('modified'))}"
                       f"  {name}")
        else:
            out.append(name)
    if out:
        sys.stdout.write("\n".join(out) + "\n")
    return OK


@_command
def cmd_info(args) -> int:
    client = _client(args)
    node = remote.lookup(client, args.path)
    info = remote.file_info(client, node["id"])
    info.setdefault("path", remote.normalize(args.path))
    if args.json:
        _print_json(info)
        return OK
    keys = ["path", "id", "type"]
    if info.get("type") == remote.FILE:
        keys += ["size", "content_type", "sha256", "etag", "durability", "encryption",
                 "version"]
    keys += ["created", "modified"]
    for key in keys:
        value = info.get(key)
        if key == "size":
            value = f"{value} ({human_size(value)})"
        elif key in ("created", "modified"):
            value = _local_time(value)
        print(f"{key + ':':<14}{'-' if value is None else shown(value)}")
    versions = info.get("versions") or []
    if versions:
        total = info.get("versions_total") or len(versions)
        listed = f" (the newest {len(versions)} listed)" if total > len(versions) else ""
        print(f"{'versions:':<14}{total}{listed}")
        for v in versions:
            mark = "*" if v.get("current") else " "
            print(shown(f"  {mark} {v.get('version')}  {v.get('size'):>12}  "
                        f"{_local_time(v.get('created'))}"))
    for key, value in sorted((info.get("attributes") or {}).items()):
        print(f"{'attribute:':<14}{shown(key)} = {shown(value)}")
    return OK


# -- changing the tree ----------------------------------------------------------------------------

def _require_directory(client, path: str, hint: str = "") -> None:
    """NotFound when `path` does not exist, Conflict when it is a file."""
    found = remote.stat(client, path)
    if found is None:
        raise NotFoundError(f"No such directory: {path}{hint}")
    if found.get("type") != remote.DIRECTORY:
        raise CliError(f"{path} is a file, not a directory.", CONFLICT)


@_command
def cmd_mkdir(args) -> int:
    client = _client(args)
    status = OK
    for given in args.paths:
        path = remote.normalize(given)
        try:
            if path == "/":
                if not args.parents:
                    raise CliError("/ exists already.", CONFLICT)
                continue
            if not args.parents:
                parent, _ = remote.split(path)
                _require_directory(client, parent, " (use -p to create parents).")
                if remote.stat(client, path) is not None:
                    raise CliError(f"{path} exists already.", CONFLICT)
            client.request("POST", "/api/filesystem/dirs", json={"path": path}, retry=True,
                           ok=(200, 201), what=path)
        except CliError as exc:
            print(f"cloudstrype mkdir: {shown(exc.message)}", file=sys.stderr)
            status = exc.exit_code
    return status


@_command
def cmd_mv(args) -> int:
    client = _client(args)
    dest = remote.normalize(args.dest)
    target = remote.stat(client, dest)
    into = target is not None and target.get("type") == remote.DIRECTORY
    if len(args.sources) > 1 and not into:
        raise UsageError(f"Moving several items needs an existing directory as DEST; {dest} is "
                         f"{'a file' if target else 'not there'}.")
    if args.dest.endswith("/") and not into:
        # As `put` and `get` read it (and GNU mv): a DEST ending in '/' is a directory, never
        # the new name of what is moved.
        raise UsageError(f"{args.dest} ends in '/' but is {'a file' if target else 'not there'}: "
                         f"make that directory first (cloudstrype mkdir), or leave out the "
                         f"'/' to rename.")
    status = OK
    for source in args.sources:
        try:
            node = remote.lookup(client, source)
            if node.get("path") == "/" or remote.normalize(source) == "/":
                raise UsageError("The root directory cannot be moved.")
            if not into and remote.normalize(source) == dest:
                raise CliError(f"{dest} and {dest} are the same item; nothing to move.")
            if into:
                body = {"path": dest}
            else:
                directory, name = remote.split(dest)
                _require_directory(client, directory)
                body = {"path": directory, "name": name}
            client.request("POST", f"/api/filesystem/info/{node['id']}", json=body,
                           retry=True, what=f"{remote.normalize(source)} -> {dest}")
        except CliError as exc:
            print(f"cloudstrype mv: {shown(exc.message)}", file=sys.stderr)
            status = exc.exit_code
    return status


@_command
def cmd_rm(args) -> int:
    client = _client(args)
    if args.versions:
        return _rm_versions(client, args)
    status = OK
    for given in args.paths:
        try:
            path = remote.normalize(given)
            if path == "/":
                raise UsageError("Refusing to remove /; remove what is in it instead.")
            node = remote.stat(client, path)
            if node is None:
                if args.force:
                    continue
                raise NotFoundError(f"No such file or directory: {path}")
            if node.get("type") == remote.DIRECTORY and not args.recursive:
                raise UsageError(f"{path} is a directory; use 'rm -r' to remove it and "
                                 f"everything in it.")
            client.request("DELETE", f"/api/filesystem/info/{node['id']}", ok=(204, 404),
                           what=path)
        except CliError as exc:
            print(f"cloudstrype rm: {shown(exc.message)}", file=sys.stderr)
            status = exc.exit_code
    return status


# Rounds of a version's deletion that the server answers "partly freed, ask again" (202).
VERSION_DELETE_ROUNDS = 20


def _rm_versions(client, args) -> int:
    """rm --version V PATH: earlier versions of one file deleted for good (their content freed);
    the file and its current version stay."""
    if len(args.paths) != 1:
        raise UsageError("'rm --version' takes one file: the one whose versions go.")
    path = remote.normalize(args.paths[0])
    node = remote.lookup(client, path)
    if node.get("type") != remote.FILE:
        raise UsageError(f"{path} is a directory; only a file has versions.")
    status = OK
    for version in args.versions:
        url = f"/api/filesystem/info/{node['id']}/versions/{quote(version, safe='')}"
        try:
            for _ in range(VERSION_DELETE_ROUNDS):
                answer = client.delete_settled(url, ok=(202, 204),
                                               what=f"{path} version {version}")
                if answer.status_code in (204, 404):        # (404: a lost answer's delete)
                    break
            else:
                raise CliError(f"{path}: version {version} is still being freed; run the same "
                               f"command again to finish.")
            if not args.quiet:
                print(shown(f"Deleted version {version} of {path} for good."), file=sys.stderr)
        except CliError as exc:
            print(f"cloudstrype rm: {shown(exc.message)}", file=sys.stderr)
            status = exc.exit_code
    return status


# -- transfers ------------------------------------------------------------------------------------

def _bars(args) -> bool | None:
    if args.quiet:
        return False
    return None                # decided by whether stderr is a terminal


@_command
def cmd_put(args) -> int:
    client = _client(args)

    def report(result: transfer.PutResult) -> None:
        if args.json:
            _print_json(result.as_json())
            return
        if result.dry_run:
            for item in result.to_send:
                print(f"would send {shown(item.local)} -> {shown(item.remote)} "
                      f"({human_size(item.size)})")
        if not args.quiet or result.dry_run:
            print(f"put: {result.summary()}", flush=True)

    return transfer.put(client, args.sources, args.dest, jobs=args.jobs, quiet=args.quiet,
                        bars=_bars(args), checksum=args.checksum, dry_run=args.dry_run,
                        report=report)


@_command
def cmd_get(args) -> int:
    client = _client(args)
    return transfer.get(client, args.sources, args.dest, jobs=args.jobs, quiet=args.quiet,
                        bars=_bars(args))


@_command
def cmd_cat(args) -> int:
    if sys.stdout is None:
        raise UsageError("The output is closed: there is nowhere to write the files to.")
    client = _client(args)
    # As cat(1): a file that cannot be read is said, and the others are still written; the
    # exit code is the first failure's.
    code = OK
    for path in args.paths:
        try:
            transfer.cat(client, path, jobs=args.jobs)
        except CliError as exc:
            if isinstance(exc, Stopped) or len(args.paths) == 1:
                raise
            print(f"cloudstrype cat: {shown(exc.message)}", file=sys.stderr, flush=True)
            code = code or exc.exit_code
    return code


# -- storages -------------------------------------------------------------------------------------

def _storages(client: Client) -> list[dict]:
    return client.get_json("/api/cloud/storages").get("storages") or []


def _find_storage(client: Client, ident: str) -> dict:
    storages = _storages(client)
    # The id, the name as written, then the name whatever its case (the server keeps a user's
    # storage names distinct that way).
    for wanted in (lambda s: s.get("id") == ident, lambda s: s.get("name") == ident,
                   lambda s: str(s.get("name", "")).casefold() == ident.casefold()):
        found = [s for s in storages if wanted(s)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise UsageError(f"Several storages are named {ident!r}; use the id.")
    raise NotFoundError(f"No storage {ident!r} (see 'cloudstrype storages list').")


@_command
def cmd_storages_list(args) -> int:
    storages = _storages(_client(args))
    if args.json:
        _print_json(storages)
        return OK
    rows = [[s.get("id", ""), s.get("kind", ""), s.get("name", ""),
             # Only an active storage can be told down (a draining one takes no shares
             # anyway; a member's status says whether it is connected): marked down after an
             # error, which the lines below the table give.
             s.get("status", "") + (" (down)" if s.get("status") == "active" and
                                    not s.get("online") else ""),
             human_size(s.get("stored_bytes")), human_size(s.get("capacity")),
             str(s.get("shares", 0))] for s in storages]
    if not rows:
        print("No storages yet; add one with 'cloudstrype storages add local PATH' or "
              "'cloudstrype storages connect dropbox'.", file=sys.stderr)
        return OK
    _table(rows, ["ID", "KIND", "NAME", "STATUS", "STORED", "CAPACITY", "SHARES"], {4, 5, 6})
    for s in storages:
        if s.get("last_error"):
            when = f" ({s['last_error_at'][:19].replace('T', ' ')} UTC)" \
                if s.get("last_error_at") else ""
            print(shown(f"{s.get('name')}: last error{when}: {s['last_error']}"),
                  file=sys.stderr)
        check = s.get("check") or {}
        if check.get("missing_found") or check.get("corrupt_found"):
            print(shown(f"{s.get('name')}: since it was added, the scrub's checks have found "
                        f"{plural(check.get('missing_found', 0), 'share')} missing and "
                        f"{check.get('corrupt_found', 0)} corrupt here (each queued for repair "
                        f"when found)."), file=sys.stderr)
    return OK


def _add_storage(args, kind: str, storage_config: dict) -> int:
    client = _client(args)
    body = {"kind": kind, "config": {k: v for k, v in storage_config.items() if v is not None}}
    if args.name:
        body["name"] = args.name
    created = client.request("POST", "/api/cloud/storages", json=body, ok=(201,),
                             what=f"adding the {kind} storage").json()
    if args.json:
        _print_json(created)
    else:
        print(shown(created.get("id")))
        if not args.quiet:
            print(shown(f"Added {kind} storage {created.get('name')!r} ({created.get('id')})."),
                  file=sys.stderr)
    return OK


@_command
def cmd_storages_add_local(args) -> int:
    path = os.path.abspath(args.path)
    if not remote.is_text(path):
        # (It cannot travel in the request's JSON: the server would name UTF-16 surrogates.)
        raise UsageError(f"The folder {path} has a name that is not valid UTF-8; a local "
                         f"storage's folder must have one that is (rename it, or choose "
                         f"another).")
    return _add_storage(args, "local", {"path": path, "capacity": args.capacity})


@_command
def cmd_storages_add_s3(args) -> int:
    secret = args.secret_key
    if args.secret_key_stdin:
        secret = sys.stdin.readline().rstrip("\r\n")
    elif secret is None:
        secret = os.environ.get("CLOUDSTRYPE_S3_SECRET_KEY")
    if not secret:
        if not sys.stdin.isatty():
            raise UsageError("Give the secret key with --secret-key-stdin (or "
                             "CLOUDSTRYPE_S3_SECRET_KEY).")
        secret = getpass.getpass("Secret access key: ")
    return _add_storage(args, "s3", {
        "bucket": args.bucket, "access_key": args.access_key, "secret_key": secret,
        "endpoint_url": args.endpoint_url, "region": args.region, "prefix": args.prefix,
        "capacity": args.capacity})


@_command
def cmd_storages_connect(args) -> int:
    client = _client(args)
    params = {}
    if args.name:
        params["name"] = args.name
    answer = client.get_json(f"/api/cloud/oauth/{args.provider}/authorize", params=params,
                             what=f"connecting {args.provider}")
    url = answer["authorize_url"]
    print(shown(url), flush=True)
    if not args.quiet:
        print(f"Open this address in a browser and allow access at {args.provider}. The "
              f"Cloudstrype page you come back to shows a finish code: paste it here.",
              file=sys.stderr)
    if not args.no_browser and sys.stdout.isatty():
        try:
            # Imported here: this command alone opens a browser.
            import webbrowser
            webbrowser.open(url)
        except Exception:                           # no browser here: the URL was printed
            pass
    # The server connects the account only for the user who started (this login) and only with
    # the code the approving browser was given: a consent link alone connects nothing.
    code = _read_finish_code(args.wait)
    created = client.request("POST", f"/api/cloud/oauth/{args.provider}/finish",
                             json={"state": answer["state"], "code": code}, ok=(200, 201),
                             what=f"connecting {args.provider}").json()
    if args.json:
        _print_json(created)
    else:
        print(shown(created.get("id")))
    if not args.quiet and created.get("reconnected"):
        # One account is one storage: connecting it again renews that storage's access.
        print(shown(f"This {args.provider} account is your storage {created.get('name')!r} "
                    f"({created.get('id')}) already: it is reconnected, with the new access."),
              file=sys.stderr)
    elif not args.quiet:
        print(shown(f"Connected {args.provider} storage {created.get('name')!r} "
                    f"({created.get('id')})."), file=sys.stderr)
    return OK


def _read_finish_code(wait: int) -> str:
    """One line from stdin (a prompt when it is a terminal); `wait` seconds at most, if set."""
    if sys.stdin.isatty():
        print("Finish code: ", end="", file=sys.stderr, flush=True)
    lines: queue.Queue = queue.Queue()
    # A daemon thread: stdin has no portable read timeout, and a line never typed must not keep
    # the process alive.
    threading.Thread(target=lambda: lines.put(sys.stdin.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=wait or None)
    except queue.Empty:
        raise CliError(f"No finish code was given within {wait} s; run the command again.",
                       FAILED) from None
    code = line.strip()
    if not code:
        raise CliError("No finish code was given; run the command again, allow access in the "
                       "browser and paste the code the page shows.", FAILED)
    return code


def _drain(client: Client, storage: dict, quiet: bool) -> None:
    sid = storage["id"]
    params: dict = {}
    while True:
        result = client.request("POST", f"/api/cloud/storages/{sid}/drain", ok=(200, 202),
                                params=params, what=f"draining {storage.get('name')}").json()
        params = {"continue": 1}        # the next rounds go on with this drain only
        if not quiet:
            moved = plural(result.get("moved", 0), "share")
            print(shown(f"{storage.get('name')}: moved {moved}, "
                        f"{result.get('remaining', 0)} remain."), file=sys.stderr)
        if not result.get("remaining"):
            return
        if result.get("status") not in (None, "draining"):
            raise CliError(f"{storage.get('name')}: the drain was stopped meanwhile ('storages "
                           f"undrain'); {result['remaining']} "
                           f"{'share stays' if result['remaining'] == 1 else 'shares stay'} "
                           f"on it.", FAILED)
        if not result.get("moved"):
            problems = "; ".join(map(str, result.get("problems") or [])) or "no progress"
            remaining = result["remaining"]
            raise CliError(f"{storage.get('name')}: {remaining} "
                           f"{'share' if remaining == 1 else 'shares'} could not be "
                           f"moved ({problems}). It stays draining (it takes no new shares, "
                           f"and the server goes on moving them when it can): add a storage, "
                           f"or 'cloudstrype storages undrain {storage.get('name')}' to use it "
                           f"again.", FAILED)


@_command
def cmd_storages_drain(args) -> int:
    client = _client(args)
    _drain(client, _find_storage(client, args.storage), args.quiet)
    return OK


@_command
def cmd_storages_undrain(args) -> int:
    client = _client(args)
    storage = _find_storage(client, args.storage)
    member_id = (storage.get("settings") or {}).get("member_id")
    # An array member's storage is stopped through its member (the server knows if it is
    # connected, and so whether it comes back active or offline).
    url = f"/api/array/members/{quote(member_id, safe='')}/drain" if \
        storage.get("kind") == "member" and member_id else \
        f"/api/cloud/storages/{quote(storage['id'], safe='')}/drain"
    result = client.request("DELETE", url, ok=(200,),
                            what=f"stopping the drain of {storage.get('name')}").json()
    if not args.quiet:
        print(shown(f"{storage.get('name')}: {result.get('status')}; it takes new shares again "
                    f"(the {result.get('shares', 0)} it holds stay)."), file=sys.stderr)
    return OK


def drain_advice(message: str, name: str) -> str:
    """The server's refusal to remove a storage that holds shares names its API route (a
    member's, for a member); here the command that does it."""
    return re.sub(r"\(POST /api/(?:cloud/storages|array/members)/[^)]*/drain[^)]*\)",
                  f"('cloudstrype storages drain {name}', or 'storages remove --drain')",
                  message)


@_command
def cmd_storages_remove(args) -> int:
    client = _client(args)
    storage = _find_storage(client, args.storage)
    if args.drain:
        _drain(client, storage, args.quiet)
    try:
        client.request("DELETE", f"/api/cloud/storages/{storage['id']}", ok=(204,),
                       what=f"removing {storage.get('name')}")
    except CliError as exc:
        if exc.code in ("storage_not_empty", "member_not_empty"):
            exc.message = drain_advice(exc.message, str(storage.get("name")))
        raise
    if not args.quiet:
        print(shown(f"Removed storage {storage.get('name')!r} ({storage['id']})."),
              file=sys.stderr)
    return OK


# -- members --------------------------------------------------------------------------------------

@_command
def cmd_members(args) -> int:
    client = _client(args)
    try:
        answer = client.get_json("/api/array/members")
    except CliError as exc:
        if exc.status == 404:
            raise CliError(f"This server does not list array members (GET /api/array/members "
                           f"answered 404: {exc.message}); it may be older than this client.",
                           FAILED) from None
        raise
    members = answer.get("members", []) if isinstance(answer, dict) else answer
    if args.json:
        _print_json(members)
        return OK
    if not members:
        print("No array members yet; run the member program on a desktop machine to add one.",
              file=sys.stderr)
        return OK
    rows = [[m.get("name") or m.get("id", ""), "yes" if m.get("online") else "no",
             human_size(m.get("capacity")), human_size(m.get("used")),
             _local_time(m.get("last_seen"))] for m in members]
    _table(rows, ["NAME", "ONLINE", "CAPACITY", "USED", "LAST SEEN"], {2, 3})
    return OK


# -- shares and links (docs/sharing-api.md) -------------------------------------------------------

FS = "/api/filesystem"
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$", re.IGNORECASE)
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> int:
    """'7d', '12h', '30m', '90s', '2w', '3600' -> seconds."""
    match = _DURATION.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90s, 30m, 12h, 7d, "
                                         f"2w)")
    seconds = int(match.group(1)) * _SECONDS[match.group(2).lower()]
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is no time at all; give a duration of at "
                                         f"least a second (e.g. 90s, 7d)")
    return seconds


def _grantee(args) -> dict:
    return {"user": args.user} if args.user else {"group": args.group}


def _grantee_text(grantee: dict) -> str:
    gone = " (account deleted)" if grantee.get("deleted") else ""
    return f"{grantee.get('kind')} {grantee.get('name')}{gone}"


def _own_node(client: Client, path: str) -> dict:
    node = remote.lookup(client, path)
    if node.get("path") == "/" or remote.normalize(path) == "/":
        raise UsageError("The root directory cannot be shared; share a folder in it.")
    return node


@_command
def cmd_share(args) -> int:
    client = _client(args)
    path = remote.normalize(args.path)
    level = "write" if args.write else "read"
    # Sent again after a lost answer too: sharing an item again with the same person at the
    # same level changes nothing (200).
    response = client.request("POST", f"{FS}/shares", json={"path": path, "level": level,
                                                             **_grantee(args)},
                              ok=(200, 201), retry=True, what=path)
    share = response.json()
    if args.json:
        _print_json(share)
        return OK
    print(shown(share["id"]))
    if not args.quiet:
        done = "Shared" if response.status_code == 201 else "Changed the share of"
        print(shown(f"{done} {path} with {_grantee_text(share['grantee'])} ({share['level']}); "
                    f"they use it with --share {share['id']}."), file=sys.stderr)
    return OK


def _listed(client: Client, path: str, key: str, params: dict | None = None,
            more: str = "give a PATH to list one item's") -> list[dict]:
    """A sharing listing's items; said on stderr if the server listed only its newest."""
    answer = client.get_json(f"{FS}/{path}", params=params)
    if answer.get("truncated"):
        print(f"(Only the newest {len(answer.get(key) or [])} are listed; {more}.)",
              file=sys.stderr)
    return answer.get(key) or []


def _shares_of(client: Client, node_id: str | None = None) -> list[dict]:
    return _listed(client, "shares", "shares", {"node_id": node_id} if node_id else None)


@_command
def cmd_unshare(args) -> int:
    client = _client(args)
    path = remote.normalize(args.path)
    node = _own_node(client, path)
    wanted = {"kind": "user", "name": args.user} if args.user else \
        {"kind": "group", "name": args.group}
    # Kind and name: a share to a deleted account (grantee.deleted) is removed by its name too.
    found = [s for s in _shares_of(client, node["id"])
             if {k: (s.get("grantee") or {}).get(k) for k in wanted} == wanted]
    if not found:
        raise NotFoundError(f"{path} is not shared with {_grantee_text(wanted)} (see "
                            f"'cloudstrype shares {path}').")
    for share in found:
        client.request("DELETE", f"{FS}/shares/{share['id']}", ok=(204, 404), what=path)
    if not args.quiet:
        print(shown(f"{path} is no longer shared with {_grantee_text(wanted)}."),
              file=sys.stderr)
    return OK


@_command
def cmd_shares(args) -> int:
    client = _client(args)
    if args.with_me:
        if args.path:
            raise UsageError("--with-me lists every share granted to you; give no PATH.")
        shares = _listed(client, "shared", "shares",
                         more="more may be shared with you (use one with --share ID)")
        if args.json:
            _print_json(shares)
            return OK
        if not shares:
            print("Nothing is shared with you.", file=sys.stderr)
            return OK
        rows = [[s["id"], s.get("level", ""), s.get("owner", ""),
                 _grantee_text(s.get("via") or {}),
                 s.get("name", "") + ("/" if s.get("type") == remote.DIRECTORY else "")]
                for s in shares]
        _table(rows, ["ID", "LEVEL", "OWNER", "VIA", "NAME"])
        return OK
    node_id = _own_node(client, args.path)["id"] if args.path else None
    shares = _shares_of(client, node_id)
    if args.json:
        _print_json(shares)
        return OK
    if not shares:
        print(shown(f"{args.path or 'Nothing of yours'} is not shared."), file=sys.stderr)
        return OK
    rows = [[s["id"], s.get("level", "") if s.get("grants", True) else "none",
             _grantee_text(s.get("grantee") or {}) +
             (f" (grants nothing: {s['not_granting']})" if s.get("not_granting") else ""),
             s.get("path") or "(in the trash)"] for s in shares]
    _table(rows, ["ID", "LEVEL", "WITH", "PATH"])
    return OK


def _ask_hidden(prompt: str) -> str:
    """getpass at a terminal. Without one, getpass reads stdin too, after two lines of
    "GetPassWarning … Password input may be echoed" (README walk): noise, as a pipe echoes
    nothing; so stdin is read here without them (EOFError when it has ended, as getpass).
    Scripts have --password-stdin."""
    terminal = True
    if os.name == "posix":
        try:
            os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
        except OSError:
            terminal = False
    if terminal:
        return getpass.getpass(prompt)
    print(prompt, end="", file=sys.stderr, flush=True)
    line = sys.stdin.readline()
    print(file=sys.stderr)
    if not line:
        raise EOFError
    return line.rstrip("\r\n")


def _read_secret(prompt: str) -> str:
    """Asked for on a terminal, else the first line of stdin."""
    if sys.stdin.isatty():
        value = getpass.getpass(prompt)
    else:
        value = sys.stdin.readline().rstrip("\r\n")
    if not value:
        raise UsageError("The password is empty; give one, or leave out --password.")
    return value


def _links(client: Client) -> list[dict]:
    return _listed(client, "links", "links",
                   more="an older one is revoked by its whole id (link --revoke ID)")


def _find_link(client: Client, ident: str) -> str:
    """A link id from its full 64 hex digits or a unique prefix of them (as 'links' shows)."""
    ident = ident.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{4,64}", ident):
        raise UsageError(f"Not a link id: {ident!r}; give the id or its first 4 or more hex "
                         f"digits, as 'cloudstrype links' shows it.")
    if len(ident) == 64:
        return ident
    found = [link["id"] for link in _links(client) if link["id"].startswith(ident)]
    if not found:
        raise NotFoundError(f"No link {ident} (see 'cloudstrype links').")
    if len(found) > 1:
        raise UsageError(f"Several links start with {ident}; give more of the id.")
    return found[0]


@_command
def cmd_link(args) -> int:
    client = _client(args)
    if args.revoke:
        if args.path or args.password or args.expires is not None:
            raise UsageError("--revoke takes only the link id.")
        link_id = _find_link(client, args.revoke)
        client.request("DELETE", f"{FS}/links/{link_id}", ok=(204,), what=f"link {args.revoke}")
        if not args.quiet:
            print(f"Revoked link {link_id[:12]}; it answers 'revoked' from now on.",
                  file=sys.stderr)
        return OK
    if not args.path:
        raise UsageError("Give the PATH to make a link to (or --revoke ID).")
    path = remote.normalize(args.path)
    body: dict = {"path": path}
    if args.password:
        body["password"] = _read_secret("Link password: ")
    if args.expires is not None:
        # 0 is a duration too, and the server refuses it in words (never a link that lasts).
        body["expires_in"] = args.expires
    try:
        link = client.request("POST", f"{FS}/links", json=body, ok=(201,), resend_lost=False,
                              what=path).json()
    except CliError as exc:
        if answer_lost(exc):
            # Not sent again: each request makes a link, whose address is shown only in its
            # answer, so the one made may be there unshown.
            raise CliError(f"{exc.message} A link to {path} may have been made all the same, "
                           f"its address lost with the answer: 'cloudstrype links' lists it, "
                           f"'cloudstrype link --revoke ID' revokes it; then make one again.",
                           exc.exit_code, status=exc.status, code=exc.code) from None
        bounds = re.search(r"'expires_in' must be whole seconds from (\d+) to (\d+)",
                           exc.message) if exc.code == "invalid_field" else None
        if bounds:
            # Said as the option the user typed, not the API's field.
            least, most = (int(n) for n in bounds.groups())
            raise UsageError(f"--expires must be from {least} second{'s' if least != 1 else ''} "
                             f"to {most // 86400} days "
                             f"({least}s to {most}s).") from None
        raise
    if args.json:
        _print_json(link)
        return OK
    print(shown(link["url"]))
    if not args.quiet:
        until = f", until {_local_time(link['expires_at'])}" if link.get("expires_at") else ""
        lock = ", with a password" if link.get("password") else ""
        print(shown(f"Anyone with this address can read {path}{lock}{until}. It is shown only "
                    f"now; revoke it with 'cloudstrype link --revoke {link['id'][:12]}'."),
              file=sys.stderr)
    return OK


@_command
def cmd_links(args) -> int:
    links = _links(_client(args))
    if args.json:
        _print_json(links)
        return OK
    if not links:
        print("You have made no links.", file=sys.stderr)
        return OK
    rows = [[link["id"][:12], link.get("state", ""), "yes" if link.get("password") else "no",
             _local_time(link.get("expires_at")) if link.get("expires_at") else "never",
             link.get("path") or "(in the trash)"] for link in links]
    _table(rows, ["ID", "STATE", "PASSWORD", "EXPIRES", "PATH"])
    return OK


# -- trash (docs/trash-api.md) ---------------------------------------------------------------------

def _trash(client: Client) -> tuple[list[dict], int | None]:
    items: list[dict] = []
    cursor, retention = None, None
    while True:
        params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = client.get_json(f"{FS}/trash", params=params)
        items.extend(page.get("items") or [])
        retention = page.get("retention_days", retention)
        cursor = page.get("next_cursor")
        if not cursor:
            return items, retention


def _trash_item(client: Client, ident: str) -> dict:
    """A trash item by id, or the newest one deleted from the path `ident`."""
    if ident.startswith("/"):
        path = remote.normalize(ident)
        for item in _trash(client)[0]:            # newest deleted first
            if item.get("original_path") == path:
                return item
        raise NotFoundError(f"Nothing deleted from {path} is in the trash (see "
                            f"'cloudstrype trash').")
    return client.get_json(f"{FS}/trash/{ident}", what=f"trash item {ident}")


@_command
def cmd_trash_list(args) -> int:
    items, retention = _trash(_client(args))
    if args.json:
        _print_json({"items": items, "retention_days": retention})
        return OK
    if not items:
        print("The trash is empty.", file=sys.stderr)
        return OK
    rows = [[item["id"], item.get("type", ""), human_size(item.get("size")),
             _local_time(item.get("deleted")),
             item.get("original_path", "") + ("/" if item.get("type") == remote.DIRECTORY
                                              else "")] for item in items]
    _table(rows, ["ID", "TYPE", "SIZE", "DELETED", "ORIGINAL PATH"], {2})
    if not args.quiet and retention is not None:
        print(_retention_text(retention), file=sys.stderr)
    return OK


def _retention_text(days) -> str:
    if days == 0:
        return "Items are deleted for good by the next maintenance run after they were deleted."
    return f"Items are deleted for good {plural(days, 'day')} after they were deleted."


@_command
def cmd_usage(args) -> int:
    """What the account keeps against its quota: the live files, the trash, and what deleted
    packed files still hold until compaction (GET /api/filesystem/usage)."""
    usage = _client(args).get_json(f"{FS}/usage")
    if args.json:
        _print_json(usage)
        return OK

    def size(key: str) -> str:
        return human_size(usage.get(key))

    quota = usage.get("quota_bytes") or 0
    stored = usage.get("stored_bytes") or 0
    rows = [["stored", size("stored_bytes"), "what you keep, counted once (before redundancy)"],
            ["  files", size("live_bytes"), "your files and their earlier versions"],
            ["  trash", size("trash_bytes"), "freed when the trash is emptied"],
            ["  dead", size("dead_bytes"),
             "deleted small files still in packs: freed by the next compaction"]]
    if quota:
        rows.append(["quota", human_size(quota), f"{min(100, stored * 100 // quota)}% used, "
                                                 f"{human_size(max(0, quota - stored))} left"])
    else:
        rows.append(["quota", "none", "no limit is set for this account"])
    rows.append(["uploads", f"{usage.get('open_uploads', 0)} of "
                            f"{usage.get('max_open_uploads', '-')}",
                 "big uploads under way (sessions open)"])
    _table(rows, ["", "SIZE", ""], {1})
    return OK


def _restored(client: Client, item: dict, body: dict) -> dict:
    """The node a trash item was restored as. Sent again after a lost answer, the restore meets
    the 404 its first attempt caused (the item is out of the trash): the item's node, found
    live, is that first attempt's work ("not found", exit 4, said though it was restored)."""
    url, what = f"{FS}/trash/{item['id']}/restore", f"restoring {item.get('original_path')}"
    try:
        return client.request("POST", url, json=body, retry=True, resend_lost=False, ok=(200,),
                              what=what).json()
    except CliError as exc:
        if not answer_lost(exc):
            raise
    client.backoff(1)
    try:
        return client.request("POST", url, json=body, retry=True, ok=(200,), what=what).json()
    except CliError as exc:
        if exc.status != 404:
            raise
        try:
            return remote.file_info(client, item["id"])
        except CliError:
            raise exc from None


@_command
def cmd_trash_restore(args) -> int:
    client = _client(args)
    item = _trash_item(client, args.item)
    body = {}
    if args.to:
        body["path"] = remote.normalize(args.to)
    if args.name:
        body["name"] = args.name
    node = _restored(client, item, body)
    if args.json:
        _print_json(node)
        return OK
    print(shown(node.get("path")))
    if not args.quiet:
        print(shown(f"Restored {item.get('original_path')} to {node.get('path')}."),
              file=sys.stderr)
    return OK


@_command
def cmd_trash_delete(args) -> int:
    client = _client(args)
    item = _trash_item(client, args.item)
    client.delete_settled(f"{FS}/trash/{item['id']}", ok=(204,),
                          what=f"deleting {item.get('original_path')}")
    if not args.quiet:
        print(shown(f"Deleted {item.get('original_path')} for good."), file=sys.stderr)
    return OK


@_command
def cmd_trash_empty(args) -> int:
    client = _client(args)
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("Emptying the trash deletes everything in it for good; add --yes "
                             "to do it without a question.")
        sys.stderr.write("Delete everything in the trash for good? [y/N] ")
        sys.stderr.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            print("Nothing was deleted.", file=sys.stderr)
            return OK
    deleted = 0
    while True:                      # a very large trash takes more than one request
        answer = client.request("DELETE", f"{FS}/trash", ok=(200,), what="emptying the trash")
        result = answer.json()
        deleted += int(result.get("deleted") or 0)
        if result.get("complete", True):
            break
    if args.json:
        _print_json({"deleted": deleted})
    elif not args.quiet:
        print(f"Emptied the trash: {deleted} item{'' if deleted == 1 else 's'} deleted for good "
              f"(space not freed yet is freed by the next maintenance run; `cloudstrype usage` "
              f"shows the trash going down).", file=sys.stderr)
    return OK


# -- registration ---------------------------------------------------------------------------------

def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--server", metavar="URL", default=argparse.SUPPRESS,
                        help="the Cloudstrype server (default: $CLOUDSTRYPE_SERVER, else the "
                             "one you logged in to, else http://127.0.0.1:8080)")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="no progress bars or notes; errors only")
    return common


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable JSON on stdout")


def _jobs_flag(parser: argparse.ArgumentParser, default: int = 4) -> None:
    parser.add_argument("-j", "--jobs", type=_positive, default=default, metavar="N",
                        help=f"parallel transfers: files at once, and parts/ranges at once "
                             f"(default {default})")


def _share_id(text: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{24}", text.strip().lower()):
        raise argparse.ArgumentTypeError(f"not a share id: {text!r} (24 hex digits, as "
                                         f"'cloudstrype shares --with-me' shows)")
    return text.strip().lower()


def _share_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--share", metavar="SHARE_ID", type=_share_id,
                        help="work inside a share granted to you: paths start at the shared "
                             "folder ('/'); see 'cloudstrype shares --with-me'")


def add_commands(commands) -> None:
    """Register the desktop commands on the `cloudstrype` subparsers."""
    common = _common()

    def add(name: str, help_text: str, handler, **kwargs) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=help_text, parents=[common],
                                     description=help_text, epilog=EXIT_CODES_HELP, **kwargs)
        parser.set_defaults(run=handler)
        return parser

    login = add("login", "log in and save the credentials", cmd_login)
    login.add_argument("--username", "-u", help="(asked for when omitted)")
    login.add_argument("--password-stdin", action="store_true",
                       help="read the password from the first line of stdin")
    add("logout", "end the sign-in on the server and forget the saved credentials",
        cmd_logout)
    passwd = add("passwd", "change your password (asks for the current one)", cmd_passwd)
    passwd.add_argument("--password-stdin", action="store_true",
                        help="read the current password from the first line of stdin and the "
                             "new one from the second")

    ls = add("ls", "list a directory", cmd_ls)
    ls.add_argument("path", nargs="?", default="/", metavar="PATH")
    ls.add_argument("-l", dest="long", action="store_true",
                    help="long format: type, size in bytes, modified time, name")
    ls.add_argument("-R", dest="recursive", action="store_true",
                    help="everything below PATH, as paths relative to it")
    _json_flag(ls)
    _jobs_flag(ls)

    put = add("put", "upload local files and folders", cmd_put,
              formatter_class=argparse.RawDescriptionHelpFormatter)
    put.description = ("Upload files and folders. A folder SRC becomes DEST/NAME; 'SRC/' copies "
                       "its contents into DEST. One file becomes DEST unless DEST is a "
                       "directory or ends in '/'. Interrupted big uploads resume when the same "
                       "command runs again. Files whose remote copy has the same size and "
                       "modification time are skipped (unchanged), as with 'rclone copy'; the "
                       "counts end the output: N sent, M skipped (unchanged), K failed.")
    put.add_argument("sources", nargs="+", metavar="SRC", help="local file or folder")
    put.add_argument("dest", metavar="DEST", help="remote path, e.g. /backup/")
    put.add_argument("-c", "--checksum", action="store_true",
                     help="skip files by size and sha256 (hashed here) instead of size and "
                          "modification time")
    put.add_argument("-n", "--dry-run", action="store_true",
                     help="list what would be sent; send nothing")
    _json_flag(put)
    _jobs_flag(put)

    get = add("get", "download files and folders", cmd_get)
    get.description = ("Download files and folders. A folder SRC becomes DEST/NAME; 'SRC/' "
                       "copies its contents into DEST. One file becomes DEST unless DEST is a "
                       "directory or ends in '/'. Files are checked against their size and "
                       "sha256 before they replace anything.")
    get.add_argument("sources", nargs="+", metavar="SRC", help="remote file or folder")
    get.add_argument("dest", metavar="DEST", help="local path")
    _jobs_flag(get)

    mkdir = add("mkdir", "create directories", cmd_mkdir)
    mkdir.add_argument("paths", nargs="+", metavar="PATH")
    mkdir.add_argument("-p", "--parents", action="store_true",
                       help="create missing parents; no error when it exists")

    mv = add("mv", "rename or move files and directories", cmd_mv)
    mv.add_argument("sources", nargs="+", metavar="SRC")
    mv.add_argument("dest", metavar="DEST",
                    help="an existing directory to move into, or the new path")

    rm = add("rm", "delete files and directories", cmd_rm)
    rm.add_argument("paths", nargs="+", metavar="PATH")
    rm.add_argument("-r", "-R", "--recursive", dest="recursive", action="store_true",
                    help="delete directories and everything in them")
    rm.add_argument("-f", "--force", action="store_true", help="no error for missing paths")
    rm.add_argument("--version", dest="versions", action="append", metavar="VERSION",
                    help="delete this earlier version of the file PATH for good, freeing its "
                         "content (repeatable; 'cloudstrype info PATH' lists them); the file "
                         "and its current version stay")

    cat = add("cat", "write files' contents to stdout", cmd_cat)
    cat.add_argument("paths", nargs="+", metavar="PATH")
    _jobs_flag(cat)

    info = add("info", "show a file's or directory's metadata", cmd_info)
    info.add_argument("path", metavar="PATH")
    _json_flag(info)

    storages = add("storages", "list, add, connect, drain (and undrain) and remove storages",
                   lambda args: cmd_storages_list(args))
    _json_flag(storages)
    tasks = storages.add_subparsers(dest="storages_command", metavar="TASK")
    listing = tasks.add_parser("list", help="the storages with usage and health",
                               parents=[common])
    _json_flag(listing)
    listing.set_defaults(run=cmd_storages_list)

    adding = tasks.add_parser("add", help="add a key-based or local storage", parents=[common])
    kinds = adding.add_subparsers(dest="kind", metavar="KIND")
    kinds.required = True
    local = kinds.add_parser("local", help="a directory on the server's machine",
                             parents=[common])
    local.add_argument("path", metavar="PATH")
    s3 = kinds.add_parser("s3", help="an S3-compatible bucket", parents=[common])
    s3.add_argument("--bucket", required=True)
    s3.add_argument("--access-key", required=True)
    s3.add_argument("--secret-key", help="(better: --secret-key-stdin, or asked for)")
    s3.add_argument("--secret-key-stdin", action="store_true")
    s3.add_argument("--endpoint-url", help="empty for AWS S3")
    s3.add_argument("--region")
    s3.add_argument("--prefix")
    for parser, handler in ((local, cmd_storages_add_local), (s3, cmd_storages_add_s3)):
        parser.add_argument("--name", help="a name to show")
        parser.add_argument("--capacity", type=parse_size, metavar="SIZE",
                            help="how much Cloudstrype may use, e.g. 500G")
        _json_flag(parser)
        parser.set_defaults(run=handler)

    connect = tasks.add_parser("connect", help="connect a cloud account (OAuth)",
                               parents=[common])
    connect.add_argument("provider", choices=OAUTH_PROVIDERS)
    connect.add_argument("--name", help="a name to show")
    connect.add_argument("--no-browser", action="store_true", help="only print the address")
    connect.add_argument("--wait", type=int, default=0, metavar="SECONDS",
                         help="give up after SECONDS without a finish code (default: no limit)")
    _json_flag(connect)
    connect.set_defaults(run=cmd_storages_connect)

    remove = tasks.add_parser("remove", help="remove an empty storage", parents=[common])
    remove.add_argument("storage", metavar="ID", help="storage id or name")
    remove.add_argument("--drain", action="store_true",
                        help="move its shares elsewhere first")
    remove.set_defaults(run=cmd_storages_remove)

    drain = tasks.add_parser("drain", help="move a storage's shares to the others",
                             parents=[common])
    drain.add_argument("storage", metavar="ID", help="storage id or name")
    drain.set_defaults(run=cmd_storages_drain)

    undrain = tasks.add_parser("undrain", help="stop draining a storage: it takes new shares "
                               "again", parents=[common])
    undrain.add_argument("storage", metavar="ID", help="storage id or name")
    undrain.set_defaults(run=cmd_storages_undrain)

    members = add("members", "list the array members (desktop machines)", cmd_members)
    _json_flag(members)

    for parser in (ls, put, get, mkdir, mv, rm, cat, info):
        _share_flag(parser)

    share = add("share", "share a file or folder with a user or a group (or change the level)",
                cmd_share)
    share.add_argument("path", metavar="PATH", help="your file or folder")
    whom = share.add_mutually_exclusive_group(required=True)
    whom.add_argument("--with", dest="user", metavar="USER", help="a username")
    whom.add_argument("--group", metavar="GROUP", help="a group you are in")
    share.add_argument("--write", action="store_true",
                       help="let them upload, rename and delete inside (folders only); "
                            "without it: read only")
    _json_flag(share)

    unshare = add("unshare", "stop sharing a file or folder with a user or a group",
                  cmd_unshare)
    unshare.add_argument("path", metavar="PATH")
    whom = unshare.add_mutually_exclusive_group(required=True)
    whom.add_argument("--with", dest="user", metavar="USER", help="a username")
    whom.add_argument("--group", metavar="GROUP", help="a group name")

    shares = add("shares", "list the shares you made (of PATH), or those granted to you",
                 cmd_shares)
    shares.add_argument("path", nargs="?", metavar="PATH", help="only this item's shares")
    shares.add_argument("--with-me", action="store_true",
                        help="what others share with you (the ids go to --share)")
    _json_flag(shares)

    link = add("link", "make a read-only link that works without an account (or revoke one)",
               cmd_link)
    link.add_argument("path", nargs="?", metavar="PATH", help="your file or folder")
    link.add_argument("--password", action="store_true",
                      help="ask for a password the link needs (read from stdin when it is "
                           "not a terminal)")
    link.add_argument("--expires", type=parse_duration, metavar="DURATION",
                      help="stop working after this long, e.g. 12h, 7d, 2w")
    link.add_argument("--revoke", metavar="ID",
                      help="revoke the link with this id (or a unique start of it)")
    _json_flag(link)

    links = add("links", "list the links you made, with their state", cmd_links)
    _json_flag(links)

    usage = add("usage", "what your account keeps against its quota: files, trash, and what "
                         "deleted small files hold until compaction", cmd_usage)
    _json_flag(usage)

    trash = add("trash", "list, restore and empty the trash", lambda args: cmd_trash_list(args))
    _json_flag(trash)
    trash_tasks = trash.add_subparsers(dest="trash_command", metavar="TASK")
    listing = trash_tasks.add_parser("list", help="what is in the trash, newest first",
                                     parents=[common])
    _json_flag(listing)
    listing.set_defaults(run=cmd_trash_list)
    restore = trash_tasks.add_parser("restore", help="put an item back", parents=[common],
                                     epilog=EXIT_CODES_HELP)
    restore.add_argument("item", metavar="ID|PATH",
                         help="a trash id, or the path it was deleted from (the newest item "
                              "deleted from there)")
    restore.add_argument("--to", metavar="DIR",
                         help="restore into this directory (made if missing) instead of its "
                              "original place")
    restore.add_argument("--name", help="restore under this name (an error if taken)")
    _json_flag(restore)
    restore.set_defaults(run=cmd_trash_restore)
    delete = trash_tasks.add_parser("delete", help="delete one item for good", parents=[common])
    delete.add_argument("item", metavar="ID|PATH")
    delete.set_defaults(run=cmd_trash_delete)
    empty = trash_tasks.add_parser("empty", help="delete everything in the trash for good",
                                   parents=[common])
    empty.add_argument("--yes", "-y", action="store_true", help="do not ask first")
    _json_flag(empty)
    empty.set_defaults(run=cmd_trash_empty)
