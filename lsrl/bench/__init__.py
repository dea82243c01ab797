"""Interpretability benchmarks from compiled programs (docs/bench.md): ``lsrl bench``.

A case is a program compiled for a target, optionally obfuscated by a change of basis that keeps
its function, with the ground truth of every unit (``truth``), data and activations
(``generate``), checked by interchange interventions (``verify``) and scored against a
researcher's claims (``score``). ``random_programs`` samples programs for the suite.
"""
