"""Decoding ahead on a second thread, for file sources that must not lose a frame."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

from agent.vision.source import Frame

_END = object()


def prefetch(frames: Iterator[Frame], depth: int = 4) -> Iterator[Frame]:
    """Decode frames on a second thread so decoding overlaps inference; loses no frame."""
    slots: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for frame in frames:
                while not stop.is_set():
                    try:
                        slots.put(frame, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put(_END)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            slots.put(exc)

    thread = threading.Thread(target=produce, name="decode", daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
