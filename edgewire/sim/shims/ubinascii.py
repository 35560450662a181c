from binascii import *  # noqa: F403
