"""Home Assistant's side of a Wyoming satellite, as its `wyoming` integration drives one
(homeassistant/components/wyoming/assist_satellite.py), on the `wyoming` package's own
client: connect, `run-satellite` then `describe`, a ping 2 s after each pong (a satellite
that does not answer within 5 s is a failure here, as it is dropped there), and every event
the satellite sends kept with the time it arrived."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from wyoming.client import AsyncTcpClient
from wyoming.event import Event
from wyoming.info import Describe
from wyoming.ping import Ping, Pong
from wyoming.satellite import RunSatellite

PING_SEND_DELAY_S = 2.0
PING_TIMEOUT_S = 5.0


@dataclass
class Arrived:
    at: float  # time.monotonic()
    event: Event


@dataclass
class HomeAssistant:
    client: AsyncTcpClient
    events: list[Arrived] = field(default_factory=list)
    pings: int = 0
    pongs: int = 0
    late_pong: bool = False
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _new: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def connect(cls, port: int, timeout: float = 30.0, describe_first: bool = False) -> HomeAssistant:
        """Connected and running the satellite: `run-satellite` then `describe`, as Home
        Assistant sends them (`describe_first`: the other way round, as other clients do)."""
        deadline = time.monotonic() + timeout
        while True:
            client = AsyncTcpClient("127.0.0.1", port)
            try:
                await client.connect()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        ha = cls(client)
        first, second = RunSatellite().event(), Describe().event()
        for event in (second, first) if describe_first else (first, second):
            await client.write_event(event)
        ha._tasks = [asyncio.create_task(ha._read()), asyncio.create_task(ha._ping())]
        return ha

    async def send(self, event: Event) -> None:
        await self.client.write_event(event)

    async def _read(self) -> None:
        while (event := await self.client.read_event()) is not None:
            self.events.append(Arrived(time.monotonic(), event))
            if Pong.is_type(event.type):
                self.pongs += 1
            self._new.set()

    async def _ping(self) -> None:
        while True:
            await asyncio.sleep(PING_SEND_DELAY_S)
            self.pings += 1
            await self.client.write_event(Ping().event())
            deadline = time.monotonic() + PING_TIMEOUT_S
            while self.pongs < self.pings:
                if time.monotonic() > deadline:
                    self.late_pong = True
                    return
                await asyncio.sleep(0.05)

    async def wait_for(self, event_type: str, after: float = 0.0, timeout: float = 30.0) -> Arrived:
        """The first `event_type` that arrived after `after` (waiting for it if need be)."""
        deadline = time.monotonic() + timeout
        while True:
            found = next((a for a in self.events if a.event.type == event_type and a.at > after), None)
            if found is not None:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {event_type} within {timeout} s; got {[a.event.type for a in self.events]}")
            self._new.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), min(remaining, 0.5))

    def of(self, event_type: str) -> list[Arrived]:
        return [a for a in self.events if a.event.type == event_type]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.client.disconnect()
