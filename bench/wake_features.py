"""Per-frame features of the wake-word evaluation set, computed once and cached beside it.

For every clip: openWakeWord's embeddings (the device's own FeatureStream), each built-in
wake word's bare score, and Silero VAD's speech probability, one row per 80 ms frame, in
`<set>/features/<clip>.npz`; and microWakeWord's probability for the words it has a model
for (device/listening/micro.py). Computed in one process per core; the decisions replayed on
them (bench/wake_eval.py) are the device's own code.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from bench.wake_audio import Clip, read_wav
from bench.wake_set import WORDS
from earmark.device.audio.source import FRAME_SAMPLES
from earmark.device.listening.features import FeatureStream, SileroVad, WakeModel
from earmark.device.listening.micro import MicroWords
from earmark.device.listening.models import ModelFiles, locate_models

_models: ModelFiles | None = None


def models(models_dir: Path) -> ModelFiles:
    return locate_models(models_dir, list(WORDS))


def frames_of(audio: np.ndarray) -> list[np.ndarray]:
    usable = len(audio) - len(audio) % FRAME_SAMPLES
    return list(audio[:usable].reshape(-1, FRAME_SAMPLES))


def compute(path: Path, files: ModelFiles) -> dict[str, np.ndarray]:
    stream = FeatureStream(files.melspectrogram, files.embedding)
    wake = {name: WakeModel(p) for name, p in files.wake_words.items()}
    vad = SileroVad(files.vad)
    micro = MicroWords(list(wake))
    embeddings, vad_p = [], []
    scores: dict[str, list[float]] = {name: [] for name in wake}
    micro_scores: dict[str, list[float]] = {name: [] for name in micro.words}
    for frame in frames_of(read_wav(path)):
        stream.push(frame)
        embeddings.append(stream.embeddings[-1].astype(np.float16))
        for name, model in wake.items():
            scores[name].append(model.score(stream))
        vad_p.append(vad.probability(frame))
        for name, p in micro.push(frame).items():
            micro_scores[name].append(p)
    return {"embeddings": np.array(embeddings), "vad": np.array(vad_p, np.float32),
            **{f"score_{name}": np.array(s, np.float32) for name, s in scores.items()},
            **{f"micro_{name}": np.array(s, np.float32) for name, s in micro_scores.items()}}


def _one(job: tuple[str, str, str]) -> str:
    source, target, models_dir = job
    global _models
    if _models is None:
        _models = models(Path(models_dir))
    data = compute(Path(source), _models)
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(target + ".tmp.npz")
    np.savez(tmp, **data)
    tmp.replace(target)
    return target


def ensure(folder: Path, clips: list[Clip], models_dir: Path, workers: int = os.cpu_count() or 1) -> None:
    """Compute what is missing, one process per core."""
    jobs = [(str(folder / c.path), str(feature_path(folder, c)), str(models_dir)) for c in clips
            if not feature_path(folder, c).exists()]
    if not jobs:
        return
    print(f"computing features for {len(jobs)} clips ({sum(c.seconds for c in clips) / 3600:.1f} h in the set)",
          flush=True)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for done, _ in enumerate(pool.map(_one, jobs, chunksize=4), 1):
            if done % 100 == 0:
                print(f"  {done}/{len(jobs)}", flush=True)


def feature_path(folder: Path, clip: Clip) -> Path:
    return folder / "features" / (clip.path + ".npz")


def load(folder: Path, clip: Clip) -> dict[str, np.ndarray]:
    with np.load(feature_path(folder, clip)) as data:
        return {k: data[k] for k in data.files}
