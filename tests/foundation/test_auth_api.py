"""The auth service through real HTTP against a running local stack."""
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support import (
    PASSWORD,
    Api,
    assert_error,
    cli,
    login,
    register_and_login,
    start_stack,
    unique,
)


def test_register_login_me_round_trip(api):
    username = unique()
    created = api.post("/api/auth/register", json={"username": username,
                                                   "email": f"{username}@example.org",
                                                   "password": PASSWORD})
    assert created.status_code == 201
    assert created.json()["username"] == username
    user_id = created.json()["user_id"]

    tokens = login(api, username)
    assert set(tokens) >= {"id_token", "access_token", "refresh_token", "expires_in",
                           "token_type"}
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] > 0

    for token in (tokens["access_token"], tokens["id_token"]):
        me = api.as_user(token).get("/api/auth/me")
        assert me.status_code == 200, me.text
        assert me.json() == {"user_id": user_id, "username": username,
                             "email": f"{username}@example.org", "groups": []}


def test_duplicate_username_is_409(api, user):
    again = api.post("/api/auth/register", json={"username": user.username,
                                                 "email": "x@example.org",
                                                 "password": PASSWORD})
    assert_error(again, 409, "username_taken")


@pytest.mark.parametrize("password, missing", [
    ("Sh0rt", "at least 8 characters"),
    ("alllowercase1", "an upper-case letter"),
    ("ALLUPPERCASE1", "a lower-case letter"),
    ("NoDigitsHere", "a digit"),
    # Basic Latin only (accounts sweep: a superscript two, an Arabic-Indic one and a
    # full-width capital counted).
    ("Passwor\u00b2d", "a digit (0-9)"),
    ("Password\u0661", "a digit (0-9)"),
    ("\uff21password1", "an upper-case letter (A-Z)"),
])
def test_weak_password_is_400_naming_what_is_missing(api, password, missing):
    response = api.post("/api/auth/register", json={"username": unique(),
                                                    "email": "a@example.org",
                                                    "password": password})
    error = assert_error(response, 400, "weak_password")
    assert missing in error["message"]


@pytest.mark.parametrize("email", ["not-an-email", "a@b", "@example.org", "a b@example.org", "",
                                   "bob@example.org\n", "bob\u202e@example.org"])
def test_bad_email_is_400(api, email):
    response = api.post("/api/auth/register", json={"username": unique(), "email": email,
                                                    "password": PASSWORD})
    assert_error(response, 400, "invalid_email")


@pytest.mark.parametrize("username", ["ab", "has space", "slash/name", "x" * 65, "-leading",
                                      "alice\n"])
def test_bad_username_is_400(api, username):
    response = api.post("/api/auth/register", json={"username": username,
                                                    "email": "a@example.org",
                                                    "password": PASSWORD})
    assert_error(response, 400, "invalid_username")


@pytest.mark.parametrize("field", ["username", "email", "password"])
def test_missing_field_is_400_naming_it(api, field):
    body = {"username": unique(), "email": "a@example.org", "password": PASSWORD}
    del body[field]
    error = assert_error(api.post("/api/auth/register", json=body), 400, "missing_field")
    assert field in error["message"]


@pytest.mark.parametrize("value", [123, ["list"], {"an": "object"}, True])
def test_wrong_type_is_400_naming_the_field(api, value):
    body = {"username": value, "email": "a@example.org", "password": PASSWORD}
    error = assert_error(api.post("/api/auth/register", json=body), 400, "invalid_field")
    assert "username" in error["message"]


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"a string"', b"\xff\xfe"])
def test_bad_json_is_400(api, raw):
    response = api.post("/api/auth/register", data=raw,
                        headers={"Content-Type": "application/json"})
    assert_error(response, 400, "invalid_json")


def test_wrong_password_and_unknown_user_are_the_same_401(api, user):
    wrong = api.post("/api/auth/login", json={"username": user.username, "password": "Wr0ngPass"})
    unknown = api.post("/api/auth/login", json={"username": unique(), "password": PASSWORD})
    assert_error(wrong, 401, "invalid_credentials")
    assert_error(unknown, 401, "invalid_credentials")
    assert wrong.json() == unknown.json()


def is_local(stack) -> bool:
    return stack.stack_info().get("mode", "local") == "local"


def refresh(api, refresh_token):
    return api.post("/api/auth/refresh", json={"refresh_token": refresh_token})


def test_refresh_gives_fresh_tokens(api, stack, user):
    response = refresh(api, user.tokens["refresh_token"])
    assert response.status_code == 200, response.text
    fresh = response.json()
    assert fresh["token_type"] == "Bearer"
    me = api.as_user(fresh["access_token"]).get("/api/auth/me")
    assert me.status_code == 200 and me.json()["username"] == user.username
    assert api.as_user(fresh["id_token"]).get("/api/auth/me").status_code == 200
    if is_local(stack):
        # Rotated on every refresh. The old one asked again soon gives the same new one (an
        # answer lost on the way); replaced twice, it is taken for a copy in other hands and
        # ends the sign-in.
        assert fresh["refresh_token"] != user.tokens["refresh_token"]
        again = refresh(api, user.tokens["refresh_token"])
        assert again.status_code == 200, again.text
        assert again.json()["refresh_token"] == fresh["refresh_token"]
        newer = refresh(api, fresh["refresh_token"])
        assert newer.status_code == 200, newer.text
        assert_error(refresh(api, user.tokens["refresh_token"]), 401, "refresh_token_reused")
        assert_error(refresh(api, newer.json()["refresh_token"]), 401, "invalid_refresh_token")
        assert_error(api.as_user(newer.json()["access_token"]).get("/api/auth/me"), 401,
                     "token_revoked")
    else:
        assert fresh["refresh_token"] == user.tokens["refresh_token"]     # Cognito's default


def test_logout_ends_the_sign_in(api, stack):
    member = register_and_login(api)
    other_sign_in = login(api, member.username)
    assert member.api.post("/api/auth/logout").status_code == 204
    assert_error(refresh(api, member.tokens["refresh_token"]), 401, "invalid_refresh_token")
    if is_local(stack):
        # Its access and id tokens are refused at once; another sign-in lives on.
        assert_error(member.api.get("/api/auth/me"), 401, "token_revoked")
        assert_error(api.as_user(member.tokens["id_token"]).get("/api/auth/me"), 401,
                     "token_revoked")
        assert api.as_user(other_sign_in["access_token"]).get("/api/auth/me").status_code == 200
        assert refresh(api, other_sign_in["refresh_token"]).status_code == 200
    # Logging out takes the access token, not the id token.
    fresh = login(api, member.username)
    assert_error(api.as_user(fresh["id_token"]).post("/api/auth/logout"), 400,
                 "access_token_required")
    assert_error(api.as_user(None).post("/api/auth/logout"), 401, "missing_token")


def test_usernames_are_case_insensitive(api, stack):
    member = register_and_login(api, unique("Mixed"))
    if is_local(stack):     # moto's pool ignores CaseSensitive=False; Cognito honours it
        tokens = login(api, member.username.upper())
        me = api.as_user(tokens["access_token"]).get("/api/auth/me").json()
        assert me["username"] == member.username and me["user_id"] == member.user_id
        again = api.post("/api/auth/register", json={"username": member.username.lower(),
                                                     "email": "x@example.org",
                                                     "password": PASSWORD})
        assert_error(again, 409, "username_taken")


def test_repeated_wrong_passwords_lock_the_account_for_a_while(api, stack):
    victim, bystander = register_and_login(api), register_and_login(api)
    for _ in range(5):
        wrong = api.post("/api/auth/login", json={"username": victim.username,
                                                  "password": "Wr0ngPass1"})
        assert_error(wrong, 401, "invalid_credentials")
    right = api.post("/api/auth/login", json={"username": victim.username,
                                              "password": victim.password})
    if is_local(stack):    # moto has no lockout (Cognito's answers 429 here too: identity/cognito)
        assert_error(right, 429, "too_many_attempts")
        assert int(right.headers["Retry-After"]) >= 1
    else:
        assert right.status_code == 200
    assert login(api, bystander.username)["access_token"]          # other accounts unaffected
    # A signed-in session of the locked account keeps working.
    assert victim.api.get("/api/auth/me").status_code == 200


def test_bad_refresh_token_is_401(api):
    assert_error(api.post("/api/auth/refresh", json={"refresh_token": "garbage"}), 401,
                 "invalid_refresh_token")


def test_validate_shows_verified_claims(api, stack, user):
    response = user.api.get("/api/auth/validate")
    assert response.status_code == 200
    body = response.json()
    assert body["valid"] is True
    assert body["user_id"] == user.user_id and body["username"] == user.username
    assert body["token_use"] == "access"
    if is_local(stack):
        # The local identity service is its own issuer, named once per install (so tokens
        # outlive a restart on another address).
        install_id = (stack.data_dir / "install-id").read_text().strip()
        assert body["issuer"] == f"urn:cloudstrype:local:{install_id}"
    else:
        assert body["issuer"].startswith("https://cognito-idp.")


def test_confirm_does_not_tell_whether_a_username_exists(api, user):
    # Locally users are confirmed at registration: a code for an existing (confirmed) user and
    # for a name nobody has get the very same answer.
    existing = api.post("/api/auth/confirm", json={"username": user.username, "code": "123456"})
    unknown = api.post("/api/auth/confirm", json={"username": unique(), "code": "123456"})
    assert_error(existing, 400, "invalid_code")
    assert_error(unknown, 400, "invalid_code")
    assert existing.json() == unknown.json()


# -- admin routes ---------------------------------------------------------------------------

ADMIN_ROUTES = [("GET", "/api/auth/users"), ("DELETE", "/api/auth/users/someone"),
                ("GET", "/api/auth/groups"), ("POST", "/api/auth/groups"),
                ("DELETE", "/api/auth/groups/g1"), ("GET", "/api/auth/groups/g1/members"),
                ("PUT", "/api/auth/groups/g1/members/someone"),
                ("DELETE", "/api/auth/groups/g1/members/someone")]


@pytest.mark.parametrize("method, path", ADMIN_ROUTES)
def test_admin_routes_refuse_other_users_with_403(user, method, path):
    assert_error(user.api.request(method, path, json={"name": "g1"}), 403, "forbidden")


@pytest.mark.parametrize("method, path", ADMIN_ROUTES)
def test_admin_routes_refuse_anonymous_callers_with_401(api, method, path):
    assert_error(api.as_user(None).request(method, path, json={"name": "g1"}), 401)


def test_admin_manages_groups_and_members(admin, api):
    admin_api, admin_name = admin
    member = register_and_login(api)
    group = unique("team")

    created = admin_api.post("/api/auth/groups", json={"name": group, "description": "Team"})
    assert created.status_code == 201, created.text
    assert created.json() == {"name": group, "description": "Team"}
    assert_error(admin_api.post("/api/auth/groups", json={"name": group}), 409, "group_exists")
    # Names differing only in case are one name (accounts sweep: "Admins" beside admins).
    for variant in (group.upper(), "Admins"):
        error = assert_error(admin_api.post("/api/auth/groups", json={"name": variant}), 409,
                             "group_exists")
        assert "differing only in case" in error["message"]
    listed = admin_api.get("/api/auth/groups").json()["groups"]
    assert {"name": group, "description": "Team"} in listed

    assert admin_api.put(f"/api/auth/groups/{group}/members/{member.username}").status_code == 204
    members = admin_api.get(f"/api/auth/groups/{group}/members").json()["members"]
    assert members == [member.username]
    # Groups travel in tokens issued after the change.
    fresh = login(api, member.username)
    assert api.as_user(fresh["access_token"]).get("/api/auth/me").json()["groups"] == [group]

    assert_error(admin_api.put(f"/api/auth/groups/{group}/members/{unique()}"), 404,
                 "user_not_found")
    assert_error(admin_api.put(f"/api/auth/groups/{unique('nogroup')}/members/{member.username}"),
                 404, "group_not_found")
    assert admin_api.delete(
        f"/api/auth/groups/{group}/members/{member.username}").status_code == 204
    assert admin_api.get(f"/api/auth/groups/{group}/members").json()["members"] == []

    assert admin_api.delete(f"/api/auth/groups/{group}").status_code == 204
    assert_error(admin_api.delete(f"/api/auth/groups/{group}"), 404, "group_not_found")
    assert_error(admin_api.delete("/api/auth/groups/admins"), 409, "protected_group")
    assert_error(admin_api.post("/api/auth/groups", json={"name": "bad name!"}), 400,
                 "invalid_group")
    too_long = assert_error(admin_api.post("/api/auth/groups", json={
        "name": unique("long"), "description": "d" * 2049}), 400, "invalid_field")
    assert too_long["details"] == {"field": "description"}


def test_admin_lists_and_deletes_users(admin, api, stack):
    admin_api, admin_name = admin
    doomed = register_and_login(api)
    listed = admin_api.get("/api/auth/users", params={"limit": 1})
    assert listed.status_code == 200
    page, names, pages = listed.json(), set(), 1
    names.update(u["username"] for u in page["users"])
    while page.get("next_cursor"):
        assert page["next"] == page["next_cursor"]          # (its first name, still said)
        # Every other page asked by `next`, the cursor's first name, still taken.
        asked = {"cursor" if pages % 2 else "next": page["next_cursor"]}
        page = admin_api.get("/api/auth/users", params={"limit": 1, **asked}).json()
        names.update(u["username"] for u in page["users"])
        pages += 1
    assert pages >= 2 and {doomed.username, admin_name} <= names
    assert_error(admin_api.get("/api/auth/users", params={"limit": "many"}), 400)
    for field in ("cursor", "next"):
        bad = assert_error(admin_api.get("/api/auth/users", params={field: "not-a-cursor"}),
                           400, "invalid_cursor")
        assert bad["details"] == {"field": field} and f"'{field}'" in bad["message"]

    assert doomed.api.get("/api/auth/me").status_code == 200
    assert admin_api.delete(f"/api/auth/users/{doomed.username}").status_code == 204
    assert_error(admin_api.delete(f"/api/auth/users/{doomed.username}"), 404, "user_not_found")
    assert_error(refresh(api, doomed.tokens["refresh_token"]), 401, "invalid_refresh_token")
    if is_local(stack):
        # The deleted user's tokens stop working at once, not when they expire.
        assert_error(doomed.api.get("/api/auth/validate"), 401, "token_revoked")
    assert_error(api.post("/api/auth/login", json={"username": doomed.username,
                                                   "password": doomed.password}), 401)
    assert_error(admin_api.delete(f"/api/auth/users/{admin_name}"), 409, "self_delete")


def test_me_looks_the_user_up_by_id_not_by_name(admin, api):
    # A deleted user's name taken by someone new: the old token (Cognito's stays valid until it
    # expires) must never show the newcomer's account.
    admin_api, _ = admin
    gone = register_and_login(api)
    assert admin_api.delete(f"/api/auth/users/{gone.username}").status_code == 204
    newcomer = register_and_login(api, gone.username)
    assert newcomer.user_id != gone.user_id
    me = gone.api.get("/api/auth/me")
    assert me.status_code in (401, 404), me.text
    assert newcomer.user_id not in me.text
    assert newcomer.api.get("/api/auth/me").json()["user_id"] == newcomer.user_id


def test_admin_me_shows_the_admins_group(admin):
    admin_api, admin_name = admin
    me = admin_api.get("/api/auth/me").json()
    assert me["username"] == admin_name and me["groups"] == ["admins"]


def test_an_admin_removed_from_admins_loses_its_routes_at_once(admin, api):
    """Groups are read live for admin routes, not from the token (valid for up to an hour):
    removed, a former admin can neither use the routes nor put themselves back."""
    admin_api, _ = admin
    deputy = register_and_login(api)
    assert admin_api.put(f"/api/auth/groups/admins/members/{deputy.username}").status_code == 204
    deputy_api = api.as_user(login(api, deputy.username)["access_token"])
    assert deputy_api.get("/api/auth/users").status_code == 200
    assert admin_api.delete(
        f"/api/auth/groups/admins/members/{deputy.username}").status_code == 204
    assert_error(deputy_api.get("/api/auth/users"), 403)
    assert_error(deputy_api.put(f"/api/auth/groups/admins/members/{deputy.username}"), 403)
    members = admin_api.get("/api/auth/groups/admins/members").json()["members"]
    assert deputy.username not in members


def test_names_and_addresses_are_checked_whole_and_not_echoed_whole(api, admin):
    admin_api, _ = admin
    # A final newline is no part of a valid name ('$' alone would let it through).
    assert_error(admin_api.post("/api/auth/groups", json={"name": "fam\n"}), 400,
                 "invalid_group")
    error = assert_error(admin_api.put("/api/auth/groups/bad%20name/members/x"), 400,
                         "invalid_group")
    assert error["details"]["field"] == "group"
    huge = "a" * 100_000 + "@x"
    response = api.post("/api/auth/register", json={"username": unique(), "email": huge,
                                                    "password": PASSWORD})
    assert_error(response, 400, "invalid_email")
    assert len(response.content) < 1000
    long = api.post("/api/auth/register", json={"username": unique(), "email": "a@example.org",
                                                "password": PASSWORD + "x" * 300})
    error = assert_error(long, 400, "invalid_password")
    assert "at most 256 characters" in error["message"]


def test_a_password_change_needs_the_current_one_and_ends_the_other_sign_ins(api, stack):
    user = register_and_login(api)
    here = api.as_user(login(api, user.username)["access_token"])
    elsewhere = login(api, user.username)
    new = "N3w-Passw0rd-For-Me"
    wrong = here.post("/api/auth/password", json={"old_password": "not-it",
                                                  "new_password": new})
    assert_error(wrong, 401, "wrong_password")
    assert_error(here.post("/api/auth/password", json={"old_password": user.password,
                                                       "new_password": "short"}),
                 400, "weak_password")
    assert_error(here.post("/api/auth/password", json={"old_password": user.password}),
                 400, "missing_field")
    same = assert_error(here.post("/api/auth/password", json={
        "old_password": user.password, "new_password": user.password}), 400, "same_password")
    assert same["details"]["field"] == "new_password"
    # Refused, it ended no other sign-in.
    assert api.as_user(elsewhere["access_token"]).get("/api/auth/me").status_code == 200
    assert here.post("/api/auth/password", json={"old_password": user.password,
                                                 "new_password": new}).status_code == 204
    # The new password signs in, the old one no longer does.
    assert login(api, user.username, new)["access_token"]
    assert_error(api.post("/api/auth/login", json={"username": user.username,
                                                   "password": user.password}), 401)
    # This sign-in goes on; locally every other one has ended.
    assert here.get("/api/auth/me").status_code == 200
    if is_local(stack):
        ended = assert_error(api.as_user(elsewhere["access_token"]).get("/api/auth/me"), 401,
                             "token_revoked")
        assert "password changed" in ended["message"]     # not only "logged out" or deleted
        assert api.post("/api/auth/refresh", json={
            "refresh_token": elsewhere["refresh_token"]}).status_code == 401


def _two_admins(own) -> list[str]:
    """Two admins made by the operator's command on `own` stack (password Adm1nPassword)."""
    names = [unique("boss"), unique("boss")]
    for name in names:
        made = cli("admin", "create", name, "--email", f"{name}@example.org", "--password",
                   "Adm1nPassword", "--data-dir", str(own.data_dir))
        assert made.returncode == 0, made.stderr
        # Said as made (it said only that the user was in admins: README walk).
        assert f"Created the user {name} ({name}@example.org)" in made.stdout, made
    return names


def test_the_last_admin_cannot_leave_the_admins_group(tmp_path):
    """The only admin could take themselves out of `admins` (204), and no one could manage
    users and groups after (accounts sweep)."""
    own = start_stack(tmp_path / "data")
    try:
        api, names = Api(own.url), _two_admins(own)
        first = api.as_user(login(api, names[0], "Adm1nPassword")["access_token"])
        # One of two may go (here the other one, who stays a user) ...
        assert first.delete(f"/api/auth/groups/admins/members/{names[1]}").status_code == 204
        # ... the last may not, by any spelling of the name.
        for spelled in (names[0], names[0].upper()):
            error = assert_error(first.delete(f"/api/auth/groups/admins/members/{spelled}"),
                                 409, "last_admin")
            assert "make someone else an admin first" in error["message"]
        assert first.get("/api/auth/users").status_code == 200
        assert first.put(f"/api/auth/groups/admins/members/{names[1]}").status_code == 204
        assert first.delete(f"/api/auth/groups/admins/members/{names[0]}").status_code == 204
    finally:
        own.stop()


def test_two_admins_leaving_at_once_leave_one(tmp_path):
    """Each of two admins taking themselves out at the same moment saw the other still in,
    and both went (accounts sweep): no one could manage users after. Of the two one stays."""
    own = start_stack(tmp_path / "data")
    try:
        api, names = Api(own.url), _two_admins(own)

        def members() -> set[str]:
            for name in names:
                seen = api.as_user(login(api, name, "Adm1nPassword")["access_token"]).get(
                    "/api/auth/groups/admins/members")
                if seen.status_code == 200:
                    return {m.lower() for m in seen.json()["members"]}
            return set()

        for _ in range(12):
            sessions = [api.as_user(login(api, name, "Adm1nPassword")["access_token"])
                        for name in names]
            start = threading.Barrier(2)

            def leave(i: int, start=start, sessions=sessions) -> int:
                start.wait()
                return sessions[i].delete(
                    f"/api/auth/groups/admins/members/{names[i]}").status_code

            with ThreadPoolExecutor(2) as pool:
                answers = sorted(pool.map(leave, range(2)))
            left = members()
            assert left, f"both admins went: {answers}"
            assert answers in ([204, 409], [409, 409]), answers
            assert len(left) == answers.count(409)
            for name in names:        # both admins again for the next round
                assert api.as_user(login(api, next(iter(left)), "Adm1nPassword")[
                    "access_token"]).put(f"/api/auth/groups/admins/members/{name}"
                                         ).status_code == 204
    finally:
        own.stop()
