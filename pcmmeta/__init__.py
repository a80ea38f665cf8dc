"""pcmmeta: meta-learning spiking networks whose synapses are simulated PCM devices."""

from .crossbar import conductances_from_weights, weights_from_conductances
from .device import BUILTIN_DEVICES, DEFAULT_DEVICE, DeviceState, PCMDevice, load_device
from .errors import UserInputError

__all__ = [
    "BUILTIN_DEVICES",
    "DEFAULT_DEVICE",
    "DeviceState",
    "PCMDevice",
    "UserInputError",
    "conductances_from_weights",
    "load_device",
    "weights_from_conductances",
]
__version__ = "0.1.0"
