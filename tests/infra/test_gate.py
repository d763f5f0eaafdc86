"""The template gate: cfn-lint and checkov on the synthesized templates (the parent stack's and
every nested stack's).

Every failed check must be listed, with its reason, in infra/checks-suppressed.yaml; a listed
check that no longer fails must be removed from it. Both tools run at once (about 30 s each).

checkov pins boto3==1.35.*, older than the project needs, so it lives in its own venv
(.venv/checkov), made here on first use.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SUPPRESSED = REPO / "infra" / "checks-suppressed.yaml"
CHECKOV_VERSION = "3.3.30"
CHECKOV_VENV = REPO / ".venv" / "checkov"


def _checkov() -> Path:
    explicit = os.environ.get("CLOUDSTRYPE_CHECKOV")
    if explicit:
        return Path(explicit)
    binary = CHECKOV_VENV / "bin" / "checkov"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", str(CHECKOV_VENV)], check=True)
        subprocess.run([str(CHECKOV_VENV / "bin" / "pip"), "install", "--quiet",
                        f"checkov=={CHECKOV_VERSION}"], check=True)
    return binary


def _cfn_lint_codes(output: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for match in json.loads(output or "[]"):
        found.setdefault(match["Rule"]["Id"], []).append(
            "/".join(str(p) for p in match["Location"]["Path"][:2]))
    return found


def _checkov_codes(output: str, templates: set[str]) -> dict[str, list[str]]:
    report = json.loads(output)
    report = report[0] if isinstance(report, list) else report
    found: dict[str, list[str]] = {}
    for failed in report["results"]["failed_checks"]:
        found.setdefault(failed["check_id"], []).append(failed["resource"])
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["resource_count"] > 100   # it read the whole templates
    checked = {Path(c["file_path"]).name for kind in ("passed_checks", "failed_checks")
               for c in report["results"][kind]}
    assert checked == templates, templates - checked    # every stack's template
    return found


@pytest.fixture(scope="module")
def findings(synthesized, tmp_path_factory) -> dict[str, dict[str, list[str]]]:
    directory = tmp_path_factory.mktemp("gate")
    for name, body in synthesized.templates.items():
        (directory / name).write_text(json.dumps(body))
    checkov = _checkov()
    lint = subprocess.Popen(
        [str(Path(sys.executable).parent / "cfn-lint"), "--format", "json",
         *sorted(str(directory / name) for name in synthesized.templates)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Not --quiet: the passed checks show which templates checkov read.
    check = subprocess.Popen(
        [str(checkov), "-d", str(directory), "--framework", "cloudformation",
         "--compact", "--output", "json", "--skip-download"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=directory)
    lint_out, lint_err = lint.communicate(timeout=240)
    check_out, check_err = check.communicate(timeout=240)
    # cfn-lint exits non-zero when it finds anything; a crash leaves no JSON.
    assert lint_out.strip().startswith("["), lint_err
    assert check_out.strip()[:1] in ("{", "["), check_err
    return {"cfn-lint": _cfn_lint_codes(lint_out),
            "checkov": _checkov_codes(check_out, set(synthesized.templates))}


@pytest.mark.parametrize("tool", ["cfn-lint", "checkov"])
def test_every_failed_check_is_fixed_or_suppressed_with_a_reason(findings, tool):
    suppressed = yaml.safe_load(SUPPRESSED.read_text())[tool] or {}
    for code, reason in suppressed.items():
        assert isinstance(reason, str) and len(reason) > 30, f"{tool} {code}: give a reason"
    unlisted = {code: where[:5] for code, where in findings[tool].items()
                if code not in suppressed}
    assert not unlisted, f"{tool} failed checks (fix them, or list them with a reason in " \
                         f"{SUPPRESSED.relative_to(REPO)}): {unlisted}"
    stale = set(suppressed) - set(findings[tool])
    assert not stale, f"{tool}: these no longer fail; remove them from " \
                      f"{SUPPRESSED.relative_to(REPO)}: {sorted(stale)}"


def test_cfn_lint_finds_no_errors(findings):
    # Errors (E...) are never suppressible: the template would not deploy.
    assert not [code for code in findings["cfn-lint"] if code.startswith("E")]
