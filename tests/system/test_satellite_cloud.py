"""A paired device serving Home Assistant as a Wyoming satellite, as a user runs it
(`earmark-device run --wyoming …`): Home Assistant hears the request, and the same request
still lands, sealed to the household, in its owner's store; the device's status says Home
Assistant is connected."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tests.support.broker import free_port
from tests.support.home_assistant import HomeAssistant
from tests.support.securecloud import SecureCloud
from tests.support.speech import Scene
from tests.support.waiting import wait_until
from tests.system.test_pairing import ROOT, pair, run


def test_home_assistant_hears_the_request_and_the_owner_keeps_it_sealed(
        cloud: SecureCloud, data_dir: Path, tmp_path: Path, speech: Callable[..., np.ndarray]) -> None:
    owner, bundle = pair(cloud, data_dir, "den-pi")
    assert run("earmark.device.cli", "provision", bundle, "--data-dir", data_dir).returncode == 0
    wav = Scene().pause(1).speak(speech("alexa")).pause(0.2).speak(speech("turn off the oven")).pause(3) \
        .write(tmp_path / "a.wav")
    port = free_port()
    device = subprocess.Popen(
        [sys.executable, "-m", "earmark.device.cli", "run", "--data-dir", str(data_dir), "--audio-file", str(wav),
         "--mock-gpio", "--wyoming", f"tcp://127.0.0.1:{port}", "--no-zeroconf",
         "--speaker-file", str(tmp_path / "answer.wav")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    async def home_assistant() -> HomeAssistant:
        ha = await HomeAssistant.connect(port)
        started = await ha.wait_for("run-pipeline")
        await ha.wait_for("audio-stop", started.at)
        # Connected all along: the device's retained status says so while Home Assistant is there.
        await asyncio.to_thread(wait_until, lambda: (cloud.store.presence.of_owner(owner).get("den-pi")
                                                     and cloud.store.presence.of_owner(owner)["den-pi"].status
                                                     .get("home_assistant") == "running"),
                                30, "a status naming Home Assistant running")
        await ha.close()
        return ha

    try:
        ha = asyncio.run(home_assistant())
        out, err = device.communicate(timeout=120)
    finally:
        device.kill()
    assert device.returncode == 0, err
    assert "1 clip(s) recorded" in out and "0 clip(s) waiting" in out
    assert len(ha.of("detection")) == 1 and len(ha.of("audio-chunk")) > 10
    [row] = cloud.store.clips.of_owner(owner)
    stored = cloud.store.clips.stored(owner, row)
    assert row.device_id == "den-pi" and row.wake_word == "alexa" and stored.header.sealed
