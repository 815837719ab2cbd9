"""Run one task per PBX: on Dask distributed (a LocalCluster or an existing scheduler), or one
after another in this process. A task that fails is reported with its error; the others run."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

HEARTBEAT = 10.0  # seconds between "still running" calls while tasks run

# (pbx, its task's result or None, one-line error or None, tasks still running)
OnDone = Callable[[str, Any, "str | None", int], None]
OnIdle = Callable[[int], None]  # no task finished for HEARTBEAT seconds: (tasks running)


class PbxError(Exception):
    """A PBX's task could not do its job at all; the message is the one line to show."""


def error_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return first if isinstance(exc, PbxError) else f"{type(exc).__name__}: {first}".rstrip(": ")


def worker_name() -> str:
    """The Dask worker running this task, or "local"."""
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return "local"


def run_tasks(
    tasks: list[tuple[str, Callable[..., Any], tuple[Any, ...]]],
    on_done: OnDone,
    *,
    workers: int = 2,
    scheduler: str | None = None,
    on_idle: OnIdle | None = None,
    label: str = "tollwatch",
) -> None:
    """Run each (pbx, function, args); `on_done` as each finishes, in completion order.

    `scheduler`: an existing Dask scheduler's address; else a LocalCluster of `workers`
    processes (one thread each); `workers=0`: in this process, in order, without Dask."""
    if scheduler is None and workers <= 0:
        for name, fn, args in tasks:
            try:
                value = fn(*args)
            except Exception as exc:  # one PBX failing never stops the others
                on_done(name, None, error_line(exc), 0)
            else:
                on_done(name, value, None, 0)
        return
    if not tasks:
        return
    from distributed import wait

    run_id = uuid.uuid4().hex[:8]
    with _client(workers, scheduler) as client:
        futures: dict[Any, str] = {}
        for name, fn, args in tasks:
            fut = client.submit(fn, *args, key=f"{label}-{name}-{run_id}", pure=False,
                                retries=0)
            futures[fut] = name
        pending = set(futures)
        while pending:
            try:
                done, pending = wait(pending, timeout=HEARTBEAT, return_when="FIRST_COMPLETED")
            except TimeoutError:
                if on_idle is not None:
                    on_idle(len(pending))
                continue
            for fut in done:
                name = futures[fut]
                if fut.status == "finished":
                    on_done(name, fut.result(), None, len(pending))
                else:
                    failure = fut.exception()
                    on_done(name, None, error_line(failure) if failure else str(fut.status),
                            len(pending))
                fut.release()


@contextmanager
def _client(workers: int, scheduler: str | None) -> Iterator[Any]:
    from distributed import Client

    if scheduler is not None:
        with Client(scheduler, timeout="30s") as client:
            yield client
        return
    with local_cluster(workers) as cluster, Client(cluster) as client:
        yield client


@contextmanager
def local_cluster(workers: int) -> Iterator[Any]:
    """A LocalCluster of `workers` processes, one task at a time each, sharing the CPUs:
    polars in each worker gets CPUs // workers threads (at least 1), not all of them."""
    from distributed import LocalCluster

    threads = str(max(1, (os.cpu_count() or 1) // max(1, workers)))
    with LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
        silence_logs=logging.ERROR, env={"POLARS_MAX_THREADS": threads},
    ) as cluster:
        yield cluster
