"""Micro-batching: concurrent requests share one model call.

Requests wait in a queue; one worker takes everything queued (up to ``max_batch``), runs
one batched ``recommend_many`` in a worker thread (so the event loop keeps accepting
connections while the model computes) and hands each request its own result. Under
light load a batch holds one request and adds no delay; under heavy load batches grow
by themselves while the previous one computes. When a batched call fails, each of its
requests is answered on its own, so an error reaches only the request that caused it.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from hymoerec.recommend import Recommendation, Recommender


@dataclass(frozen=True)
class _Job:
    history: list[str]
    k: int
    exclude_seen: bool
    done: asyncio.Future[Recommendation]


class MicroBatcher:
    def __init__(self, recommender: Recommender, max_batch: int = 64) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch={max_batch}: must be at least 1")
        self.recommender = recommender
        self.max_batch = max_batch
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._task: asyncio.Task[None] | None = None
        self.batches = 0  # model calls so far
        self.requests = 0  # requests answered so far

    async def start(self) -> None:
        self._task = asyncio.create_task(self._serve())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True)

    async def recommend(self, history: list[str], k: int, exclude_seen: bool) -> Recommendation:
        done: asyncio.Future[Recommendation] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(history, k, exclude_seen, done))
        return await done

    async def _serve(self) -> None:
        while True:
            jobs = [await self._queue.get()]
            while len(jobs) < self.max_batch and not self._queue.empty():
                jobs.append(self._queue.get_nowait())
            jobs = [job for job in jobs if not job.done.done()]  # clients that went away
            if not jobs:
                continue
            try:
                results = await self._call(jobs)
            except Exception:
                # one bad request must not fail the others: answer each on its own, so
                # the error reaches only the request(s) that caused it
                for job in jobs:
                    await self._answer_alone(job)
                continue
            self.requests += len(jobs)
            for job, result in zip(jobs, results, strict=True):
                if not job.done.done():  # the client may have gone away
                    job.done.set_result(result)

    async def _call(self, jobs: list[_Job]) -> list[Recommendation]:
        results = await asyncio.get_running_loop().run_in_executor(
            self._executor,
            self.recommender.recommend_many,
            [job.history for job in jobs],
            [job.k for job in jobs],
            [job.exclude_seen for job in jobs],
        )
        self.batches += 1
        return results

    async def _answer_alone(self, job: _Job) -> None:
        try:
            (result,) = await self._call([job])
        except Exception as error:
            if not job.done.done():
                job.done.set_exception(error)
            return
        self.requests += 1
        if not job.done.done():
            job.done.set_result(result)
