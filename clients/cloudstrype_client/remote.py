"""Remote paths: resolving them to nodes, listing directories (all pages), walking trees."""
from __future__ import annotations

import posixpath
from concurrent.futures import ThreadPoolExecutor

from cloudstrype_client.api import Client
from cloudstrype_client.errors import NOT_FOUND, CliError, NotFoundError, UsageError

PAGE = 1000
DIRECTORY = "directory"
FILE = "file"


def is_text(name: str) -> bool:
    """Whether a name can be a remote one: Python holds the bytes of a local name that is not
    UTF-8 as lone surrogates, which cannot travel."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def normalize(path: str) -> str:
    """'/a//b/' -> '/a/b'. Remote paths are absolute; '.' and '..' are not resolved here (the
    server refuses them with a message)."""
    if not path.startswith("/"):
        raise UsageError(f"Remote paths are absolute, like /photos/x.jpg; got {path!r}.")
    if not is_text(path):
        raise UsageError(f"The remote path {path} is not valid UTF-8 (remote names are "
                         f"text).")
    parts = [p for p in path.split("/") if p != ""]
    return "/" + "/".join(parts)


def join(directory: str, *names: str) -> str:
    path = directory
    for name in names:
        path = path.rstrip("/") + "/" + name
    return path or "/"


def split(path: str) -> tuple[str, str]:
    """'/a/b' -> ('/a', 'b'); '/b' -> ('/', 'b')."""
    path = normalize(path)
    if path == "/":
        raise UsageError("The root directory '/' has no name and no parent.")
    directory, name = posixpath.split(path)
    return directory or "/", name


def stat(client: Client, path: str) -> dict | None:
    """The node at `path` (id, name, type, size, path, ...) or None when nothing is there."""
    path = normalize(path)
    try:
        return client.get_json("/api/filesystem/info", params={"path": path, "depth": 0})
    except CliError as exc:
        if exc.exit_code == NOT_FOUND:
            return None
        if exc.code == "not_a_directory":
            return None          # a file in the middle of the path: nothing at this path
        raise


def lookup(client: Client, path: str) -> dict:
    node = stat(client, path)
    if node is None:
        raise NotFoundError(f"No such file or directory: {normalize(path)}")
    return node


def file_info(client: Client, node_id: str) -> dict:
    return client.get_json(f"/api/filesystem/info/{node_id}")


def list_dir(client: Client, path: str) -> list[dict]:
    """Every child of the directory at `path`, following `next_cursor` to the last page."""
    path = normalize(path)
    children: list[dict] = []
    cursor = None
    while True:
        params = {"path": path, "depth": 1, "limit": PAGE}
        if cursor:
            params["cursor"] = cursor
        try:
            page = client.get_json("/api/filesystem/info", params=params)
        except CliError as exc:
            if exc.exit_code == NOT_FOUND:
                raise NotFoundError(f"No such file or directory: {path}") from None
            raise
        if page.get("type") != DIRECTORY:
            raise CliError(f"Not a directory: {path}", 2)
        children.extend(page.get("children") or [])
        cursor = page.get("next_cursor")
        if not cursor:
            return children


def walk(client: Client, path: str, jobs: int = 4) -> list[tuple[str, dict]]:
    """Everything below the directory at `path` as (relative path, entry), parents before their
    children; directories of one level are listed in parallel."""
    path = normalize(path)
    found: list[tuple[str, dict]] = []
    level = [("", path)]
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="walk") as pool:
        while level:
            listings = list(pool.map(lambda item: (item[0], list_dir(client, item[1])), level))
            level = []
            for relative, children in listings:
                for entry in sorted(children, key=lambda e: e["name"]):
                    rel = f"{relative}/{entry['name']}" if relative else entry["name"]
                    found.append((rel, entry))
                    if entry.get("type") == DIRECTORY:
                        level.append((rel, join(path, rel)))
    return found
