"""Auth service: registration, sign-in, tokens, users and groups. Routes only; the work is in
cloudstrype.auth."""
from cloudstrype.api.service import ADMINS, PUBLIC, Reply, ServiceApp
from cloudstrype.auth import users
from cloudstrype.auth.tokens import bearer_token

app = ServiceApp("auth", "/api/auth")


@app.endpoint("/register", ["POST"], auth=PUBLIC)
def register(call):
    created = users.register(call.field("username"), call.field("email"), call.field("password"))
    return Reply(created, status=201)


@app.endpoint("/confirm", ["POST"], auth=PUBLIC)
def confirm(call):
    users.confirm(call.field("username"), call.field("code"))
    return {"username": call.field("username"), "confirmed": True}


@app.endpoint("/login", ["POST"], auth=PUBLIC)
def login(call):
    return users.login(call.field("username"), call.field("password"))


@app.endpoint("/refresh", ["POST"], auth=PUBLIC)
def refresh(call):
    return users.refresh(call.field("refresh_token"))


@app.endpoint("/logout", ["POST"])
def logout(call):
    # The refresh token of this sign-in stops working; locally its access and id tokens too.
    users.logout(bearer_token(call.header("authorization")), call.principal.token_use)
    return Reply(status=204)


@app.endpoint("/password", ["POST"])
def change_password(call):
    # Locally every other sign-in of the user ends; this one goes on.
    users.change_password(call.principal.username, bearer_token(call.header("authorization")),
                          call.principal.token_use, call.field("old_password", str),
                          call.field("new_password", str))
    return Reply(status=204)


@app.endpoint("/me")
def me(call):
    # By id (`sub`): a name can be freed and taken by someone else; the id is this user's.
    record = users.describe_by_id(call.principal.user_id)
    return {key: record[key] for key in ("user_id", "username", "email", "groups")}


@app.endpoint("/validate")
def validate(call):
    principal = call.principal
    return {"valid": True, "user_id": principal.user_id, "username": principal.username,
            "groups": sorted(principal.groups), "token_use": principal.token_use,
            "expires_at": principal.claims.get("exp"), "issuer": principal.claims.get("iss")}


@app.endpoint("/users", auth=ADMINS)
def list_users(call):
    # `cursor` as every other listing names it; `next`, its first name, still taken.
    field = "cursor" if call.query.get("cursor") else "next"
    return users.list_users(call.query_int("limit", 60, minimum=1, maximum=60),
                            call.query.get(field), field)


@app.endpoint("/users/{username}", ["DELETE"], auth=ADMINS)
def delete_user(call, username):
    users.delete_user(username, call.principal.username)
    return Reply(status=204)


@app.endpoint("/groups", auth=ADMINS)
def list_groups(call):
    return {"groups": users.list_groups()}


@app.endpoint("/groups", ["POST"], auth=ADMINS)
def create_group(call):
    group = users.create_group(call.field("name"), call.field("description", required=False,
                                                              default=""))
    return Reply(group, status=201)


@app.endpoint("/groups/{group}", ["DELETE"], auth=ADMINS)
def delete_group(call, group):
    users.delete_group(group)
    return Reply(status=204)


@app.endpoint("/groups/{group}/members", auth=ADMINS)
def group_members(call, group):
    return {"group": group, "members": users.group_members(group)}


@app.endpoint("/groups/{group}/members/{username}", ["PUT"], auth=ADMINS)
def add_member(call, group, username):
    users.set_membership(group, username, True)
    return Reply(status=204)


@app.endpoint("/groups/{group}/members/{username}", ["DELETE"], auth=ADMINS)
def remove_member(call, group, username):
    users.set_membership(group, username, False)
    return Reply(status=204)
