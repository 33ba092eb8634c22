"""Independent tasks on ``dask.distributed``: a local cluster, a running one, or this process.

The one place that starts or joins a Dask cluster. Dataset builds (one task per shard) and
experiments (one task per model and seed) run their tasks through :class:`TaskRunner`:

- ``workers=0`` (and no scheduler): every task runs here, one after the other;
- ``workers=N``: a :class:`distributed.LocalCluster` of N single-threaded worker processes
  (:func:`local_cluster`);
- ``scheduler="tcp://HOST:PORT"``: the tasks go to a running cluster (``dask scheduler`` and
  ``dask worker`` started by the user), where work outgrows one machine.

Tasks are plain functions of picklable arguments; results come back as they complete.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from atomizer.errors import AtomizerError

#: Seconds to wait for a Dask scheduler given by its address.
SCHEDULER_TIMEOUT_S = 20
#: glibc ``mallopt`` parameters, and the values a task runs with (see :func:`task_malloc`).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
TASK_MMAP_THRESHOLD = 16 << 20
TASK_TRIM_THRESHOLD = 32 << 20
#: glibc's mmap threshold when none is set.
_GLIBC_MMAP_THRESHOLD = 128 << 10
#: Tasks inside :func:`task_malloc` now (threads of one worker), and the lock that guards it.
_malloc_lock = threading.Lock()
_tasks_raised = 0


#: Dask settings of the local clusters started here. Their tasks are coarse (a shard, a training
#: run) and hold the GIL between reads: the worker's statistical profiler (a stack sample every
#: 10 ms, for the dashboard) and the event loop's tick (every 20 ms) wake a second thread that
#: takes the GIL from them, ~5-10 % of a dataset build on one worker. The system monitor (psutil
#: counters for the dashboard, every 0.5 s) and the memory monitor (every 0.1 s) do the same on a
#: smaller scale (worker CPU outside the task thread 0.2 s -> 0.13 s per 7 s build, and half the
#: context switches); at 1 s the nanny still stops a worker past its memory limit, a second later
#: at most. A running cluster given by its address keeps its own settings (users can set these in
#: their Dask configuration).
LOCAL_CLUSTER_CONFIG: dict[str, Any] = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.worker.memory.monitor-interval": "1s",
}


def local_cluster(workers: int) -> Any:
    """A :class:`distributed.LocalCluster` of ``workers`` single-threaded processes, with
    :data:`LOCAL_CLUSTER_CONFIG` (the nanny hands its configuration to the worker processes)."""
    import dask
    from distributed import LocalCluster

    with dask.config.set(LOCAL_CLUSTER_CONFIG):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                            dashboard_address=":0")


def _glibc() -> Any:
    try:
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "mallopt") else None
    except OSError:
        return None


@contextlib.contextmanager
def task_malloc() -> Iterator[None]:
    """glibc's allocator for the length of one task, where the process fixed its thresholds.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536`` so that freed memory goes
    back to the system. Setting it also freezes glibc's mmap threshold at 128 KiB, so every
    larger buffer (a GDAL block of 256 x 256 16-bit pixels is one) is a fresh ``mmap`` whose pages
    fault in again on every use: 100,000+ page faults and ~10 % more CPU for a dataset build.
    Inside the task the thresholds are raised, so buffers are reused from the heap; afterwards
    they are restored, and the heap's free chunks stay for the next task, as in any process that
    keeps glibc's own thresholds: the next free at the heap's top returns what lies above it.
    (Handing everything back with ``malloc_trim`` after each task made the next one fault its
    buffers in again: 300,000 page faults in a 24-shard build.) A process whose thresholds are
    glibc's own (dynamic) is left alone, and so is any other C library.
    """
    restore = _fixed_thresholds()
    libc = _glibc() if restore is not None else None
    if libc is None:
        yield
        return
    global _tasks_raised
    with _malloc_lock:  # several tasks on a multi-threaded worker: the last one out restores
        if _tasks_raised == 0:
            libc.mallopt(_M_MMAP_THRESHOLD, TASK_MMAP_THRESHOLD)
            libc.mallopt(_M_TRIM_THRESHOLD, TASK_TRIM_THRESHOLD)
        _tasks_raised += 1
    try:
        yield
    finally:
        with _malloc_lock:
            _tasks_raised -= 1
            if _tasks_raised == 0:
                libc.mallopt(_M_MMAP_THRESHOLD, restore[0])
                libc.mallopt(_M_TRIM_THRESHOLD, restore[1])



def _fixed_thresholds() -> tuple[int, int] | None:
    """(mmap, trim) thresholds the process fixed through glibc's variables; None when it did not
    (glibc then adapts them itself) or when they are not plain numbers."""
    trim = os.environ.get("MALLOC_TRIM_THRESHOLD_")
    if trim is None:
        return None
    try:
        return int(os.environ.get("MALLOC_MMAP_THRESHOLD_", _GLIBC_MMAP_THRESHOLD)), int(trim)
    except ValueError:
        return None


def _in_task(fn: Callable[..., Any], task: Any, *args: Any) -> Any:
    """What a worker runs: ``fn(task, *args)`` under :func:`task_malloc`."""
    with task_malloc():
        return fn(task, *args)


class TaskRunner:
    """Runs ``fn(task, *args)`` for every task and yields ``(task, result)`` as each completes.

    ``error`` is the exception class raised (with one line saying what to check) when the
    scheduler cannot be reached.
    """

    def __init__(
        self,
        workers: int,
        scheduler: str | None = None,
        *,
        error: type[AtomizerError] = AtomizerError,
    ) -> None:
        self.workers, self.scheduler, self.error = workers, scheduler, error
        self.client: Any = None
        self.cluster: Any = None

    @property
    def local(self) -> bool:
        """True when tasks run in this process."""
        return self.scheduler is None and self.workers == 0

    def __enter__(self) -> TaskRunner:
        if self.local:
            return self
        from distributed import Client

        if self.scheduler is not None:
            self._check_address()
        try:
            if self.scheduler is not None:
                self.client = Client(self.scheduler, timeout=f"{SCHEDULER_TIMEOUT_S}s",
                                     set_as_default=False)
            else:
                self.cluster = local_cluster(self.workers)
                self.client = Client(self.cluster, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise self.error(
                f"cannot reach the Dask scheduler {self.scheduler or '(local)'} ({exc}); check "
                "the address (tcp://HOST:PORT) and that the scheduler is running"
            ) from None
        return self

    def _check_address(self) -> None:
        """A malformed scheduler address is refused before any Client exists (a Client that fails
        half-way and is collected later can hang the next one's start)."""
        from distributed.comm.addressing import parse_address, parse_host_port
        from distributed.comm.registry import get_backend

        try:
            scheme, location = parse_address(str(self.scheduler))
            get_backend(scheme)
            if scheme in ("tcp", "tls"):
                parse_host_port(location)
        except ValueError as exc:
            raise self.error(
                f"{self.scheduler!r} is not a Dask scheduler address ({exc}); write tcp://HOST:PORT"
            ) from None

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def run(
        self,
        fn: Callable[..., Any],
        tasks: Sequence[Any],
        *args: Any,
        key: Callable[[Any], str],
    ) -> Iterator[tuple[Any, Any]]:
        """``(task, fn(task, *args))`` for every task, in order of completion (in order when
        local). ``key(task)``: the task's name on the cluster (unique within the run)."""
        if self.client is None:
            for task in tasks:
                yield task, fn(task, *args)
            return
        from distributed import as_completed

        futures = {self.client.submit(_in_task, fn, t, *args, key=key(t), pure=False): t
                   for t in tasks}
        try:
            for fut in as_completed(futures, loop=self.client.loop):  # not the default client
                yield futures[fut], fut.result()
        finally:  # tasks not run yet (a failure or an interrupt stopped the loop): one call;
            # cancelling each future, done ones included, cost a scheduler round trip each
            pending = [fut for fut in futures if not fut.done()]
            if pending:
                self.client.cancel(pending)
