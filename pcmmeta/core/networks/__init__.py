"""Networks: Equinox modules whose weights are named crossbar layers of PCM pairs."""

from pcmmeta.core.networks.base import AbstractNetwork
from pcmmeta.core.networks.cnn import ConvNet
from pcmmeta.core.networks.lif import LIFNetwork
from pcmmeta.core.networks.rsnn import RecurrentSNN

#: Networks by the name a recipe gives in `network.kind`.
NETWORKS: dict[str, type[AbstractNetwork]] = {n.kind: n for n in (LIFNetwork, ConvNet, RecurrentSNN)}

__all__ = ["AbstractNetwork", "ConvNet", "LIFNetwork", "NETWORKS", "RecurrentSNN"]
