"""`make bench`'s metadata part runs through, at a small size (one project folder past the big
one, so that its rename runs too): it drives the tree store's own interface, and a change to
that interface the bench missed broke `make bench` (a move's signature did once) without any
test failing."""
from bench import metadata


def test_the_metadata_bench_runs_and_meets_its_targets_at_a_small_size(capsys):
    assert metadata.main(["--files", str(metadata.BIG_DIR_ENTRIES + 200), "--ops", "20"]) == 0
    printed = capsys.readouterr().out
    assert "rename of a folder" in printed and "HTTP: list" in printed, printed
