"""atomizer.cluster: the local clusters it starts, and the allocator settings of a task."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from atomizer import cluster

# A process with glibc's thresholds fixed (as Dask's nanny starts workers): 256 KiB buffers made
# and freed over and over, with and without task_malloc; page faults counted for each.
_FAULTS = textwrap.dedent("""
    import json, resource
    import numpy as np
    from atomizer.cluster import task_malloc

    def faults(ctx):
        with ctx:
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(300):
                np.ones(32768)  # 256 KiB, written: every page touched
            return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    import contextlib
    print(json.dumps({"plain": faults(contextlib.nullcontext()), "task": faults(task_malloc()),
                      "after": faults(contextlib.nullcontext())}))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux") or cluster._glibc() is None,
                    reason="glibc's mallopt is what task_malloc sets")
def test_a_task_reuses_its_buffers_where_the_process_fixed_the_trim_threshold():
    env = dict(os.environ, MALLOC_TRIM_THRESHOLD_="65536")
    out = subprocess.run([sys.executable, "-c", _FAULTS], env=env, capture_output=True, text=True,
                         check=True)
    got = json.loads(out.stdout)
    # fixed thresholds: each buffer is a fresh mmap, its 64 pages faulted in every time
    assert got["plain"] > 300 * 32
    assert got["task"] < got["plain"] / 10
    # afterwards the process is as Dask set it again
    assert got["after"] > 300 * 32


def test_a_process_with_glibcs_own_thresholds_is_left_alone(monkeypatch):
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)

    def no_libc():
        raise AssertionError("the allocator must not be touched")

    monkeypatch.setattr(cluster, "_glibc", no_libc)
    with cluster.task_malloc():
        pass


@pytest.mark.slow
def test_local_cluster_workers_run_with_the_project_settings():
    from distributed import Client

    keys = sorted(cluster.LOCAL_CLUSTER_CONFIG)

    def settings():
        import dask

        return [dask.config.get(k) for k in keys], os.environ.get("MALLOC_TRIM_THRESHOLD_")

    with cluster.local_cluster(1) as lc, Client(lc) as client:
        (got,) = client.run(settings).values()
    assert dict(zip(keys, got[0])) == cluster.LOCAL_CLUSTER_CONFIG
    assert cluster.LOCAL_CLUSTER_CONFIG["distributed.worker.profile.enabled"] is False
    assert got[1] is not None  # Dask's memory release stays; task_malloc works within it


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return 1


def test_two_tasks_at_once_raise_once_and_the_last_one_out_restores(monkeypatch):
    libc = _Recorder()
    monkeypatch.setattr(cluster, "_glibc", lambda: libc)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    raised = [(cluster._M_MMAP_THRESHOLD, cluster.TASK_MMAP_THRESHOLD),
              (cluster._M_TRIM_THRESHOLD, cluster.TASK_TRIM_THRESHOLD)]
    with cluster.task_malloc():
        with cluster.task_malloc():  # a second task thread of the same worker
            assert libc.calls == raised
        assert libc.calls == raised  # the first task still runs with raised thresholds
    assert libc.calls[2:] == [(cluster._M_MMAP_THRESHOLD, 128 << 10),
                              (cluster._M_TRIM_THRESHOLD, 65536)]


def test_thresholds_that_are_not_numbers_are_left_alone(monkeypatch):
    libc = _Recorder()
    monkeypatch.setattr(cluster, "_glibc", lambda: libc)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "lots")
    with cluster.task_malloc():
        pass
    assert libc.calls == []


def test_a_runner_that_cannot_start_leaves_dask_as_it_was():
    import dask

    before = dask.config.get("scheduler", None)
    with pytest.raises(Exception, match="not a Dask scheduler address"):
        with cluster.TaskRunner(0, "tcp://127.0.0.1"):
            pass
    assert dask.config.get("scheduler", None) == before
    assert dask.delayed(sum)([1, 2]).compute() == 3  # no "distributed scheduler, no Client"
