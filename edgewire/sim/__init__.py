"""Simulated boards: the real device/ code under CPython (see runner.py)."""
