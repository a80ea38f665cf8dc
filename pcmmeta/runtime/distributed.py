"""Multi-host start-up: `jax.distributed.initialize` when the environment asks for it.

- `PCMMETA_COORDINATOR_ADDRESS=host:port`, `PCMMETA_NUM_PROCESSES=N`, `PCMMETA_PROCESS_ID=i`:
  explicit cluster (every host runs the same command with its own id).
- `PCMMETA_DISTRIBUTED=auto`: let JAX detect the cluster (SLURM, Open MPI, Cloud TPU).
Nothing set: a single process, nothing happens. Only process 0 writes run files.
"""

from __future__ import annotations

import os

from pcmmeta.errors import UserInputError


def maybe_initialize() -> bool:
    """Initialise JAX's distributed runtime if the environment asks; True if it did."""
    address = os.environ.get("PCMMETA_COORDINATOR_ADDRESS")
    auto = os.environ.get("PCMMETA_DISTRIBUTED", "").lower() == "auto"
    if not address and not auto:
        return False
    import jax

    if auto and not address:
        jax.distributed.initialize()
        return True
    try:
        count, pid = int(os.environ["PCMMETA_NUM_PROCESSES"]), int(os.environ["PCMMETA_PROCESS_ID"])
    except (KeyError, ValueError):
        raise UserInputError(
            "PCMMETA_COORDINATOR_ADDRESS is set: PCMMETA_NUM_PROCESSES and PCMMETA_PROCESS_ID must be integers too"
        ) from None
    jax.distributed.initialize(coordinator_address=address, num_processes=count, process_id=pid)
    return True


def is_writer() -> bool:
    import jax

    return jax.process_index() == 0


def finish() -> None:
    """Leave the distributed runtime together: `jax.distributed.shutdown` waits for every
    process, so process 0 (the coordinator) does not exit while another still needs it (the
    other would be aborted with "the leader task … died"). Nothing without a runtime."""
    import sys

    if "jax" not in sys.modules:
        return
    import jax

    if jax.process_count() > 1:
        jax.distributed.shutdown()
