"""File-writing helpers: every output is written atomically (a crash never leaves half a file)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from atomizer.errors import OutputError
from atomizer.limits import clip_text


#: Signals that end a process while it writes; the temporary file is removed before it dies.
#: (SIGINT raises KeyboardInterrupt, which the ``except`` below already handles.)
CLEANUP_SIGNALS = ("SIGTERM", "SIGHUP")


def temp_prefix(path: Path, pid: int | None = None) -> str:
    """Temporaries of ``path`` are named ``.NAME.PID.XXXXXXXX.SUFFIX`` beside it."""
    return f".{path.name}.{os.getpid() if pid is None else pid}."


_STALE = re.compile(r"(\d+)\.[A-Za-z0-9_]{8}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove temporaries of ``path`` left by processes that are no longer running (killed with
    SIGKILL, or a machine that lost power); returns what was removed."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    head = f".{path.name}."
    removed = []
    try:
        names = [n for n in os.listdir(parent) if n.startswith(head)]
    except OSError:
        return removed
    for name in names:
        m = _STALE.match(name[len(head):])
        if m is None or int(m.group(1)) == os.getpid() or _pid_alive(int(m.group(1))):
            continue
        with contextlib.suppress(OSError):
            (parent / name).unlink()
            removed.append(parent / name)
    return removed


@contextlib.contextmanager
def _removed_on_signals(tmp: Path) -> Iterator[None]:
    """While writing (main thread only): SIGTERM / SIGHUP remove ``tmp``, then the previous
    handler runs (by default the process dies of the signal, as it would have)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[signal.Signals, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        with contextlib.suppress(OSError):
            tmp.unlink()
        sig = signal.Signals(signum)
        signal.signal(sig, previous.pop(sig))
        os.kill(os.getpid(), sig)

    for name in CLEANUP_SIGNALS:
        sig = getattr(signal, name, None)
        if sig is None:
            continue
        current = signal.getsignal(sig)
        if current in (signal.SIG_IGN, None):  # ignored (or set outside Python): leave it
            continue
        previous[sig] = current
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step.

    On any exception, and on SIGTERM / SIGHUP, the temporary file is removed and ``path`` is left
    as it was; temporaries of ``path`` left by dead processes are removed first. A failed write
    (a full disk) is an :class:`OutputError`.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"cannot write {path}: folder {parent} does not exist; create it first")
    remove_stale_temporaries(path)
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=temp_prefix(path),
            suffix=suffix if suffix is not None else path.suffix + ".tmp",
            dir=parent,
        )
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}; choose another path") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        with _removed_on_signals(tmp_path):
            try:
                yield tmp_path
            except OSError as exc:  # e.g. ENOSPC while writing
                raise OutputError(
                    f"cannot write {path}: {exc.strerror or exc}; nothing was written (free some "
                    "space or choose another path)"
                ) from None
            try:
                if tmp_path.exists():  # mkstemp creates 0600; give the usual umask-based mode
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


#: Bytes a temporary file name adds to its target's name (``.NAME.PID.`` + 8 random + ``.tmp``).
TEMP_NAME_OVERHEAD = 2 + 8 + 1 + 8 + 4 + 8


def file_kind(mode: int) -> str | None:
    """What a ``st_mode`` names when it is not a regular file ("a folder", "a FIFO (named pipe)",
    ...), or None for a regular file: the words every refusal of a non-file uses."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return None if stat.S_ISREG(mode) else "not a regular file"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` lies in ``folder`` (after resolving links)."""
    try:
        return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))
    except (OSError, ValueError):
        return False


def check_output(
    path: str | os.PathLike,
    *,
    inputs: Iterable[str | os.PathLike | None] = (),
    overwrite: bool = False,
) -> Path:
    """The one output guard: fail early, before any work, when writing ``path`` cannot work or
    would destroy something.

    Refused always: a folder, a device, a FIFO or socket (an atomic write would replace the node),
    a file name longer than the file system allows, a missing or read-only folder, and any of
    ``inputs`` (a command never writes over what it reads), and an existing file inside an input
    that is a folder (a model's run or package folder). Refused unless ``overwrite``: a
    symbolic link (the write replaces the link, not its target). An existing regular file is
    replaced, atomically.
    """
    path = Path(path)
    shown = clip_text(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"cannot write {shown}: folder {parent} does not exist; create it first")
    _check_name_length(path, parent)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise OutputError(f"cannot write {shown}: {exc.strerror or exc}; choose another path") from None
    if st is not None and stat.S_ISLNK(st.st_mode):
        if not overwrite:
            raise OutputError(
                f"output {shown} is a symbolic link (to {os.readlink(path)}); writing would replace "
                "the link: choose another path, or pass --overwrite to replace the link itself"
            )
    elif st is not None and (kind := file_kind(st.st_mode)) is not None:
        hint = "give a file name" if kind == "a folder" else "write to a regular file"
        raise OutputError(f"output {shown} is {kind}; {hint}")
    for source in inputs:
        if source is None or "://" in str(source):
            continue
        if _same_file(path, Path(source)):
            raise OutputError(
                f"output {shown} is also an input ({source}); writing it would destroy the input: "
                "choose another output path"
            )
        if st is not None and Path(source).is_dir() and _inside(path, Path(source)):
            raise OutputError(
                f"output {shown} is a file of the input {source}; writing it would destroy part of "
                "the input: choose another output path"
            )
    if not os.access(parent, os.W_OK) or (st is not None and not os.access(path, os.W_OK)):
        raise OutputError(f"cannot write {shown}: permission denied; choose another path")
    return path


def _check_name_length(path: Path, parent: Path) -> None:
    try:
        name_max = os.pathconf(parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    size = len(os.fsencode(path.name)) + TEMP_NAME_OVERHEAD
    if size > name_max:
        raise OutputError(
            f"cannot write {clip_text(path.name, max_chars=60)}: the file name is "
            f"{len(os.fsencode(path.name)):,} bytes, and this file system allows "
            f"{name_max - TEMP_NAME_OVERHEAD} for an output name; choose a shorter name"
        )


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


def plain_text_figure(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run a figure-making function with matplotlib's mathtext off, so names from users' files
    ("$x$", "$\\foo{$") are drawn as written instead of parsed (or failing to parse) as TeX."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import matplotlib

        with matplotlib.rc_context({"text.parse_math": False}):
            return fn(*args, **kwargs)

    return wrapper


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
