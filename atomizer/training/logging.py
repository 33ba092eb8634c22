"""Run logs: one CSV row per epoch (``metrics.csv``) and TensorBoard scalars (``tensorboard/``).

On ``--resume`` rows and events after the checkpoint's step are dropped, so a resumed run's logs
read like an uninterrupted one. TensorBoard is optional: without the ``tensorboard`` package only
the CSV is written.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from atomizer.io import atomic_write_text

CSV_NAME = "metrics.csv"
TENSORBOARD_DIR = "tensorboard"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return "" if value is None else str(value)


class RunLogger:
    """Appends epoch rows to a CSV file and scalars to TensorBoard in ``run_dir``."""

    def __init__(
        self, run_dir: str | Path, *, resume_step: int | None = None, tensorboard: bool = True
    ) -> None:
        self.run_dir = Path(run_dir)
        self.csv_path = self.run_dir / CSV_NAME
        self._columns: list[str] | None = None
        self._rows: list[dict[str, str]] = []
        if resume_step is not None and self.csv_path.exists():
            self._load(keep_until_step=resume_step)
        elif self.csv_path.exists():
            self.csv_path.unlink()
        self._writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # pragma: no cover - tensorboard is an optional extra
                SummaryWriter = None
            if SummaryWriter is not None:
                self._writer = SummaryWriter(
                    log_dir=str(self.run_dir / TENSORBOARD_DIR), purge_step=resume_step
                )

    def _load(self, keep_until_step: int) -> None:
        with self.csv_path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            self._columns = list(reader.fieldnames or [])
            self._rows = [r for r in reader if int(r.get("global_step") or 0) <= keep_until_step]
        self._flush()

    def _flush(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self._columns or [], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self._rows)
        atomic_write_text(self.csv_path, buf.getvalue())

    def log_epoch(self, row: Mapping[str, Any]) -> None:
        """Add one CSV row (new keys add columns) and its numbers to TensorBoard."""
        text = {k: _fmt(v) for k, v in row.items()}
        if self._columns is None:
            self._columns = list(text)
        else:
            self._columns += [k for k in text if k not in self._columns]
        self._rows.append(text)
        self._flush()
        step = int(row.get("global_step", 0))
        for key, value in row.items():
            if key not in ("epoch", "global_step") and isinstance(value, (int, float)):
                self.scalar(f"epoch/{key}", float(value), step)
        if self._writer is not None:
            self._writer.flush()

    def scalar(self, tag: str, value: float, step: int) -> None:
        """One TensorBoard scalar (no-op without TensorBoard)."""
        if self._writer is not None and not math.isnan(value):
            self._writer.add_scalar(tag, value, step)

    def rows(self) -> list[dict[str, str]]:
        return list(self._rows)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
