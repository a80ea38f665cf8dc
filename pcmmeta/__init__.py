"""pcmmeta: meta-learning networks whose synapses are simulated PCM devices.

The public names are imported on first use (PEP 562), so that `import pcmmeta.cli` — the
command's entry point — does not load JAX before the command can handle an interrupt.
"""

import importlib

_EXPORTS = {
    "AbstractPCMDevice": ".device",
    "BUILTIN_DEVICES": ".device",
    "DEFAULT_DEVICE": ".device",
    "DeviceState": ".device",
    "Joshi2020": ".device",
    "Nandakumar2018": ".device",
    "PCMDevice": ".device",
    "load_device": ".device",
    "UserInputError": ".errors",
    "conductances_from_weights": ".crossbar",
    "weights_from_conductances": ".crossbar",
}

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module 'pcmmeta' has no attribute {name!r}")
