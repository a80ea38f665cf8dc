"""`python -m pcmmeta …`: the same as the `pcmmeta` command."""

from pcmmeta.cli.console import entry

entry()
