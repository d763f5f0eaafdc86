"""Cloudstrype benchmarks: ``python -m bench`` (or ``make bench``).

Each part is a module ``bench/<part>.py`` with ``main(argv: list[str] | None = None) -> int``
(0 when every target it checks is met). ``bench/__main__.py`` lists the parts and runs them in
order; ``--only PART`` runs one.
"""
