"""Fuzzing edgewire's input paths (issue 8): the targets (targets.py), the
Hypothesis strategies that feed them (strategies.py), a seed corpus
(corpus/<target>/), and a longer run by hand (`python -m tests.fuzz`).
tests/test_fuzz.py is the short run CI makes."""
