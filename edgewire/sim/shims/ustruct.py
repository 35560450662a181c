from struct import *  # noqa: F403
