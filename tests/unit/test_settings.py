"""The device config: the commented example loads, flags override, mistakes name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from earmark.device.settings import load_settings
from earmark.wire.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "earmark-device.example.toml"


def test_the_commented_example_config_loads(tmp_path: Path) -> None:
    s = load_settings(EXAMPLE, tmp_path)
    assert s.data_dir == str(tmp_path)
    assert [w.name for w in s.wake.words] == ["alexa", "hey_jarvis"]
    assert s.recorder.max_length_s == 15.0 and s.recorder.pre_roll_s == 0.5


def test_flags_override_the_file(tmp_path: Path) -> None:
    s = load_settings(EXAMPLE, tmp_path, device_id="pi-override", spool_dir=tmp_path / "sp",
                      mock_gpio=True, owner_id=None)
    assert s.device_id == "pi-override"
    assert s.spool_dir == tmp_path / "sp"
    assert s.gpio.mock
    assert s.owner_id == load_settings(EXAMPLE, tmp_path).owner_id


@pytest.mark.parametrize(("toml", "names"), [
    ("[recorder]\nmax_length_s = 90\n", "recorder.max_length_s"),
    ("[recorder]\nmax_lenght_s = 10\n", "recorder.max_lenght_s is unknown"),
    ("[recorder]\nmax_length_s = \"15\"\n", "recorder.max_length_s: expected float, got str"),
    ("[gpio]\nmute_pin = true\n", "gpio.mute_pin: expected int | None, got bool"),
    ("[gpio]\nmute_pin = 5\ntalk_pin = 5\n", "two functions share a pin"),
    ("[gpio]\nmute_kind = \"latch\"\n", "gpio.mute_kind"),
    ("[[wake.words]]\nname = \"ok_google\"\n", "wake.words[0].name"),
    ("[[wake.words]]\nname = \"alexa\"\nthreshold = 1.5\n", "wake.words[0].threshold"),
    ("device_id = \"Kitchen Pi\"\n", "device_id"),
    ("owner_id = \"bob\"\n", "owner_id"),
    ("colour = \"blue\"\n", "colour is unknown"),
    ("[recorder\n", "not valid TOML"),
])
def test_a_bad_key_or_value_is_one_line_naming_it(tmp_path: Path, toml: str, names: str) -> None:
    path = tmp_path / "device.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, tmp_path)
    message = str(caught.value)
    assert names in message and "\n" not in message


def test_recording_needs_an_identity(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="device_id is not set"):
        load_settings(None, tmp_path).require_identity()
