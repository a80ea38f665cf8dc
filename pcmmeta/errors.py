"""The one exception type for bad user input.

Raised where input enters (CSV reader, device/recipe loader, CLI) and turned by the CLI into a
one-line message and exit code 2.
"""


class UserInputError(ValueError):
    """Bad input from the user: a file, a key, a value. The message is one line and names it."""
