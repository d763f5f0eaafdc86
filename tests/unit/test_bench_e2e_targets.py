"""`make bench`'s e2e part judges issue 13's targets on the run's medians: a missed one is
printed as MISSED and fails the part (make bench exits 1), a met one passes."""
from bench import e2e

MET = {"small files up": 1.2, "small files again, unchanged": 1.8, "small files listed": 1.9,
       "backend writes per small file": 0.006, "big file up": 1.1, "big file down": 1.0}


def test_every_target_met_passes_the_part(capsys):
    assert e2e._judged(MET) == 0
    printed = capsys.readouterr().out
    assert printed.count(" met") == len(e2e.TARGETS) and "MISSED" not in printed, printed


def test_a_missed_ratio_or_too_many_writes_fails_the_part(capsys):
    assert e2e._judged({**MET, "big file down": 0.55}) == 1
    assert e2e._judged({**MET, "backend writes per small file": 0.06}) == 1
    printed = capsys.readouterr().out
    assert "big file down" in printed and printed.count("MISSED") == 2, printed


def test_only_what_the_run_measured_is_judged(capsys):
    # --small-files 0: the big file's two targets alone.
    assert e2e._judged({"big file up": 1.3, "big file down": 1.01}) == 0
    assert "small files" not in capsys.readouterr().out
