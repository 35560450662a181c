"""MicroPython's `micropython` module for a simulated board: `const` only.

On MicroPython the compiler folds `X = const(1)` into the code, and a name
starting with an underscore then takes no heap at all; here it is a plain
value.
"""


def const(value):
    return value
