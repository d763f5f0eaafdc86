"""Bad input is a clear 4xx naming what to fix, never a 500 (issue 12, finding 13): each attack
of the round, replayed through HTTP against the running stack."""
import threading

import pytest
from cloudstrype.metadata.engine import decode_cursor, encode_cursor

from tests.support import assert_error, unique

DEEP = "[" * 100000


def test_deeply_nested_json_is_refused_unauthenticated_and_signed_in(api, user):
    for path, who in (("/api/auth/login", api), ("/api/filesystem/dirs", user.api),
                      ("/api/filesystem/uploads", user.api)):
        for body in (DEEP, '{"a":' * 100000, '{"path": ' + "[" * 40 + "]" * 40 + "}"):
            response = who.post(path, data=body, headers={"Content-Type": "application/json"})
            error = assert_error(response, 400, "invalid_json")
            assert "deep" in error["message"] or "JSON" in error["message"]


def test_a_json_body_larger_than_the_bound_is_413(user):
    body = '{"path": "/' + "a" * (2 * 1024 * 1024) + '"}'
    response = user.api.post("/api/filesystem/dirs", data=body,
                             headers={"Content-Type": "application/json"})
    assert_error(response, 413, "body_too_large")


def test_empty_refresh_token_and_confirm_fields_are_4xx(api):
    refreshed = api.post("/api/auth/refresh", json={"refresh_token": ""})
    assert 400 <= refreshed.status_code < 500, refreshed.text
    confirmed = api.post("/api/auth/confirm", json={"username": "", "code": ""})
    assert 400 <= confirmed.status_code < 500, confirmed.text


def test_a_crafted_listing_cursor_is_400(user):
    for name in ("a", "b", "c"):
        assert user.api.post("/api/filesystem/dirs", json={"path": f"/{name}"}).status_code \
            == 201
    page = user.api.get("/api/filesystem/info", params={"path": "/", "limit": 1}).json()
    given = decode_cursor(page["next_cursor"])
    # The cursor is opaque but not signed: a caller can re-encode it with any position.
    for position in ([{"a": 1}], [[1, 2]], [2 ** 70], ["\ud800"], [None], [True], [1, 2]):
        crafted = encode_cursor({**given, "p": position})
        response = user.api.get("/api/filesystem/info",
                                params={"path": "/", "limit": 1, "cursor": crafted})
        assert_error(response, 400, "invalid_cursor")
    for junk in ("%%%", "e30", "W10", "\u00e9t\u00e9"):
        response = user.api.get("/api/filesystem/info", params={"path": "/", "cursor": junk})
        assert_error(response, 400, "invalid_cursor")


def _multipart(user, path: str, body: bytes):
    return user.api.post(path, data=body,
                         headers={"Content-Type": "multipart/form-data; boundary=b"})


@pytest.mark.parametrize("path", ["/api/filesystem/data", "/api/chunk"])
def test_non_utf8_multipart_names_and_values_are_400(user, path):
    bad_value = (b'--b\r\nContent-Disposition: form-data; name="encryption"\r\n\r\n\xfe\r\n'
                 b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n'
                 b'\r\nhello\r\n--b--\r\n')
    error = assert_error(_multipart(user, path, bad_value), 400, "invalid_multipart")
    assert "UTF-8" in error["message"]
    bad_name = (b'--b\r\nContent-Disposition: form-data; name="file"; filename="\xff\xfe.bin"'
                b'\r\n\r\nhello\r\n--b--\r\n')
    error = assert_error(_multipart(user, path, bad_name), 400, "invalid_multipart")
    assert "UTF-8" in error["message"]


def test_part_numbers_are_ascii_digits(user):
    assert user.api.post("/api/cloud/storages", json={
        "kind": "local", "name": "parts", "config": {"path": unique("parts")}}).status_code == 201
    session = user.api.post("/api/filesystem/uploads", json={"name": "p.bin", "size": 10})
    assert session.status_code == 201, session.text
    upload_id = session.json()["upload_id"]
    for part in ("\u00b3", "\u0663", "1_0", " 0", "-1", "9" * 40):
        response = user.api.put(f"/api/filesystem/uploads/{upload_id}/parts/{part}",
                                data=b"0123456789")
        assert_error(response, 400, "invalid_part")
    stored = user.api.put(f"/api/filesystem/uploads/{upload_id}/parts/0", data=b"0123456789")
    assert stored.status_code == 200, stored.text


def test_nul_or_over_long_local_paths_are_400(user):
    # Relative paths: inside the storage root, so only the path's own form is wrong.
    for path in ("a\x00b", "a" * 5000, "/".join(["a" * 255] * 40)):
        response = user.api.post("/api/cloud/storages", json={
            "kind": "local", "name": "odd", "config": {"path": path}})
        assert_error(response, 400)


def test_concurrent_deletes_of_one_blob_answer_204_once_then_404(user):
    for n in range(2):
        # Relative: under the stack's storage root.
        added = user.api.post("/api/cloud/storages", json={
            "kind": "local", "name": f"race{n}", "config": {"path": unique("race")}})
        assert added.status_code == 201, added.text
    for attempt in range(5):
        blob = f"race-{attempt}"
        stored = user.api.post(f"/api/cloud/{blob}", data=b"x" * 1000,
                               params={"replicas": 2})
        assert stored.status_code == 201, stored.text
        answers, start = [], threading.Barrier(6)

        def delete(blob=blob, answers=answers, start=start):
            start.wait()
            answers.append(user.api.delete(f"/api/cloud/{blob}").status_code)

        threads = [threading.Thread(target=delete) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(answers) == [204] + [404] * 5, answers


def test_a_path_with_an_encoded_newline_gets_the_apis_json_answer(api, user):
    # aiohttp's own text/plain 404 used to answer these: the API's routes never saw them.
    for method, path, status in (("GET", "/api/array/members/%0A", 404),
                                 ("DELETE", "/api/auth/users/a%0Ab", 403),   # admins only
                                 ("GET", "/api/nowhere%0A", 404)):
        response = user.api.request(method, path)
        assert response.status_code == status, response.text
        assert response.headers["Content-Type"].startswith("application/json")


def test_an_s3_region_botocore_refuses_is_a_400_naming_the_field(user):
    for region in ("0", "00", "a-", "-a"):
        response = user.api.post("/api/cloud/storages", json={
            "name": unique("s3"), "kind": "s3",
            "config": {"bucket": "bucket-1", "access_key": "a", "secret_key": "b",
                       "region": region}})
        error = assert_error(response, 400)
        assert "region" in error["message"]


def test_whole_number_floats_are_integers(user):
    started = user.api.post("/api/filesystem/uploads", json={"name": "f.bin", "size": 1024.0})
    assert started.status_code != 400 or "size" not in started.text, started.text
    refused = user.api.post("/api/filesystem/uploads", json={"name": "f.bin", "size": 1024.5})
    error = assert_error(refused, 400)
    assert "size" in error["message"]
