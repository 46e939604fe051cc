"""What a conversion loaded (:class:`ConversionReport`), and how its messages list tensor names."""

from __future__ import annotations

import dataclasses
from typing import Any

LIST_LIMIT = 12  # tensors named per problem in an error message


def sample_names(keys: list[str], limit: int = LIST_LIMIT) -> str:
    """The first ``limit`` of ``keys``, comma-separated, and how many more there are."""
    more = f", ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


@dataclasses.dataclass
class ConversionReport:
    """What a conversion loaded. ``loaded`` maps target keys to source keys."""

    source: str
    format: str
    cfg: str
    loaded: dict[str, str]
    loaded_params: int
    unused_source: list[str]
    unloaded_backbone: list[str]
    output: str | None = None
    swapped_rb: bool = False

    def summary(self) -> str:
        lines = [
            f"{self.source} ({self.format}) -> {self.cfg}" + (f" -> {self.output}" if self.output else ""),
            f"  loaded {len(self.loaded)} tensors ({self.loaded_params:,} parameters)",
            f"  backbone tensors left at initialization: {len(self.unloaded_backbone)}"
            + (f" ({sample_names(self.unloaded_backbone)})" if self.unloaded_backbone else ""),
            f"  source tensors not used: {len(self.unused_source)}"
            + (f" ({sample_names(self.unused_source)})" if self.unused_source else ""),
        ]
        if self.swapped_rb:
            lines.append("  stem input channels reversed (BGR-trained weights, Ultralytics feeds RGB)")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
