"""Household marks (device/listening/marks.py) on synthetic embeddings: what a mark keeps,
how near a candidate must be to be refused, and a mark file that cannot be read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from earmark.device.listening.marks import (
    MOST_PER_RECORDING,
    Mark,
    MarkError,
    Marks,
    NotMeant,
    counts,
    examples_in,
    forget,
    load,
    save,
)
from earmark.device.listening.verifier import WINDOW, pooled


def test_a_mark_keeps_the_windows_where_the_word_rose_best_first_and_none_of_a_quiet_recording() -> None:
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(60, 96)).astype(np.float32)
    scores = np.zeros(60)
    scores[30:34] = [0.2, 0.9, 0.6, 0.05]
    kept = examples_in(embeddings, scores)
    assert kept.shape == (3, 192)  # the frames at 0.1 or more, pooled as the verifiers pool them
    assert np.allclose(kept[1], pooled(embeddings[31 - WINDOW + 1:32]))
    assert examples_in(embeddings, np.full(60, 0.05)).shape == (0, 192)
    assert len(examples_in(embeddings, np.ones(60))) == MOST_PER_RECORDING


def test_only_a_window_nearer_a_mark_than_the_word_is_refused() -> None:
    rng = np.random.default_rng(1)
    word = rng.normal(0, 1, size=(200, 192)).astype(np.float32)
    name = np.full((1, 192), 3.0, np.float32)
    check = NotMeant(name, word)

    def window_pooled_to(target: np.ndarray) -> np.ndarray:
        # a window whose pooled mean is `target`'s first half and whose spread is its second
        half = WINDOW // 2
        mean, spread = target[:96], target[96:]
        return np.vstack([mean + spread] * half + [mean - spread] * half).astype(np.float32)

    near_name = window_pooled_to(np.concatenate((np.full(96, 2.9), np.full(96, 2.9))))
    like_word = window_pooled_to(np.concatenate((word[5, :96], np.abs(word[5, 96:]))))
    assert check.nearer_a_mark(near_name) and check.score(near_name) > 0.9
    assert not check.nearer_a_mark(like_word) and check.score(like_word) == 0.0


def test_marks_are_kept_0600_counted_and_forgotten_per_word(tmp_path: Path) -> None:
    marks = Marks("alexa", np.zeros((0, 192), np.float32), ()).plus(np.ones((3, 192)), Mark("a.wav", "2026", 3))
    path = save(tmp_path, marks)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    save(tmp_path, Marks("hey_jarvis", np.ones((1, 192)), (Mark("b.wav", "2026", 1),)))
    assert load(tmp_path, "alexa").marks == (Mark("a.wav", "2026", 3),)
    assert counts(tmp_path) == {"alexa": 1, "hey_jarvis": 1}
    assert forget(tmp_path, "alexa") == ["alexa"]
    assert counts(tmp_path) == {"hey_jarvis": 1}
    assert len(load(tmp_path, "alexa").examples) == 0  # no marks: nothing to check against


def test_an_unreadable_mark_file_is_one_line_saying_how_to_recover(tmp_path: Path) -> None:
    (tmp_path / "marks").mkdir()
    (tmp_path / "marks" / "alexa.npz").write_bytes(b"not a numpy archive")
    with pytest.raises(MarkError, match="forget-marks --wake-word alexa"):
        load(tmp_path, "alexa")


def test_what_is_kept_of_each_recording_is_bounded_by_count_and_age(tmp_path: Path) -> None:
    import os
    import time
    import uuid

    from earmark.device.listening.marks import keep_wake, kept_dir

    ids = [str(uuid.uuid4()) for _ in range(4)]
    for number, clip_id in enumerate(ids):
        keep_wake(tmp_path, clip_id, "alexa", np.ones((2, 192)), keep_days=30, keep_clips=3)
        os.utime(kept_dir(tmp_path) / f"{clip_id}.npz", (time.time() - 10 + number,) * 2)
    keep_wake(tmp_path, ids[3], "alexa", np.ones((2, 192)), keep_days=30, keep_clips=3)
    assert sorted(p.stem for p in kept_dir(tmp_path).glob("*.npz")) == sorted(ids[1:])  # the oldest went
    os.utime(kept_dir(tmp_path) / f"{ids[1]}.npz", (time.time() - 31 * 86400,) * 2)
    keep_wake(tmp_path, ids[3], "alexa", np.ones((2, 192)), keep_days=30, keep_clips=3)
    assert sorted(p.stem for p in kept_dir(tmp_path).glob("*.npz")) == sorted(ids[2:])  # past 30 days
    assert oct((kept_dir(tmp_path) / f"{ids[3]}.npz").stat().st_mode & 0o777) == "0o600"
    keep_wake(tmp_path, "../escape", "alexa", np.ones((2, 192)), keep_days=30, keep_clips=3)
    assert not (tmp_path / "escape.npz").exists()  # only a clip id names a file
