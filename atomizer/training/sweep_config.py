"""The ``sweeps:`` section of an experiment config: a base test modality swept along its GSD or its
size in pixels (the Atomizer paper's Tables 2 and 3). Running and reporting a sweep is
:mod:`atomizer.training.sweep`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from atomizer.config import StrictModel
from atomizer.data.modality import Modality

X_UNITS = {"gsd_m": "m", "size_px": "px"}
X_TITLES = {"gsd_m": "test GSD (m / pixel)", "size_px": "test input size (pixels)"}


class SweepPoint(StrictModel):
    """One point: the GSD and / or size of the test modality there."""

    gsd_m: float | None = Field(default=None, gt=0)
    size_px: int | None = Field(default=None, gt=0)


class SweepConfig(StrictModel):
    """A base test modality swept along ``x`` (its GSD or its size in pixels)."""

    description: str | None = None
    x: Literal["gsd_m", "size_px"] = Field(description="The plotted axis.")
    modality: Modality = Field(description="The test modality; each point sets gsd_m / size_px.")
    points: list[SweepPoint] = Field(min_length=2)

    @model_validator(mode="after")
    def _points(self) -> SweepConfig:
        values = [getattr(p, self.x) for p in self.points]
        if any(v is None for v in values):
            raise ValueError(f"every point must set {self.x} (the swept axis)")
        if len(set(values)) != len(values):
            raise ValueError(f"points repeat a value of {self.x}: {values}; list each value once")
        return self

    def modalities(self) -> list[Modality]:
        """The test modality of every point, labelled by its ``x`` value (e.g. ``40 m``)."""
        base = self.modality.model_dump(exclude={"name"})
        out = []
        for p in self.points:
            fields = {**base, **p.model_dump(exclude_none=True)}
            label = f"{getattr(p, self.x):.3g} {X_UNITS[self.x]}"
            out.append(Modality.model_validate({**fields, "name": label}))
        return out
