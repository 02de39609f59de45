"""Errors meant for the person running a stage: one line, saying what to do."""
import functools
import sys


class UserError(Exception):
    """A mistake or an environment problem the user can fix; printed as one line, no traceback."""


def cli(main):
    """Run `main`, turning UserError and Ctrl-C into a one-line message and a non-zero exit."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper
