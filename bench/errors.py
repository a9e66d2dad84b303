"""The one exception type that the command line turns into a one-line message and exit code 2."""


class UserError(Exception):
    """Bad input from the user: a file, a name or a setting. The message names the culprit."""
