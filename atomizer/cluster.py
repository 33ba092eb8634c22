"""Independent tasks on ``dask.distributed``: a local cluster, a running one, or this process.

The one place that starts or joins a Dask cluster. Dataset builds (one task per shard) and
experiments (one task per model and seed) run their tasks through :class:`TaskRunner`:

- ``workers=0`` (and no scheduler): every task runs here, one after the other;
- ``workers=N``: a :class:`distributed.LocalCluster` of N single-threaded worker processes;
- ``scheduler="tcp://HOST:PORT"``: the tasks go to a running cluster (``dask scheduler`` and
  ``dask worker`` started by the user), where work outgrows one machine.

Tasks are plain functions of picklable arguments; results come back as they complete.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from atomizer.errors import AtomizerError

#: Seconds to wait for a Dask scheduler given by its address.
SCHEDULER_TIMEOUT_S = 20


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
        from distributed import Client, LocalCluster

        try:
            if self.scheduler is not None:
                self.client = Client(self.scheduler, timeout=f"{SCHEDULER_TIMEOUT_S}s")
            else:
                self.cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1,
                                            processes=True, dashboard_address=":0")
                self.client = Client(self.cluster)
        except (OSError, TimeoutError) as exc:
            raise self.error(
                f"cannot reach the Dask scheduler {self.scheduler or '(local)'} ({exc}); check "
                "the address (tcp://HOST:PORT) and that the scheduler is running"
            ) from None
        return self

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

        futures = {self.client.submit(fn, t, *args, key=key(t), pure=False): t for t in tasks}
        try:
            for fut in as_completed(futures):
                yield futures[fut], fut.result()
        finally:  # tasks not run yet (a failure or an interrupt stopped the loop): one call;
            # cancelling each future, done ones included, cost a scheduler round trip each
            pending = [fut for fut in futures if not fut.done()]
            if pending:
                self.client.cancel(pending)
