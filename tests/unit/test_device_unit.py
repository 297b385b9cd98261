"""The systemd unit the Pi runs: the service user can write where lgpio needs to, and a
configuration error is the only exit that is not restarted."""

from __future__ import annotations

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def service() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(ROOT / "deploy" / "earmark-device.service")
    return parser["Service"]


def test_lgpio_has_a_writable_working_directory() -> None:
    # Issue 12 case 6: with ProtectSystem=strict and no WorkingDirectory, lgpio could not
    # create its notification pipes (cwd was /), so gpiozero failed on a Pi 5.
    unit = service()
    writable = unit["ReadWritePaths"].split()
    assert unit["WorkingDirectory"] in writable
    assert f"LG_WD={unit['WorkingDirectory']}" in unit["Environment"]


def test_only_configuration_errors_stop_the_restarts() -> None:
    unit = service()
    assert unit["Restart"] == "on-failure" and unit["RestartPreventExitStatus"] == "2"
