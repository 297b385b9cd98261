"""Benchmark: the device as Home Assistant's Wyoming satellite.

Makes espeak-ng speech with N requests ("alexa", a pause, a request, silence), then:

  latency   the device reads it at a live microphone's pace, in this process, served to a
            Home Assistant client on the `wyoming` package (run-satellite, describe, a ping
            2 s after each pong, as Home Assistant drives one). Per request: wake to first
            streamed audio chunk (from the moment the loop hands the detection to the
            satellite to the chunk's arrival at the client), and end of speech to the
            stream's audio-stop (from the request's last voiced sample in the file's
            timeline to the audio-stop's arrival; it includes the recorder's end-of-speech
            silence, 0.7 s at the defaults). p50 and p95.
  cpu       the same audio, read as fast as it goes, by the device in a fresh process: plain
            `run` (wake, VAD, recorder, sealing, the fsync'd spool), then with the satellite
            serving a client in the parent process that streams every request. Alternating
            runs; CPU seconds per audio second, the satellite's ratio to plain (goal <= 1.1)
            and peak RSS (goal <= 150 MB).

wyoming-satellite (the deprecated reference satellite) is not measured beside it: it needs
its own wake-word service (wyoming-openwakeword) and a microphone command, and PyPI's
wyoming-satellite pins an older wyoming; see the README's Home Assistant section.
Usage: .venv/bin/python bench/satellite.py [--requests 8] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.broker import free_port  # noqa: E402
from tests.support.home_assistant import HomeAssistant  # noqa: E402
from tests.support.speech import Scene, say  # noqa: E402

OWNER = "6f1d2c3b-4a59-4e6f-8a7b-9c0d1e2f3a4b"
RECIPIENT = "age1pvnuxhcmtjlrwtsn8kaghezmllqkn57r8m8v832tn0l0dlp3e4dqlnyw3q"
REQUESTS = ("what time is it", "turn on the kitchen light", "set a timer for ten minutes",
            "what is the weather like tomorrow", "play some music in the living room", "turn off the oven",
            "add milk to the shopping list", "how long is my commute today")


def make_scene(n: int) -> Scene:
    scene = Scene()
    alexa = say("alexa")
    for i in range(n):
        scene.pause(1.5).speak(alexa).pause(0.2).speak(say(REQUESTS[i % len(REQUESTS)]), f"request-{i}").pause(2.5)
    return scene


def settings(data_dir: Path, port: int | None) -> Any:
    from earmark.device.settings import load_settings

    flags: dict[str, Any] = {"device_id": "bench-pi", "owner_id": OWNER, "gpio.mock": True, "recipients": (RECIPIENT,)}
    if port is not None:
        flags |= {"satellite.wyoming": f"tcp://127.0.0.1:{port}", "satellite.zeroconf": False,
                  "satellite.speaker_file": str(data_dir / "speaker.wav")}
    return load_settings(None, data_dir, flags)


def latency(scene: Scene, wav: Path, data_dir: Path) -> dict[str, list[float]]:
    from earmark.device.assembly import assemble
    from earmark.device.audio.source import WavFileSource
    from earmark.device.controls import Controls

    s = settings(data_dir, free_port())
    source = WavFileSource(wav, realtime=True)
    stop = threading.Event()
    device = assemble(s, source, Controls(s.gpio), stop=stop)
    satellite = device.satellite
    assert satellite is not None
    woke_at: list[float] = []
    handed = satellite.woke
    satellite.woke = lambda word, audio: (woke_at.append(time.monotonic()), handed(word, audio))[1]  # type: ignore
    started: list[float] = []
    opening = source.start
    source.start = lambda: (started.append(time.monotonic()), opening())[1]  # type: ignore

    def run() -> None:
        if satellite.wait_running(stop):
            device.run()

    thread = threading.Thread(target=run)
    thread.start()

    async def home_assistant() -> HomeAssistant:
        ha = await HomeAssistant.connect(int(s.satellite.wyoming.rsplit(":", 1)[1]))
        while thread.is_alive():
            await asyncio.sleep(0.2)
        await ha.close()
        return ha

    ha = asyncio.run(home_assistant())
    thread.join()
    device.close()
    stops = [a.at for a in ha.of("audio-stop")]
    chunks = [a.at for a in ha.of("audio-chunk")]
    first = [next(c for c in chunks if c >= w) - w for w in woke_at]
    ends = [started[0] + scene.marks[f"request-{i}"][1] for i in range(len(woke_at))]
    to_stop = [next(t for t in stops if t >= end) - end for end in ends]
    return {"first_chunk": first, "audio_stop": to_stop, "requests": [float(len(woke_at))]}


def child(mode: str, wav: Path, data_dir: Path, port: int) -> None:
    from earmark.device.assembly import assemble
    from earmark.device.audio.source import WavFileSource
    from earmark.device.controls import Controls

    s = settings(data_dir, port if mode == "satellite" else None)
    stop = threading.Event()
    device = assemble(s, WavFileSource(wav), Controls(s.gpio), stop=stop)
    if device.satellite is not None:
        print("listening", flush=True)
        device.satellite.wait_running(stop)
    start = time.process_time()
    stats = device.run()
    cpu = time.process_time() - start
    streamed = device.satellite.streamed_chunks if device.satellite is not None else 0
    device.close()
    print(json.dumps({"cpu_s": cpu, "audio_s": stats.frames * 0.08, "clips": len(stats.clips), "streamed": streamed,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def cpu_run(mode: str, wav: Path, data_dir: Path) -> dict[str, float]:
    port = free_port()
    process = subprocess.Popen([sys.executable, __file__, "--child", mode, str(wav), str(data_dir), str(port)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    if mode == "satellite":
        assert process.stdout.readline().strip() == "listening"

        async def home_assistant() -> None:
            ha = await HomeAssistant.connect(port)
            while process.poll() is None:
                await asyncio.sleep(0.1)
            await ha.close()

        asyncio.run(home_assistant())
    out = process.stdout.read()
    process.wait()
    return dict(json.loads(out.strip().splitlines()[-1]))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), Path(args.child[2]), int(args.child[3]))
        return

    from earmark.device.listening.models import fetch_models

    wheels = sorted((ROOT / ".cache" / "wheels").glob("openwakeword-0.4.0-*.whl"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        fetch_models(folder / "models", wheels[0] if wheels else None)

        def data_dir(name: str) -> Path:
            d = folder / name
            d.mkdir()
            (d / "models").symlink_to(folder / "models")
            return d

        scene = make_scene(args.requests)
        wav = scene.write(folder / "requests.wav")
        lat = latency(scene, wav, data_dir("latency"))
        cpu: dict[str, list[dict[str, float]]] = {"plain": [], "satellite": []}
        for run in range(args.runs):
            for mode in cpu:
                cpu[mode].append(cpu_run(mode, wav, data_dir(f"{mode}-{run}")))

    audio_s = cpu["plain"][0]["audio_s"]
    print(f"{args.requests} requests in {scene.length_s:.0f} s of espeak-ng speech; latency at a live mic's pace, "
          f"{lat['requests'][0]:.0f} requests streamed")
    for key, label in (("first_chunk", "wake to first audio chunk"), ("audio_stop", "end of speech to audio-stop")):
        print(f"{label:<30} p50 {pct(lat[key], 0.5) * 1000:6.0f} ms   p95 {pct(lat[key], 0.95) * 1000:6.0f} ms")
    ratios = [sat["cpu_s"] / plain["cpu_s"] for plain, sat in zip(cpu["plain"], cpu["satellite"], strict=True)]
    for mode in cpu:
        rtf = statistics.median(r["cpu_s"] for r in cpu[mode]) / audio_s
        print(f"{mode:<10} real-time factor {rtf:.4f}  peak RSS {max(r['peak_rss_mb'] for r in cpu[mode]):.0f} MB  "
              f"clips {cpu[mode][0]['clips']:.0f}  chunks streamed {cpu[mode][0]['streamed']:.0f}")
    print(f"satellite / plain CPU: median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, "
          f"max {max(ratios):.3f}); goal <= 1.1; peak RSS goal <= 150 MB")


if __name__ == "__main__":
    main()
