"""A response body written by a synchronous writer (tarfile) in a thread: bounded, and stopped when the client goes away.

The writer's bytes go in chunks into a bounded queue the response reads from, so a slow client
slows the writer instead of filling memory, and a client that goes away ends the writer at its
next write.
"""

from __future__ import annotations

import asyncio
import io
import queue
import threading
from collections.abc import AsyncIterator, Callable
from typing import IO, cast

from typing_extensions import Buffer

CHUNK = 256 << 10
QUEUE_CHUNKS = 16


class _Pipe(io.RawIOBase):
    """A write-only file whose bytes go, in chunks, into a bounded queue; writing fails once the reader is gone."""

    def __init__(self, q: queue.Queue[bytes | BaseException | None], gone: threading.Event) -> None:
        self.q, self.gone, self.buffer = q, gone, bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: Buffer) -> int:
        view = memoryview(data)
        self.buffer.extend(view)
        if len(self.buffer) >= CHUNK:
            self.send()
        return view.nbytes

    def send(self) -> None:
        """Hand what is buffered to the reader, waiting while the queue is full."""
        chunk, self.buffer = bytes(self.buffer), bytearray()
        while True:
            if self.gone.is_set():
                raise BrokenPipeError("the client went away")
            try:
                self.q.put(chunk, timeout=0.5)
                return
            except queue.Full:
                continue


async def written(write: Callable[[IO[bytes]], object], name: str) -> AsyncIterator[bytes]:
    """The bytes `write` writes into the file it is given, in a thread named `name`, as they come."""
    q: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=QUEUE_CHUNKS)
    gone = threading.Event()

    def work() -> None:
        pipe = _Pipe(q, gone)
        try:
            write(cast(IO[bytes], pipe))  # tarfile and the like only call write()
            pipe.send()
            q.put(None)
        except BaseException as exc:  # handed to the reader, which ends the response
            if not gone.is_set():
                q.put(exc)

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = await asyncio.to_thread(q.get)
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item  # the response is cut short: the client sees an incomplete archive, never a "complete" bad one
            yield item
    finally:
        gone.set()
        while thread.is_alive():  # unblock a writer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                await asyncio.sleep(0.05)
