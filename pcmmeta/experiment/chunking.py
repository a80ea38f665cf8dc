"""How a meta-batch is split into gradient-accumulation chunks (shared by the training step and
the memory estimate)."""

from __future__ import annotations


def chunk_size(meta_batch: int, chunk_tasks: int, tasks_per_chip: int = 1, n_devices: int = 1) -> tuple[int, bool]:
    """Tasks per gradient-accumulation chunk, and whether the chunk is split over `n_devices`.

    A chunk holds whole chips (`tasks_per_chip` tasks each) and, when split, as many on every
    device; it divides the meta-batch and is the largest such size ≤ `chunk_tasks` (or one unit
    when a unit is larger). An uneven split over devices would pad, so then the chunk stays on
    one device.
    """
    if meta_batch % tasks_per_chip:
        raise ValueError(f"tasks_per_chip ({tasks_per_chip}) must divide the meta-batch ({meta_batch})")
    sharded = n_devices > 1 and meta_batch % (n_devices * tasks_per_chip) == 0
    unit = tasks_per_chip * (n_devices if sharded else 1)
    chunk = max(unit, min(chunk_tasks, meta_batch) // unit * unit)
    while meta_batch % chunk:  # ends: unit divides meta_batch
        chunk -= unit
    return chunk, sharded
