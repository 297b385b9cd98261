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


def test_the_households_message_is_followed_as_state_learnt_forgotten_and_deleted(tmp_path: Path) -> None:
    """wire/marks.py's message is the whole state: a listed clip is learnt from what was kept
    of it (once, however often the message comes), a portal mark no longer listed is
    forgotten with its rows, `voice not-meant`'s own marks stay, and a deleted recording's
    kept features go."""
    import uuid

    from earmark.device.listening.marks import follow, keep_wake, kept_dir
    from earmark.wire.marks import MarksMessage

    first, second, third, unknown = (str(uuid.uuid4()) for _ in range(4))
    for number, clip_id in enumerate((first, second, third)):
        keep_wake(tmp_path, clip_id, "alexa", np.full((2, 192), number, np.float32), keep_days=30, keep_clips=10)
    save(tmp_path, Marks("alexa", np.full((1, 192), 9.0, np.float32), (Mark("advert.wav", "2026", 1),)))

    done = follow(tmp_path, MarksMessage((first, second, unknown), ()), keep_days=30)
    assert (done.learnt, done.forgotten) == ((first, second), ())
    assert len(done.not_learnt) == 1 and unknown in done.not_learnt[0] and "nothing kept" in done.not_learnt[0]
    assert counts(tmp_path) == {"alexa": 3}
    again = follow(tmp_path, MarksMessage((first, second, unknown), ()), keep_days=30)
    assert not again.changed and counts(tmp_path) == {"alexa": 3}  # heard twice: the same state

    taken_off = follow(tmp_path, MarksMessage((second,), (first, third)), keep_days=30)
    assert (taken_off.learnt, taken_off.forgotten, taken_off.dropped) == ((), (first,), 2)
    marks = load(tmp_path, "alexa")
    assert [m.source for m in marks.marks] == ["advert.wav", second]  # the device's own mark stays
    assert [float(r[0]) for r in marks.examples] == [9.0, 1.0, 1.0]  # with exactly its rows
    assert sorted(p.stem for p in kept_dir(tmp_path).glob("*.npz")) == [second]  # deleted: nothing kept of them

    remarked = follow(tmp_path, MarksMessage((second, first), ()), keep_days=30)
    assert remarked.learnt == () and first in remarked.not_learnt[0]  # deleted since: nothing left to learn


def test_a_marks_message_that_breaks_the_contract_is_refused_whole() -> None:
    import uuid

    from earmark.wire.marks import MAX_MARKS_BYTES, MOST_LISTED, MarksMessage, MarksMessageError, parse_marks

    good = MarksMessage(("0b0e1d4c-3f52-4d3a-9a43-5b1e2c3d4e5f",), ())
    assert parse_marks(good.encode()) == good
    ids = tuple(str(uuid.uuid4()) for _ in range(MOST_LISTED))
    assert len(MarksMessage(ids, ids).encode()) <= MAX_MARKS_BYTES  # the largest message fits the bound
    for bad, why in ((b"not json", "not JSON"), (b"[]", "exactly"), (b'{"v":2,"not_meant":[],"deleted":[]}', "version"),
                     (b'{"v":1,"not_meant":["../x"],"deleted":[]}', "not a clip id"),
                     (b'{"v":1,"not_meant":{},"deleted":[]}', "a list"),
                     (b" " * (MAX_MARKS_BYTES + 1), "exceeds")):
        with pytest.raises(MarksMessageError, match=why):
            parse_marks(bad)


def test_marks_that_cannot_be_followed_are_one_line_and_never_end_the_network_thread(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The household's message is followed on the publisher's network thread: an exception
    there would stop it (no more clips sent). An unreadable marks file is one line instead."""
    import logging
    import uuid
    from types import SimpleNamespace

    from earmark.device.assembly import follow_household
    from earmark.device.listening.marks import keep_wake
    from earmark.device.settings import load_settings
    from earmark.wire.marks import MarksMessage

    clip_id = str(uuid.uuid4())
    keep_wake(tmp_path, clip_id, "alexa", np.ones((2, 192)), keep_days=30, keep_clips=10)
    (tmp_path / "marks").mkdir()
    (tmp_path / "marks" / "alexa.npz").write_bytes(b"not a numpy archive")
    learnt: list[object] = []
    detector = SimpleNamespace(learn=learnt.append)
    with caplog.at_level(logging.WARNING):
        follow_household(load_settings(None, tmp_path, {}), detector, ["alexa"],  # type: ignore[arg-type]
                         MarksMessage((clip_id,), ()), None)
    assert "could not follow the household's marks" in caplog.text and learnt == []
