"""Live progress of streamed runs in this process, for server-sent-event responses.

A run started with `stream=true` gets a channel (`open`) before it is launched; the executor
publishes (event, data) pairs to it and `run.finished` last. A subscriber first receives everything
published so far (so a fast run loses nothing to a late subscriber), then new events. A channel is
dropped when its run has finished and its subscribers are gone (or after `linger_s` without one).
Runs without a channel cost nothing to publish to.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

FINAL_EVENT = "run.finished"
MAX_EVENTS = 10_000


class _Channel:
    def __init__(self) -> None:
        self.history: list[tuple[str, Any]] = []
        self.subscribers: list[Subscription] = []
        self.finished = False
        self.dropped = 0


class Subscription:
    def __init__(self, hub: ProgressHub, run_id: str, history: list[tuple[str, Any]]) -> None:
        self._hub = hub
        self.run_id = run_id
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        for item in history:
            self.queue.put_nowait(item)

    async def events(self, keepalive_s: float = 15.0) -> AsyncIterator[tuple[str, Any]]:
        """Events until `run.finished` (inclusive); ("keepalive", None) when nothing came for a while."""
        try:
            while True:
                try:
                    event, data = await asyncio.wait_for(self.queue.get(), keepalive_s)
                except TimeoutError:
                    yield "keepalive", None
                    continue
                yield event, data
                if event == FINAL_EVENT:
                    return
        finally:
            self.close()

    def close(self) -> None:
        self._hub.unsubscribe(self)


class ProgressHub:
    def __init__(self, linger_s: float = 60.0) -> None:
        self._channels: dict[str, _Channel] = {}
        self._linger = linger_s

    def open(self, run_id: str) -> None:
        self._channels.setdefault(run_id, _Channel())

    def is_open(self, run_id: str) -> bool:
        return run_id in self._channels

    def subscribe(self, run_id: str) -> Subscription | None:
        channel = self._channels.get(run_id)
        if channel is None:
            return None
        sub = Subscription(self, run_id, list(channel.history))
        channel.subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        channel = self._channels.get(sub.run_id)
        if channel is None:
            return
        if sub in channel.subscribers:
            channel.subscribers.remove(sub)
        if channel.finished and not channel.subscribers:
            self._channels.pop(sub.run_id, None)

    def publish(self, run_id: str, event: str, data: Any) -> None:
        channel = self._channels.get(run_id)
        if channel is None or channel.finished:
            return
        if len(channel.history) < MAX_EVENTS or event == FINAL_EVENT:
            channel.history.append((event, data))
            for sub in channel.subscribers:
                sub.queue.put_nowait((event, data))
        else:
            channel.dropped += 1  # a runaway stream of deltas: keep memory bounded, never drop the end
        if event == FINAL_EVENT:
            channel.finished = True
            if not channel.subscribers:
                asyncio.get_running_loop().call_later(self._linger, self._drop_if_unwatched, run_id)

    def _drop_if_unwatched(self, run_id: str) -> None:
        channel = self._channels.get(run_id)
        if channel is not None and channel.finished and not channel.subscribers:
            self._channels.pop(run_id, None)

    def channels(self) -> int:
        return len(self._channels)
