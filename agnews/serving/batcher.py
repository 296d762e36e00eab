"""Gathers concurrent predict requests into one signature call, as TF Serving's batching does.

Requests wait in an asyncio queue; a worker forms a batch of those waiting, up to `max_rows` rows,
and runs its call on a thread so the event loop keeps reading requests. Up to `threads` batches run
at once (TF Serving's num_batch_threads, one per core by default). While a batch is running, the
next one also gathers the requests arriving within `timeout_s` (TF Serving's batch_timeout_micros),
until that batch ends; with none running it starts at once, so an idle server adds no delay. A
call of a few rows costs about what a call of one does, so under load this wait buys throughput
at no cost to a lone request (measured in bench/README.md). The cap always holds: a request larger
than it is split into pieces of at most `max_rows` rows (TF Serving's large batch splitting) and a
request that would overflow a batch waits for the next. When a merged call fails, each of its
requests runs again alone, so a bad request fails alone, never its neighbours.

It knows nothing of the model: a request is columns (input name -> one value per row), the same
inputs for every request to one signature (the service has checked them).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tensorflow as tf

from agnews.serving.metrics import Metrics


def rows(columns: dict) -> int:
    return len(next(iter(columns.values()), []))


def run_signature(signature, columns: dict) -> dict[str, np.ndarray]:
    """One signature call on columns of strings: each output's name -> one value per row."""
    outputs = signature(**{key: tf.constant(values, tf.string) for key, values in columns.items()})
    return {key: value.numpy() for key, value in outputs.items()}


def concatenate(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return (
        parts[0]
        if len(parts) == 1
        else {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    )


@dataclasses.dataclass
class _Task:
    signature: object
    columns: dict
    result: asyncio.Future
    model_name: str
    queued_at: float


class Batcher:
    def __init__(
        self, max_rows: int, timeout_s: float, metrics: Metrics | None = None, threads: int = 1
    ):
        self.max_rows, self.timeout_s, self.metrics, self.threads = (
            max_rows,
            timeout_s,
            metrics,
            threads,
        )
        self._waiting: collections.deque[_Task] = collections.deque()
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="batch")
        # Bound to the event loop that first waits on it (Python >= 3.10), not to this thread's.
        self._wake = asyncio.Event()
        self._worker: asyncio.Task | None = None
        self._running = 0  # batches under way

    async def run(self, signature, columns: dict, model_name: str = "") -> dict[str, np.ndarray]:
        """What run_signature(signature, columns) returns, computed in shared calls."""
        loop = asyncio.get_running_loop()
        if self._worker is None:
            self._worker = loop.create_task(self._work())
        pieces = []
        for start in range(0, rows(columns), self.max_rows):
            piece = {key: values[start : start + self.max_rows] for key, values in columns.items()}
            pieces.append(
                _Task(signature, piece, loop.create_future(), model_name, time.perf_counter())
            )
        self._waiting.extend(pieces)
        self._wake.set()
        return concatenate(list(await asyncio.gather(*(piece.result for piece in pieces))))

    async def close(self) -> None:
        """Stops the worker once every request queued so far is answered."""
        while self._waiting or self._running:
            await asyncio.sleep(0.01)
        if self._worker:
            self._worker.cancel()
        self._executor.shutdown(wait=True)

    async def _next_batch(self) -> list[_Task]:
        while not self._waiting:
            self._wake.clear()
            await self._wake.wait()
        loop = asyncio.get_running_loop()
        batch, size = [], 0
        deadline = loop.time() + (self.timeout_s if self._running else 0.0)
        while True:
            while self._waiting and size + rows(self._waiting[0].columns) <= self.max_rows:
                batch.append(self._waiting.popleft())
                size += rows(batch[-1].columns)
            if (
                self._waiting
                or size >= self.max_rows
                or loop.time() >= deadline
                or not self._running
            ):
                return batch
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), deadline - loop.time())

    async def _work(self) -> None:
        """Forms batches and starts each on a free thread: up to `threads` batches run at once."""
        slots = asyncio.Semaphore(self.threads)
        while True:
            batch = await self._next_batch()
            await slots.acquire()
            self._running += 1
            asyncio.get_running_loop().create_task(self._answer(batch, slots))

    async def _answer(self, batch: list[_Task], slots: asyncio.Semaphore) -> None:
        try:
            await self._call(batch)
        finally:
            self._running -= 1
            slots.release()
            self._wake.set()  # a batch gathering while this one ran need not wait any longer

    async def _call(self, batch: list[_Task]) -> None:
        loop = asyncio.get_running_loop()
        by_signature = collections.defaultdict(list)  # one call per model version
        for task in batch:
            by_signature[task.signature].append(task)
        for signature, tasks in by_signature.items():
            started = time.perf_counter()
            if self.metrics:
                self.metrics.batch_size.labels(tasks[0].model_name).observe(
                    sum(rows(t.columns) for t in tasks)
                )
                for task in tasks:
                    self.metrics.queue_wait.labels(task.model_name).observe(
                        (started - task.queued_at) * 1e6
                    )
            answers = await loop.run_in_executor(self._executor, self._run, signature, tasks)
            for task, answer in zip(tasks, answers, strict=True):
                if task.result.done():  # the client went away
                    continue
                if isinstance(answer, BaseException):
                    task.result.set_exception(answer)
                else:
                    task.result.set_result(answer)

    @staticmethod
    def _run(signature, tasks: list[_Task]) -> list:
        """Each task's outputs (or exception): from one merged call, or from one call each if
        that fails."""
        merged = {key: [v for task in tasks for v in task.columns[key]] for key in tasks[0].columns}
        try:
            outputs = run_signature(signature, merged)
        except Exception as error:  # noqa: BLE001  (answered per request)
            if len(tasks) == 1:
                return [error]
            return [Batcher._run(signature, [task])[0] for task in tasks]
        answers, start = [], 0
        for task in tasks:
            end = start + rows(task.columns)
            answers.append({key: values[start:end] for key, values in outputs.items()})
            start = end
        return answers
