"""Errors a user can act on; the CLI prints their message without a traceback."""


class CreditflowError(Exception):
    """An error whose message names what failed (file, month, column, model id) and what to do."""
