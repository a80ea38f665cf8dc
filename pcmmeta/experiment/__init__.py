"""Experiment services: the typed configuration from a validated recipe, the training loop,
deploy / adapt / drift-eval on the simulated chip, device fitting. Import the core, the I/O
layer and the runtime; never the CLI."""
