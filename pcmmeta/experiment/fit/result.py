"""What a device fit returns, for every family: the device, per-parameter status and errors."""

from __future__ import annotations

from dataclasses import dataclass, field

from pcmmeta.core.devices import AbstractPCMDevice


@dataclass
class FitResult:
    device: AbstractPCMDevice
    stderr: dict[str, float]  # bootstrap standard deviation per parameter the data constrain
    constrained: dict[str, str]  # parameter -> "fitted", "upper bound: …" or "default: …"
    goodness: dict[str, float | int | None]
    n_bootstrap: int
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        params = {}
        for name, value in self.device.to_dict().items():
            if name == "name":
                continue
            status = self.constrained.get(name, "fitted")
            params[name] = {
                "value": float(value),
                "stderr": self.stderr.get(name),
                "constrained": not status.startswith("default"),
                "upper_bound": status.startswith("upper bound"),
                "status": status,
            }
        return {
            "device": self.device.name,
            "family": self.device.family,
            "parameters": params,
            "goodness_of_fit": self.goodness,
            "n_bootstrap": self.n_bootstrap,
            "warnings": self.warnings,
        }
