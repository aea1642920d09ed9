"""Errors a user can fix: printed as one line and exit status 2, never a traceback."""

from __future__ import annotations

USAGE_EXIT_STATUS = 2


class UserError(Exception):
    """Bad input from the user (config, path, flag, missing device); ``str()`` is the whole message."""
