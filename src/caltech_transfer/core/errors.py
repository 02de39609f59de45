"""The one kind of error meant for the person running a stage."""


class UserError(Exception):
    """A mistake or an environment problem the user can fix; printed as one line, no traceback."""
