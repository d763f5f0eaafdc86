"""The user pool, declared once: the CDK stack and the local stack both build it from this."""

POOL_NAME = "cloudstrype-users"
CLIENT_NAME = "cloudstrype-clients"
ADMIN_GROUP = "admins"

PASSWORD_POLICY = {
    "MinimumLength": 8,
    "RequireUppercase": True,
    "RequireLowercase": True,
    "RequireNumbers": True,
    "RequireSymbols": False,
}

# Username/password sign-in and refresh from public clients (web UI, CLI, members): no secret.
CLIENT_AUTH_FLOWS = ["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]

ACCESS_TOKEN_MINUTES = 60
ID_TOKEN_MINUTES = 60
REFRESH_TOKEN_DAYS = 30
# The local identity replaces a refresh token at each use. The one just replaced still gives
# the same successor for this long (a client whose answer was lost asks again); used after
# it, it ends the sign-in (a copy of it is in other hands).
REFRESH_REUSE_GRACE_SECONDS = 60


def password_problems(password: str) -> list[str]:
    """What a password lacks under PASSWORD_POLICY, in words (empty when it is fine)."""
    problems = []
    if len(password) < PASSWORD_POLICY["MinimumLength"]:
        problems.append(f"at least {PASSWORD_POLICY['MinimumLength']} characters")
    # Basic Latin, as the rules are meant (str.isdigit took '²', isupper a full-width 'Ａ').
    if PASSWORD_POLICY["RequireUppercase"] and not any("A" <= c <= "Z" for c in password):
        problems.append("an upper-case letter (A-Z)")
    if PASSWORD_POLICY["RequireLowercase"] and not any("a" <= c <= "z" for c in password):
        problems.append("a lower-case letter (a-z)")
    if PASSWORD_POLICY["RequireNumbers"] and not any("0" <= c <= "9" for c in password):
        problems.append("a digit (0-9)")
    return problems
