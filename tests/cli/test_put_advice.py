"""What `put` tells to do about the files that failed: files over the quota need space freed
(then the same command sends the rest), not renaming."""
from __future__ import annotations

from cloudstrype_client import transfer
from cloudstrype_client.errors import CliError, exit_code_for_status


def _refusal(status: int, code: str) -> CliError:
    return CliError(f"refused ({code})", exit_code_for_status(status, code), status=status,
                    code=code)


def test_files_over_the_quota_are_told_to_free_space_then_run_again(capsys):
    transfer._advise_put([("a.bin", _refusal(413, "quota_exceeded")),
                          ("b.bin", _refusal(413, "quota_exceeded"))], 3)

    err = capsys.readouterr().err
    assert "put: 2 of 3 files did not fit in your quota: free space (delete files" in err
    assert "'cloudstrype usage' shows what takes it), then run the same command again to " \
           "send the rest." in err
    assert "rename" not in err and "does not help" not in err


def test_each_kind_of_failure_gets_its_own_advice(capsys):
    transfer._advise_put([("a.bin", _refusal(413, "quota_exceeded")),
                          ("b.bin", _refusal(409, "is_a_directory")),
                          ("c.bin", CliError("part 2: injected failure 500"))], 5)

    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("put: 1 of 5 files failed; run the same command again")
    assert lines[1].startswith("put: 1 of 5 files did not fit in your quota")
    assert lines[2].startswith("put: 1 of 5 files were refused, and would be again")


def test_unreadable_files_and_a_shares_refusals_are_not_told_to_retry(capsys):
    transfer._advise_put([("a.bin", PermissionError(13, "Permission denied")),
                          ("b.bin", _refusal(403, "read_only_share")),
                          ("c.bin", _refusal(404, "share_not_found"))], 3)

    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("put: 1 of 3 files could not be read here (permission denied)")
    assert lines[1].startswith("put: 2 of 3 files were refused by the share") and \
        "ask its owner" in lines[1]
