"""The driver's side of the workers: spawn them, call them, merge what they answer."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
from collections.abc import Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import psutil

from .worker import worker_main


class WorkerError(RuntimeError):
    pass


class WorkerHandle:
    def __init__(self, process: BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self._lock = asyncio.Lock()

    async def call(self, command: str, arg: Any = None) -> Any:
        # One command in flight per worker: see the module docstring of .worker.
        async with self._lock:
            loop = asyncio.get_running_loop()
            reply: asyncio.Future[Any] = loop.create_future()

            def readable() -> None:
                loop.remove_reader(self.conn.fileno())
                try:
                    reply.set_result(self.conn.recv())
                except (EOFError, OSError) as exc:
                    reply.set_exception(WorkerError(f"worker {self.process.pid} is gone: {exc}"))

            self.conn.send((command, arg))
            loop.add_reader(self.conn.fileno(), readable)
            ok, value = await reply
        if not ok:
            raise WorkerError(f"worker {self.process.pid}: {command}: {value}")
        return value


class Pool:
    """``size`` worker processes; sidecar ``i`` lives in worker ``i % size``."""

    def __init__(self, size: int, cpus: set[int] | None = None) -> None:
        context = multiprocessing.get_context("spawn")
        self.workers: list[WorkerHandle] = []
        for _ in range(size):
            parent, child = context.Pipe()
            process = context.Process(target=worker_main, args=(child,), daemon=True)
            process.start()
            child.close()
            if cpus and process.pid is not None:
                psutil.Process(process.pid).cpu_affinity(sorted(cpus))
            self.workers.append(WorkerHandle(process, parent))

    @property
    def size(self) -> int:
        return len(self.workers)

    def owner(self, index: int) -> WorkerHandle:
        return self.workers[index % self.size]

    async def each(self, command: str, args: Sequence[Any]) -> list[Any]:
        """Call every worker with its own argument."""
        return list(
            await asyncio.gather(
                *(w.call(command, a) for w, a in zip(self.workers, args, strict=True))
            )
        )

    async def all(self, command: str, arg: Any = None) -> list[Any]:
        """Call every worker with the same argument."""
        return await self.each(command, [arg] * self.size)

    def split(self, items: dict[int, Any]) -> list[dict[int, Any]]:
        """Items keyed by sidecar index, one dict per worker."""
        parts: list[dict[int, Any]] = [{} for _ in self.workers]
        for index, value in items.items():
            parts[index % self.size][index] = value
        return parts

    def processes(self) -> list[psutil.Process]:
        return [psutil.Process(w.process.pid) for w in self.workers if w.process.pid is not None]

    async def close(self) -> None:
        for worker in self.workers:
            if worker.process.is_alive():
                with contextlib.suppress(WorkerError, TimeoutError):
                    await asyncio.wait_for(worker.call("stop"), 10)
            worker.process.join(5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(5)
            worker.conn.close()
