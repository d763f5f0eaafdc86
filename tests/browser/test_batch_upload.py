"""Many small files chosen or dropped in the web UI go up in batches: one request to
POST /api/filesystem/batch for a folder's worth, every file shown and listed, and a file the
server refuses fails alone in its own row."""
from __future__ import annotations

import hashlib
import time

from playwright.sync_api import expect

from tests.support import wait_for

from .helpers import open_files, row, sign_in_with_tokens, upload_files, wait_for_transfer


def _uploads(requests: list[tuple[str, str]]) -> tuple[int, int]:
    """(batch requests, one-file upload requests) seen so far."""
    batches = sum(1 for m, u in requests if m == "POST" and "/api/filesystem/batch" in u)
    single = sum(1 for m, u in requests if m == "POST" and "/api/filesystem/data" in u)
    return batches, single


def test_chosen_and_dropped_small_files_go_up_in_one_batch_each(page, base_url, web_user):
    requests: list[tuple[str, str]] = []
    page.on("request", lambda r: requests.append((r.method, r.url)))
    # A folder already has this name: the server refuses that one file (409), not the batch.
    assert web_user.api.post("/api/filesystem/dirs",
                             json={"path": "/clash.txt"}).status_code == 201
    sign_in_with_tokens(page, base_url, web_user)
    open_files(page, base_url)

    chosen = {f"pick-{n:02}.txt": f"picked file {n}\n".encode() * (n + 1) for n in range(29)}
    chosen["clash.txt"] = b"refused: a folder has this name"
    upload_files(page, [{"name": name, "mimeType": "text/plain", "buffer": data}
                        for name, data in chosen.items()])
    for name in chosen:
        if name != "clash.txt":
            wait_for_transfer(page, name)
    clash = wait_for_transfer(page, "clash.txt", state="failed")
    expect(clash).to_contain_text("Failed:")
    assert _uploads(requests) == (1, 0)

    # Thirty dropped files: one more batch.
    area = page.locator(".files-area")
    transfer = page.evaluate_handle("""() => {
        const data = new DataTransfer();
        for (let n = 0; n < 30; n += 1) {
            const name = `drop-${String(n).padStart(2, "0")}.txt`;
            data.items.add(new File([`dropped ${n}\\n`.repeat(n + 1)], name,
                                    {type: "text/plain", lastModified: 1700000000000 + n * 1000}));
        }
        return data;
    }""")
    area.dispatch_event("dragenter", {"dataTransfer": transfer})
    area.dispatch_event("drop", {"dataTransfer": transfer})
    for n in range(30):
        wait_for_transfer(page, f"drop-{n:02}.txt")
    assert _uploads(requests) == (2, 0)
    expect(row(page, "drop-29.txt")).to_be_visible()
    expect(row(page, "pick-28.txt")).to_be_visible()

    listing = web_user.api.get("/api/filesystem/info", params={"path": "/"}).json()
    files = {c["name"]: c for c in listing["children"] if c["type"] == "file"}
    dropped = {f"drop-{n:02}.txt": f"dropped {n}\n".encode() * (n + 1) for n in range(30)}
    expected = {**{k: v for k, v in chosen.items() if k != "clash.txt"}, **dropped}
    assert set(files) == set(expected)
    for name, data in expected.items():
        info = web_user.api.get(f"/api/filesystem/info/{files[name]['id']}").json()
        assert info["sha256"] == hashlib.sha256(data).hexdigest(), name
    # Each file keeps its own modification time (sent with the batch as `mtimes`).
    for n in (0, 29):
        assert files[f"drop-{n:02}.txt"]["modified"] == \
            f"2023-11-14T22:{13 + (20 + n) // 60:02}:{(20 + n) % 60:02}+00:00"

    # The refused file, retried alone, still fails in its own words (one request, one file).
    clash.get_by_role("button", name="Try clash.txt again").click()
    wait_for_transfer(page, "clash.txt", state="failed")
    expect(clash).to_contain_text("Failed:")
    assert _uploads(requests) == (2, 1)


def test_a_dropped_files_name_with_quotes_is_kept(page, base_url, web_user):
    """The browser writes '"' in a part's filename as %22 (the WHATWG form); the server reads
    the name back as it was."""
    sign_in_with_tokens(page, base_url, web_user)
    open_files(page, base_url)
    names = ['say "hi".txt', "plain (1).txt", "100%22 literal.txt"]
    transfer = page.evaluate_handle("""(names) => {
        const data = new DataTransfer();
        for (const name of names) data.items.add(new File([name], name, {type: "text/plain"}));
        return data;
    }""", names)
    area = page.locator(".files-area")
    area.dispatch_event("dragenter", {"dataTransfer": transfer})
    area.dispatch_event("drop", {"dataTransfer": transfer})
    wait_for_transfer(page, "plain (1).txt")

    def listed() -> set[str]:
        listing = web_user.api.get("/api/filesystem/info", params={"path": "/"}).json()
        return {c["name"] for c in listing["children"] if c["type"] == "file"}
    wait_for(lambda: len(listed()) == 3, timeout=30, what="the three files to be listed")
    files = listed()
    assert {'say "hi".txt', "plain (1).txt"} <= files
    # The WHATWG form cannot tell a literal "%22" from a quote: that name comes back with one.
    assert '100" literal.txt' in files


def test_a_batch_refused_for_a_while_waits_as_long_as_the_server_asks(page, base_url, web_user):
    """A 503 with Retry-After (storages away for a while) is waited for as asked, and said: the
    UI's own backoff would try again in under half a second, while the storages are still away."""
    attempts: list[float] = []

    def away_first(route):
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            route.fulfill(status=503, content_type="application/json",
                          headers={"Retry-After": "3"},
                          body='{"error": {"code": "storages_unavailable", "message": '
                               '"disk-b is down for a while."}}')
        else:
            route.continue_()

    page.route("**/api/filesystem/batch", away_first)
    sign_in_with_tokens(page, base_url, web_user)
    open_files(page, base_url)
    upload_files(page, [{"name": f"later-{n}.txt", "mimeType": "text/plain",
                         "buffer": f"later {n}\n".encode()} for n in range(2)])
    expect(page.get_by_text("disk-b is down for a while. Trying again in 3 s").first
           ).to_be_visible()
    for n in range(2):
        expect(wait_for_transfer(page, f"later-{n}.txt")).to_contain_text("Uploaded (1 retry)")
    assert len(attempts) == 2 and attempts[1] - attempts[0] >= 2.9, attempts
    expect(row(page, "later-1.txt")).to_be_visible()
