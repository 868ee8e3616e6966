"""Run a producer (decoding, face detection, cropping) in a background thread while the caller runs the network.

PyAV, OpenCV, onnxruntime and torch release the GIL in their heavy work, so a thread is enough for two stages to
overlap on two cores; a bounded queue keeps memory at `depth` items whatever the video's length.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["prefetch"]

T = TypeVar("T")

_DONE = object()


class _Failure:
    """An exception raised by the producer, carried to the consumer's thread."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetch(items: Iterable[T], depth: int = 4) -> Iterator[T]:
    """
    Yield `items` in order while a background thread produces up to `depth` of them ahead. An exception of the
    producer is raised in the caller at the point it occurred (after the items before it); closing the returned
    generator early stops the producer and closes `items` if it is a generator.
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not put(item):
                    break
            else:
                put(_DONE)
        except BaseException as error:  # noqa: BLE001  (every failure goes to the consumer)
            put(_Failure(error))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="mesofcn-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = buffer.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        worker.join()
