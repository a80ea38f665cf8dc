"""Networks: Equinox modules whose weights are named crossbar layers of PCM pairs."""

from .base import AbstractNetwork
from .cnn import ConvNet
from .lif import LIFNetwork
from .rsnn import RecurrentSNN

#: Networks by the name a recipe gives in `network.kind`.
NETWORKS: dict[str, type[AbstractNetwork]] = {n.kind: n for n in (LIFNetwork, ConvNet, RecurrentSNN)}

__all__ = ["AbstractNetwork", "ConvNet", "LIFNetwork", "NETWORKS", "RecurrentSNN"]
