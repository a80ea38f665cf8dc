"""`python -m pcmmeta …`: the same as the `pcmmeta` command."""

from ._console import entry

entry()
