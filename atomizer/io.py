"""File-writing helpers: every output is written atomically (a crash never leaves half a file)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from atomizer.errors import OutputError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"cannot write {path}: folder {parent} does not exist; create it first")
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=suffix if suffix is not None else path.suffix + ".tmp",
            dir=parent,
        )
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}; choose another path") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        try:
            if tmp_path.exists():  # mkstemp creates 0600; give the file the usual umask-based mode
                os.chmod(tmp_path, 0o666 & ~_umask())
            os.replace(tmp_path, path)
        except OSError as exc:
            raise OutputError(
                f"cannot write {path}: {exc.strerror or exc}; choose another path"
            ) from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def ensure_dir(path: str | os.PathLike) -> Path:
    """Create folder ``path`` (and its parents) or raise :class:`OutputError` saying why not."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create folder {path}: {exc.strerror or exc}; choose another output folder"
        ) from None
    return path


#: Image formats the figure writers accept (matplotlib's Agg canvas).
FIGURE_SUFFIXES = (".png", ".svg", ".pdf", ".jpg", ".jpeg", ".eps", ".ps", ".tif", ".tiff", ".webp")


def check_figure_path(path: str | os.PathLike) -> Path:
    """Fail early, before any work, when ``path`` is not a figure format we can write."""
    path = Path(path)
    if path.suffix.lower() not in FIGURE_SUFFIXES:
        raise OutputError(
            f"cannot write a figure to {path}: unknown image format {path.suffix or '(none)'!r}; "
            f"use one of {', '.join(FIGURE_SUFFIXES)}"
        )
    return path


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 150) -> Path:  # noqa: ANN001
    """Write a matplotlib figure atomically, in the format its suffix names."""
    path = check_figure_path(path)
    fmt = path.suffix.lower().lstrip(".")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format={"jpg": "jpeg", "tif": "tiff"}.get(fmt, fmt))
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
