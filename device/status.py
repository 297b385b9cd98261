"""The device's health in one small JSON object, published retained on its status topic
(earmark/v1/status/<device_id>) when it connects, when the mic or mute changes and every
minute: what an owner or an operator needs to see whether it is listening.

    {"state": "online", "version": "0.1.0", "mic": "open", "mic_problem": "",
     "frames_per_s": 12.5, "overruns": 0, "last_wake": "2026-11-23T13:00:00Z alexa",
     "spool_depth": 0, "muted": false, "home_assistant": "running", "marks": {"alexa": 2},
     "at": "2026-11-23T13:01:00.000Z"}

`marks` is how many recordings the household marked "not meant for you", per wake word: all a
device ever says of its marks (what they hold stays in its data dir).

The MQTT will stays the plain `offline` of wire contract v1.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from earmark.device.audio.source import AudioSource
from earmark.device.loop import DeviceLoop
from earmark.runtime.command import version
from earmark.wire.timestamps import format_utc

INTERVAL_S = 60.0


class StatusReport:
    def __init__(self, loop: DeviceLoop, source: AudioSource) -> None:
        self.loop, self.source = loop, source
        self._since = (time.monotonic(), source.frames_read)

    def snapshot(self) -> dict[str, Any]:
        now, frames = time.monotonic(), self.source.frames_read
        then, before = self._since
        self._since = (now, frames)
        muted = self.loop.controls.mute.muted
        stats = self.loop.stats
        return {
            "state": "online",
            "version": version(),
            "mic": "muted" if muted else ("problem" if stats.mic_problem else getattr(self.source, "state", "open")),
            "mic_problem": stats.mic_problem,
            "frames_per_s": round((frames - before) / (now - then), 1) if now > then else 0.0,
            "overruns": int(getattr(self.source, "overruns", 0)) + int(getattr(self.source, "overflows", 0)),
            "last_wake": stats.last_wake,
            "spool_depth": len(self.loop.spool.clips()),
            "muted": muted,
            # a Home Assistant satellite: "waiting" for it, "connected", or "running" (None: not one)
            "home_assistant": self.loop.satellite.status(),
            "marks": self.loop.detector.learnt.marks,
            "at": format_utc(datetime.now(UTC)),
        }
