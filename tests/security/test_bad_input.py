"""Bad input is a clear 4xx naming what to fix, never a 500 (issue 12, finding 13): each attack
of the round, replayed through HTTP against the running stack."""
import http.client
import json
import threading
from urllib.parse import urlsplit

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


@pytest.mark.parametrize("path,field,value", [
    ("/api/filesystem/data", "path", "/twice-{n}"), ("/api/filesystem/data", "name", "f{n}.txt"),
    ("/api/filesystem/batch", "path", "/twice-{n}"), ("/api/chunk", "encryption", "aes256-gcm")])
def test_a_form_field_sent_twice_is_refused_by_name(user, path, field, value):
    """Which of the two was meant cannot be told: neither is taken, nothing is stored."""
    fields = [(field, value.format(n=n)) for n in (1, 2)]
    if path == "/api/filesystem/data" and field != "name":
        fields.append(("name", "a.txt"))
    response = user.api.post(path, data=fields, files=[("file", ("a.txt", b"hello"))])
    error = assert_error(response, 400, "invalid_multipart")
    assert error["details"] == {"field": field} and f"'{field}'" in error["message"]
    if "filesystem" in path:
        for _, given in fields[:2]:
            where = f"{given}/a.txt" if field == "path" else f"/{given}"
            listed = user.api.get("/api/filesystem/info", params={"path": where})
            assert listed.status_code == 404, listed.text


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


LONE = '"\\ud800"'          # JSON text for a lone UTF-16 surrogate: valid JSON, not Unicode


@pytest.mark.parametrize("path,body", [
    ("/api/auth/login", '{"username": "alice", "password": %s}' % LONE),
    ("/api/auth/login", '{"username": %s, "password": "x"}' % LONE),
    ("/api/auth/register", '{"username": "sur1", "password": "Passw0rd-long"}'.replace(
        '"Passw0rd-long"', '"Passw0rd\\ud800"')),
    ("/api/auth/confirm", '{"username": %s, "code": %s}' % (LONE, LONE)),
])
def test_a_lone_surrogate_in_a_public_json_body_is_400_naming_the_field(api, path, body):
    response = api.post(path, data=body, headers={"Content-Type": "application/json"})
    error = assert_error(response, 400, "invalid_text")
    assert "Field '" in error["message"] and "surrogate" in error["message"]


def test_a_lone_surrogate_in_a_signed_in_json_body_is_400_naming_the_field(user):
    made = user.api.post("/api/filesystem/dirs", json={"path": "/sur"})
    assert made.status_code == 201, made.text
    node_id = made.json()["id"]
    for method, path, body, field in (
            ("POST", "/api/filesystem/links", '{"path": "/sur", "password": %s}' % LONE,
             "password"),
            ("POST", "/api/filesystem/links", '{"node_id": %s}' % LONE, "node_id"),
            ("POST", "/api/filesystem/shares",
             '{"path": "/sur", "user": %s, "level": "read"}' % LONE, "user"),
            ("POST", f"/api/filesystem/info/{node_id}", '{"attributes": {"k": %s}}' % LONE,
             "attributes.k"),
            ("POST", "/api/filesystem/read", '{"ids": [%s]}' % LONE, "ids[0]"),
            ("POST", "/api/cloud/storages",
             '{"kind": "local", "name": %s, "config": {"path": "x"}}' % LONE, "name"),
            ("POST", "/api/cloud/storages",
             '{"kind": "local", "name": "n", "config": {"path": %s}}' % LONE, "config.path")):
        response = user.api.request(method, path, data=body,
                                    headers={"Content-Type": "application/json"})
        error = assert_error(response, 400, "invalid_text")
        assert f"Field '{field}'" in error["message"], (path, error)
    # A surrogate pair is one character (an emoji): accepted.
    named = user.api.post("/api/filesystem/dirs", data='{"path": "/sur/\\ud83d\\ude00"}',
                          headers={"Content-Type": "application/json"})
    assert named.status_code == 201, named.text
    assert named.json()["name"] == "\U0001f600"


def test_a_header_that_is_not_utf8_is_400_signed_in_or_not(api, user):
    for who, path in ((api, "/api/auth/me"), (user.api, "/api/filesystem/usage")):
        response = who.request("GET", path, headers={"Authorization": b"Bearer \xff\xfe"})
        error = assert_error(response, 400, "invalid_header")
        assert "authorization" in error["message"].lower()
    made = user.api.post("/api/filesystem/dirs", json={"path": "/linked"})
    link = user.api.post("/api/filesystem/links", json={"path": "/linked", "password": "pw"})
    assert made.status_code == 201 and link.status_code == 201, link.text
    token = link.json()["token"]
    response = api.get(f"/api/filesystem/public/{token}",
                       headers={"X-Link-Password": b"\xff\xfe"})
    error = assert_error(response, 400, "invalid_header")
    assert "x-link-password" in error["message"].lower()


def test_a_number_too_long_to_read_is_400_without_internals(user):
    response = user.api.post("/api/filesystem/uploads", data='{"name": "n.bin", "size": %s}'
                             % ("9" * 5000), headers={"Content-Type": "application/json"})
    error = assert_error(response, 400, "invalid_json")
    assert "digits" in error["message"] and "sys." not in error["message"]


def test_json_numbers_no_engine_keeps_exactly_are_400(user):
    # NaN and Infinity are not JSON; an integer past 64 bits or a float past the largest
    # double would be stored as something else than was sent (SQLite's JSON read back, or
    # DynamoDB's numbers), so each is refused, and the attributes stay as they were.
    made = user.api.post("/api/filesystem/dirs", json={"path": "/numbers"})
    assert made.status_code == 201, made.text
    node = made.json()["id"]
    for number, said in (("NaN", "NaN"), ("-Infinity", "-Infinity"),
                         ("12345678901234567890123", "64 bits"), ("9223372036854775808",
                                                                   "64 bits"),
                         ("1e400", "larger than"), ("-1e400", "larger than"),
                         ("1" + "0" * 5000, "5001 digits")):
        response = user.api.post(f"/api/filesystem/info/{node}", data='{"attributes": '
                                 '{"k": %s}}' % number,
                                 headers={"Content-Type": "application/json"})
        error = assert_error(response, 400, "invalid_json")
        assert said in error["message"] and "'attributes.k'" in error["message"], (number,
                                                                                    error)
        assert error["details"] == {"field": "attributes.k"} and len(error["message"]) < 200
    for number, kept in (("9223372036854775807", 9223372036854775807),
                         ("-9223372036854775808", -9223372036854775808), ("1.5e300", 1.5e300)):
        response = user.api.post(f"/api/filesystem/info/{node}", data='{"attributes": '
                                 '{"k": %s}}' % number,
                                 headers={"Content-Type": "application/json"})
        assert response.status_code == 200, response.text
        read = user.api.get(f"/api/filesystem/info/{node}")
        assert read.json()["attributes"]["k"] == kept and \
            type(read.json()["attributes"]["k"]) is type(kept), read.text


def test_a_form_mtime_is_ascii_decimal_seconds(user):
    assert user.api.post("/api/cloud/storages", json={
        "kind": "local", "name": "mt", "config": {"path": unique("mt")}}).status_code == 201
    for text in ("\u0661\u0667\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660", "1_700_000_000",
                 "inf", "nan", " 17", "+5", "0x10", "1e400"):
        response = user.api.post("/api/filesystem/data", files={"file": ("m.txt", b"m")},
                                 data={"path": "/", "mtime": text.encode()})
        error = assert_error(response, 400, "invalid_field")
        assert "mtime" in error["message"], text
    for text, when in (("1700000000.25", "2023-11-14T22:13:20.25"), ("-86400", "1969-12-31"),
                       ("1.7e9", "2023-11-14T22:13:20"), ("1.4e-45", "1970-01-01T00:00:00")):
        made = user.api.post("/api/filesystem/data", files={"file": ("m.txt", b"m")},
                             data={"path": "/", "mtime": text})
        assert made.status_code == 201, made.text
        assert made.json()["modified"].startswith(when)


def test_headers_over_api_gateways_limit_get_the_apis_json_answer(api, user):
    for who, path in ((api, "/api/filesystem/public/nothing"), (user.api, "/api/filesystem/usage")):
        response = who.get(path, headers={"X-Link-Password": "p" * 11_000})
        error = assert_error(response, 431, "headers_too_large")
        assert "10240" in error["message"]
    under = user.api.get("/api/filesystem/usage", headers={"X-Padding": "p" * 8_000})
    assert under.status_code == 200, under.text


def test_a_long_id_is_not_echoed_whole(user):
    long_id = "s" * 5000
    for path in (f"/api/filesystem/shares/{long_id}", f"/api/filesystem/info/{long_id}",
                 f"/api/cloud/storages/{long_id}", f"/api/filesystem/trash/{long_id}"):
        error = assert_error(user.api.get(path), 404)
        assert len(error["message"]) < 400 and "characters)" in error["message"], path



def test_a_one_value_header_sent_twice_is_400_naming_it(user):
    """Two Range headers took the second (API Gateway and the local gateway hand a function the
    last); which was meant cannot be told, so such a request is refused by name."""
    added = user.api.post("/api/cloud/storages", json={
        "kind": "local", "name": unique("twice"), "config": {"path": unique("twice")}})
    assert added.status_code == 201, added.text
    made = user.api.post("/api/filesystem/data", files={"file": ("r.txt", b"0123456789")},
                         data={"path": "/twice", "durability": "raid1(1)"})
    assert made.status_code == 201, made.text
    url = urlsplit(user.api.base_url)

    def sent(headers: list[tuple[str, str]]) -> tuple[int, dict]:
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        try:
            connection.putrequest("GET", f"/api/filesystem/data/{made.json()['id']}")
            for name, value in [("Authorization", f"Bearer {user.access_token}"), *headers]:
                connection.putheader(name, value)
            connection.endheaders()
            answer = connection.getresponse()
            body = answer.read()
            return answer.status, (json.loads(body) if answer.status >= 400 else {})
        finally:
            connection.close()

    status, body = sent([("Range", "bytes=0-1"), ("Range", "bytes=5-9")])
    assert status == 400 and body["error"]["code"] == "invalid_header", body
    assert "'range' was sent 2 times" in body["error"]["message"].lower()
    assert sent([("Range", "bytes=5-9")])[0] == 206


def test_a_json_field_sent_twice_is_400_naming_it(api, user):
    """json.loads kept the last of a repeated name, so `{"path": "/a", "path": "/b"}` made /b;
    which was meant cannot be told (README walk), as for a form field sent twice."""
    for who, path, body in (
            (user.api, "/api/filesystem/dirs", '{"path": "/dup-a", "path": "/dup-b"}'),
            (user.api, "/api/filesystem/dirs", '{"x": {"k": 1, "k": 2}, "path": "/dup-c"}'),
            (api, "/api/auth/login", '{"username": "a", "username": "b", "password": "p"}')):
        response = who.post(path, data=body, headers={"Content-Type": "application/json"})
        error = assert_error(response, 400, "invalid_json")
        assert "appears more than once" in error["message"], error
    for name in ("/dup-a", "/dup-b", "/dup-c"):
        assert user.api.get("/api/filesystem/info", params={"path": name}).status_code == 404
