"""Handing a device over: `earmark-device reset` says what was never sent, then deletes the
key, the pairing, the spool and the enrolled household voices, so nothing recorded for the
old owner goes out under a new identity, and the next enrollment makes a new key."""

from __future__ import annotations

from pathlib import Path

import pytest

from earmark.device.cli import main
from earmark.device.sync.identity import load_or_create_key, public_key_of
from earmark.device.sync.spool import Spool


def test_reset_reports_unsent_clips_then_forgets_key_pairing_and_spool(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old_key, _ = load_or_create_key(tmp_path / "device.key")
    (tmp_path / "pairing.toml").write_text('device_id = "kitchen-pi"\n')
    (tmp_path / "broker.password").write_text("secret\n")
    Spool(tmp_path / "spool", 10**6).put("4d248f7a-3de1-4fff-8dca-97a03056f82b", b"an unsent clip")
    (tmp_path / "voices").mkdir()
    (tmp_path / "voices" / "alexa.npz").write_bytes(b"the household's voice features")

    assert main(["reset", "--yes", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1 clip(s)" in out and "never sent" in out
    assert not any((tmp_path / name).exists()
                   for name in ("device.key", "pairing.toml", "broker.password", "spool", "voices"))
    new_key, created = load_or_create_key(tmp_path / "device.key")
    assert created and public_key_of(new_key) != public_key_of(old_key)


def test_reset_without_yes_off_a_terminal_deletes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    load_or_create_key(tmp_path / "device.key")
    monkeypatch.setattr("sys.stdin", open("/dev/null"))  # noqa: SIM115 - closed by pytest's teardown
    assert main(["reset", "--data-dir", str(tmp_path)]) == 2
    assert "--yes" in capsys.readouterr().err and (tmp_path / "device.key").exists()
