# Runs before main.py on every start. Kept empty on purpose: a fault here
# would stop the board before it could be reached to fix it.
