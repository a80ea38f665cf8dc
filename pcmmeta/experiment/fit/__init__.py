"""Fit a device family to measurement CSVs of any read protocol: one module per family
(`nandakumar`, `joshi`), one result type. The prior device's family picks the fitter; the
prior's values stand for the parameters the data cannot constrain. docs/device-model.md,
"Fitting"."""

from __future__ import annotations

from collections.abc import Callable

from pcmmeta.core.devices import AbstractPCMDevice
from pcmmeta.experiment.fit import joshi, nandakumar
from pcmmeta.experiment.fit.result import FitResult
from pcmmeta.io.measurements import Measurements

#: Fitter of each device family.
FITTERS: dict[str, Callable[..., FitResult]] = {"nandakumar2018": nandakumar.fit_device, "joshi2020": joshi.fit_device}


def fit_device(
    data: Measurements,
    prior: AbstractPCMDevice,
    n_bootstrap: int = 20,
    seed: int = 0,
    name: str = "fitted",
    progress: Callable[[int, int], None] | None = None,
    where: str = "measurements",
) -> FitResult:
    """Fit every parameter of `prior`'s family that the data constrain, bootstrap over devices
    for standard errors. Raises `UserInputError` (naming `where`) when nothing can be fitted."""
    return FITTERS[prior.family](data, prior, n_bootstrap, seed, name, progress, where)


__all__ = ["FITTERS", "FitResult", "fit_device"]
