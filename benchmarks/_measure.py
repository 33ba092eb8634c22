"""What every benchmark script measures the same way: CPU time, resident memory, the data folder.

The scripts run as ``python benchmarks/NAME.py`` (their folder is on ``sys.path``), so they import
this as ``from _measure import ...``.
"""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path

KIB = 1024


def maxrss_bytes() -> int:
    """Peak resident memory of this process so far (macOS reports bytes, Linux KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else KIB)


def rss_bytes() -> int:
    """Resident memory of this process now."""
    import psutil

    return psutil.Process().memory_info().rss


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def shared_data(*parts: str) -> Path:
    """``../shared/data`` beside the project (or ``ATOMIZER_SHARED_DATA``), joined with ``parts``."""
    root = os.environ.get("ATOMIZER_SHARED_DATA")
    base = Path(root) if root else Path(__file__).resolve().parents[2] / "shared" / "data"
    return base.joinpath(*parts)
