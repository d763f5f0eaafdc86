"""Several commands sharing one config folder whose access token is due: one refreshes it (the
server replaces the refresh token on use), the others take the tokens it saved instead of
being refused with a spent refresh token."""
from __future__ import annotations

import json
import subprocess


def test_commands_sharing_credentials_refresh_them_once(home, cli_user):
    home.login(cli_user)
    for _ in range(2):                              # (a second round: after a refresh too)
        saved = home.credentials()
        saved["expires_at"] = 0                     # due: every command refreshes first
        home.credentials_file.write_text(json.dumps(saved))
        running = [subprocess.Popen(home.command("ls", "/"), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=home.env(),
                                    cwd=home.home) for _ in range(6)]
        results = [(p.wait(timeout=120), p.stderr.read()) for p in running]
        for p in running:
            p.stdout.close()
            p.stderr.close()
        assert [code for code, _ in results] == [0] * 6, results
        assert home.credentials()["access_token"] != saved["access_token"]
