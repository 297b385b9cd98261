"""Benchmark: CPU cost of the whole device loop against bare openWakeWord.

Makes ~10 minutes of espeak-ng speech (a wake word and request every ~40 s, plain talk in
between), then runs, each in a fresh process and alternating, several times:

  bare      openWakeWord Model.predict() on the 80 ms frames of the 16 kHz file, same models
  detector  Earmark's wake detector on the same frames: features, both model families
            (openWakeWord and microWakeWord) and the decision at its defaults, a household
            voice enrolled (its verifier asked on every frame whose score reaches the voice
            way's floor) and a near-name marked not meant (its check asked on a candidate)
  device    the full loop: WAV source (a 48 kHz stereo copy, so conversion is paid for), wake
            detector, VAD, recorder, signing and the fsync'd spool, the same voice enrolled

and prints real-time factors (CPU seconds / audio seconds), each one's ratio to bare
(targets: detector <= 1.1, device <= 1.15) and peak RSS (target: device <= 150 MB).
Usage: .venv/bin/python bench/device_loop.py [--minutes 10]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TALK = ("the committee met on tuesday to talk about the new library, and after a long "
        "discussion about parking and opening hours they agreed to meet again next month. ")
OWNER = "6f1d2c3b-4a59-4e6f-8a7b-9c0d1e2f3a4b"
RECIPIENT = "age1pvnuxhcmtjlrwtsn8kaghezmllqkn57r8m8v832tn0l0dlp3e4dqlnyw3q"  # every clip is sealed, as on a paired Pi


def make_audio(folder: Path, minutes: float) -> tuple[Path, Path]:
    def speak(name: str, text: str) -> Path:
        path = folder / f"{name}.wav"
        subprocess.run(["espeak-ng", "-v", "en", "-s", "150", "-w", str(path), text], check=True)
        return path

    wake, request, talk = speak("wake", "alexa"), speak("req", "what is the weather"), speak("talk", TALK * 2)
    block = folder / "block.wav"
    subprocess.run(["sox", str(wake), str(request), str(talk), str(block), "pad", "1", "1"], check=True)
    length = float(subprocess.run(["soxi", "-D", str(block)], capture_output=True, text=True,
                                  check=True).stdout)
    repeats = max(1, round(minutes * 60 / length))
    mono = folder / "speech16k.wav"
    subprocess.run(["sox", *[str(block)] * repeats, "-r", "16000", "-c", "1", "-b", "16", str(mono)],
                   check=True)
    stereo = folder / "speech48k-stereo.wav"
    subprocess.run(["sox", str(mono), "-r", "48000", "-c", "2", str(stereo)], check=True)
    return mono, stereo


def run_bare(wav: Path, models_dir: Path) -> dict[str, float]:
    import numpy as np
    from openwakeword.model import Model

    from earmark.device.audio.wavfile import open_wav

    f, info = open_wav(wav)
    with f:
        f.seek(info.data_offset)
        audio = np.frombuffer(f.read(info.data_bytes), dtype="<i2")
    model = Model(wakeword_models=[str(models_dir / "alexa_v0.1.onnx")], inference_framework="onnx",
                  melspec_model_path=str(models_dir / "melspectrogram.onnx"),
                  embedding_model_path=str(models_dir / "embedding_model.onnx"))
    start = time.process_time()
    for i in range(0, len(audio) - 1279, 1280):
        model.predict(audio[i:i + 1280])
    return {"cpu_s": time.process_time() - start, "audio_s": len(audio) / 16000}


def enroll_voice(folder: Path, data_dir: Path) -> None:
    """The espeak voice that speaks the benchmark's wake words, enrolled from 3 samples, and
    a near-name ("Alexis") marked not meant, so the decision runs with everything learnt."""
    from earmark.device.cli import main as device_cli

    samples = []
    for speed in (140, 150, 160):
        raw, path = folder / f"alexa-{speed}-raw.wav", folder / f"alexa-{speed}.wav"
        subprocess.run(["espeak-ng", "-v", "en", "-s", str(speed), "-w", str(raw), "alexa"], check=True)
        subprocess.run(["sox", str(raw), "-r", "16000", str(path), "pad", "1.5", "0.5"], check=True)
        samples.append(str(path))
    raw, marked = folder / "alexis-raw.wav", folder / "alexis.wav"
    subprocess.run(["espeak-ng", "-v", "en-gb+f3", "-w", str(raw), "Alexis, dinner is ready"], check=True)
    subprocess.run(["sox", str(raw), "-r", "16000", str(marked), "pad", "1", "1"], check=True)
    with contextlib.redirect_stdout(io.StringIO()):
        device_cli(["voice", "enroll", "--data-dir", str(data_dir), "--wake-word", "alexa", "--positive", *samples])
        device_cli(["voice", "not-meant", "--data-dir", str(data_dir), "--wake-word", "alexa", str(marked)])


def run_detector(wav: Path, data_dir: Path) -> dict[str, float]:
    import numpy as np

    from earmark.device.audio.wavfile import open_wav
    from earmark.device.listening.learnt import learnt
    from earmark.device.listening.micro import MicroWords
    from earmark.device.listening.models import locate_models
    from earmark.device.listening.verifier import WINDOW, word_verifiers
    from earmark.device.listening.wake import WakeDetector
    from earmark.device.settings import WakeSettings

    f, info = open_wav(wav)
    with f:
        f.seek(info.data_offset)
        audio = np.frombuffer(f.read(info.data_bytes), dtype="<i2")
    models = locate_models(data_dir / "models", ["alexa"])
    detector = WakeDetector(WakeSettings(), models, learnt(data_dir, ["alexa"]))
    detections = 0
    start = time.process_time()
    for i in range(0, len(audio) - 1279, 1280):
        detections += detector.process(audio[i:i + 1280]) is not None
    cpu_s = time.process_time() - start
    # The second stages on their own: microWakeWord on every frame, the word verifier's veto
    # and the marks' check per candidate.
    micro = MicroWords(["alexa"])
    start = time.process_time()
    for i in range(0, len(audio) - 1279, 1280):
        micro.push(audio[i:i + 1280])
    micro_s = time.process_time() - start
    window = detector.features.embeddings[-WINDOW:]

    def per_candidate_ms(check: Callable[[np.ndarray], float]) -> float:
        start = time.process_time()
        for _ in range(200):
            check(window)
        return (time.process_time() - start) / 200 * 1000

    return {"cpu_s": cpu_s, "audio_s": len(audio) / 16000, "clips": detections, "micro_cpu_s": micro_s,
            "marks_ms": per_candidate_ms(detector.learnt.not_meant["alexa"].score),
            "veto_ms": per_candidate_ms(word_verifiers()["alexa"].score)}


def run_device(wav: Path, data_dir: Path) -> dict[str, float]:
    from earmark.device.assembly import assemble
    from earmark.device.audio.source import WavFileSource
    from earmark.device.controls import Controls
    from earmark.device.settings import load_settings

    settings = load_settings(None, data_dir, {"device_id": "bench-pi", "owner_id": OWNER, "gpio.mock": True,
                                              "recipients": (RECIPIENT,)})
    source = WavFileSource(wav)
    loop = assemble(settings, source, Controls(settings.gpio)).loop
    start = time.process_time()
    stats = loop.run()
    return {"cpu_s": time.process_time() - start, "audio_s": stats.frames * 0.08,
            "clips": len(stats.clips)}


def child(mode: str, wav: Path, data_dir: Path) -> None:
    run = {"bare": lambda: run_bare(wav, data_dir / "models"), "detector": lambda: run_detector(wav, data_dir),
           "device": lambda: run_device(wav, data_dir)}[mode]
    result = run()
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", nargs=3, metavar=("MODE", "WAV", "DATA_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return

    from earmark.device.listening.models import fetch_models

    wheels = sorted((ROOT / ".cache" / "wheels").glob("openwakeword-0.4.0-*.whl"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        fetch_models(folder / "models", wheels[0] if wheels else None)
        mono, stereo = make_audio(folder, args.minutes)
        results: dict[str, list[dict[str, float]]] = {"bare": [], "detector": [], "device": []}
        for run in range(args.runs):
            for mode, wav in (("bare", mono), ("detector", mono), ("device", stereo)):
                data_dir = folder / f"{mode}-{run}"
                data_dir.mkdir()
                (data_dir / "models").symlink_to(folder / "models")
                if mode != "bare":
                    enroll_voice(folder, data_dir)
                out = subprocess.run([sys.executable, __file__, "--child", mode, str(wav), str(data_dir)],
                                     capture_output=True, text=True, check=True)
                results[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))

    audio_s = results["bare"][0]["audio_s"]
    rtf = {m: statistics.median(r["cpu_s"] for r in rs) / audio_s for m, rs in results.items()}
    rss = {m: max(r["peak_rss_mb"] for r in rs) for m, rs in results.items()}
    print(f"audio: {audio_s / 60:.1f} min of espeak-ng speech; {args.runs} alternating runs each, fresh process "
          f"per run; detections per run: detector {results['detector'][0]['clips']:.0f}, "
          f"device clips {results['device'][0]['clips']:.0f}")
    for mode, label, target in (("bare", "bare openWakeWord predict()", ""),
                                ("detector", "Earmark wake detector", "1.1"), ("device", "full device loop", "1.15")):
        ratios = [m["cpu_s"] / b["cpu_s"] for b, m in zip(results["bare"], results[mode], strict=True)]
        ratio = (f"  ratio to bare: median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, "
                 f"max {max(ratios):.3f}; target <= {target})" if target else "")
        print(f"{label:<28} real-time factor {rtf[mode]:.4f} (CPU {rtf[mode] * audio_s:.1f} s)  "
              f"peak RSS {rss[mode]:.0f} MB{ratio}")
    print("peak RSS target for the device: <= 150 MB")
    micro = statistics.median(r["micro_cpu_s"] / b["cpu_s"] for r, b in zip(results["detector"], results["bare"],
                                                                          strict=True))
    per_candidate = {key: statistics.median(r[key] for r in results["detector"]) for key in ("veto_ms", "marks_ms")}
    print(f"second stages: microWakeWord on every frame {micro:.3f} of bare openWakeWord's CPU; per candidate, "
          f"the word verifier's veto {per_candidate['veto_ms']:.3f} ms, the marks' check "
          f"{per_candidate['marks_ms']:.2f} ms")


if __name__ == "__main__":
    main()
