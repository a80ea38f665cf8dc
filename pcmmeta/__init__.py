"""pcmmeta: meta-learning networks whose synapses are simulated PCM devices.

The public face, for notebooks and scripts (the layers below are `pcmmeta.core`,
`pcmmeta.io`, `pcmmeta.experiment`, `pcmmeta.runtime`, `pcmmeta.cli`):

    import pcmmeta
    recipe = pcmmeta.load_recipe("recipes/sine-quick.yaml")
    outcome = pcmmeta.train(recipe, pcmmeta.start_run(recipe, Path("runs")))

The names are imported on first use (PEP 562), so that `import pcmmeta.cli` — the command's
entry point — does not load JAX before the command can handle an interrupt.
"""

import importlib

_EXPORTS = {
    # devices and the crossbar (pcmmeta.core)
    "AbstractPCMDevice": "pcmmeta.core.devices",
    "BUILTIN_DEVICES": "pcmmeta.core.devices",
    "DEFAULT_DEVICE": "pcmmeta.core.devices",
    "DeviceState": "pcmmeta.core.devices",
    "Joshi2020": "pcmmeta.core.devices",
    "Nandakumar2018": "pcmmeta.core.devices",
    "load_device": "pcmmeta.io.device_file",
    "save_device": "pcmmeta.io.device_file",
    "conductances_from_weights": "pcmmeta.core.crossbar",
    "weights_from_conductances": "pcmmeta.core.crossbar",
    # programming methods (pcmmeta.core.programming)
    "WriteVerify": "pcmmeta.core.programming",
    "SingleShot": "pcmmeta.core.programming",
    "compare_methods": "pcmmeta.core.programming.compare",
    # recipes and experiments (pcmmeta.experiment)
    "load_recipe": "pcmmeta.experiment.recipe",
    "validate": "pcmmeta.experiment.recipe",
    "with_overrides": "pcmmeta.experiment.recipe",
    "build_experiment": "pcmmeta.experiment.train",
    "start_run": "pcmmeta.experiment.train",
    "train": "pcmmeta.experiment.train",
    "load_run": "pcmmeta.experiment.train",
    "evaluate": "pcmmeta.experiment.train",
    "deploy": "pcmmeta.experiment.chip",
    "adapt": "pcmmeta.experiment.chip",
    "drift_table": "pcmmeta.experiment.chip",
    # a run's chain after training, as the commands run it (pcmmeta.experiment services)
    "load_trained_run": "pcmmeta.experiment.run_access",
    "load_deployed_run": "pcmmeta.experiment.run_access",
    "deploy_run": "pcmmeta.experiment.deployment",
    "compare_run": "pcmmeta.experiment.deployment",
    "evaluate_drift": "pcmmeta.experiment.drift_evaluation",
    "fit_device_files": "pcmmeta.experiment.device_fitting",
    "UserInputError": "pcmmeta.errors",
}

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pcmmeta' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
