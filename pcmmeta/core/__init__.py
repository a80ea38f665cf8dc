"""The pure-JAX core: devices, crossbar, noise, clock, spiking primitives, networks, task
families' math, inner rules, modes, MAML and programming methods. No file I/O, no command-line
wording; imports nothing above it (`pcmmeta.runtime` and `pcmmeta.errors` only)."""
