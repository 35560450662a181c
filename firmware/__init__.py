"""Building the board program and installing it on boards."""
