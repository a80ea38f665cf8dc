"""`python -m pcmmeta.cli …`: the same as the `pcmmeta` command."""

from pcmmeta.cli.console import entry

entry()
