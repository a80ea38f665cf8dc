"""Networks: Equinox modules whose weights are named crossbar layers of PCM pairs."""

from .base import AbstractNetwork
from .cnn import ConvNet
from .lif import LIFNetwork

#: Networks by the name a recipe gives in `network.kind`.
NETWORKS: dict[str, type[AbstractNetwork]] = {n.kind: n for n in (LIFNetwork, ConvNet)}

__all__ = ["AbstractNetwork", "ConvNet", "LIFNetwork", "NETWORKS"]
