"""The `pcmmeta` console script: the interrupt policy first, then the command line."""


def entry() -> None:
    from pcmmeta.runtime import interrupts

    interrupts.install()  # before anything heavy is imported: interrupts are handled from the first instant
    from pcmmeta.cli import app as cli

    cli.entry()
