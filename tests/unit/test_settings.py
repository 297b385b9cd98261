"""The device config: the commented example loads, flags override, mistakes name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from earmark.device.settings import load_settings
from earmark.wire.errors import ConfigError
from tests.conftest import OWNER

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "earmark-device.example.toml"


def test_the_example_config_shows_exactly_the_defaults(tmp_path: Path) -> None:
    # Issue 12 case 2: it claimed to show the defaults while enabling a second wake word
    # and setting a live device and owner id.
    s = load_settings(EXAMPLE, tmp_path)
    assert s == load_settings(None, tmp_path)
    assert s.device_id == "" and s.owner_id == ""
    assert [w.name for w in s.wake.words] == ["alexa"]


def test_flags_override_the_file(tmp_path: Path) -> None:
    from earmark.device.settings import WakeWordSettings

    s = load_settings(EXAMPLE, tmp_path, {"device_id": "pi-override", "spool.directory": str(tmp_path / "sp"),
                                          "gpio.mock": True, "wake.words": (WakeWordSettings("hey_jarvis"),
                                                                            WakeWordSettings("alexa"))})
    assert s.device_id == "pi-override"
    assert s.spool_dir == tmp_path / "sp"
    assert s.gpio.mock
    assert [w.name for w in s.wake.words] == ["hey_jarvis", "alexa"]


def pair(data_dir: Path, device_id: str = "garage-pi") -> None:
    (data_dir / "pairing.toml").write_text(
        f'device_id = "{device_id}"\nowner_id = "{OWNER}"\n\n[broker]\nurl = "mqtts://cloud:8883"\n')


def test_the_installed_example_config_does_not_override_the_pairing(tmp_path: Path) -> None:
    # Issue 12 case 2: install-pi.sh copied the example, whose device_id and owner_id
    # outranked pairing.toml, so clips were sealed as kitchen-pi for a made-up owner.
    installed = tmp_path / "device.toml"
    installed.write_text(EXAMPLE.read_text())
    pair(tmp_path)
    s = load_settings(installed, tmp_path)
    assert (s.device_id, s.owner_id, s.broker.url) == ("garage-pi", OWNER, "mqtts://cloud:8883")


@pytest.mark.parametrize("where", ["config", "flag"])
def test_an_identity_that_contradicts_the_pairing_is_refused(tmp_path: Path, where: str) -> None:
    pair(tmp_path)
    config = tmp_path / "device.toml"
    config.write_text('device_id = "kitchen-pi"\n' if where == "config" else "")
    with pytest.raises(ConfigError, match=r"kitchen-pi.*contradicts the pairing.*garage-pi") as caught:
        load_settings(config, tmp_path, {"device_id": "kitchen-pi"} if where == "flag" else {})
    assert ("--device-id" in str(caught.value)) == (where == "flag")


def test_an_identity_that_agrees_with_the_pairing_is_fine(tmp_path: Path) -> None:
    pair(tmp_path)
    config = tmp_path / "device.toml"
    config.write_text('device_id = "garage-pi"\n')
    assert load_settings(config, tmp_path, {"device_id": "garage-pi"}).device_id == "garage-pi"


@pytest.mark.parametrize(("toml", "names"), [
    ("[recorder]\nmax_length_s = 90\n", "recorder.max_length_s"),
    ("[recorder]\nmax_lenght_s = 10\n", "recorder.max_lenght_s is unknown"),
    ("[recorder]\nmax_length_s = \"15\"\n", "recorder.max_length_s: expected float, got str"),
    ("[gpio]\nmute_pin = true\n", "gpio.mute_pin: expected int, got bool"),
    ("[gpio]\nmute_pin = 5\ntalk_pin = 5\n", "two functions share a pin"),
    ("[gpio]\nmute_kind = \"latch\"\n", "gpio.mute_kind"),
    ("[[wake.words]]\nname = \"ok_google\"\n", "wake.words[0].name"),
    ("[[wake.words]]\nname = \"alexa\"\nthreshold = 1.5\n", "wake.words[0].threshold"),
    ("device_id = \"Kitchen Pi\"\n", "device_id"),
    ("owner_id = \"bob\"\n", "owner_id"),
    ("colour = \"blue\"\n", "colour is unknown"),
    ("[recorder\n", "not valid TOML"),
    ("[recorder]\nsilence = \"patient\"\n", "recorder.silence"),
    ("[recorder]\nsilence_end_s = 0.1\n", "recorder.silence_end_s"),
    ("[gpio]\nled_power_pin = 5\nmute_pin = 5\n", "two functions share a pin"),
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


def test_recording_needs_the_households_key_and_says_how_to_get_it(tmp_path: Path) -> None:
    """Issue 34: a device with no recipient records nothing, with one line on how to pair."""
    given = {"device_id": "pi-1", "owner_id": "6f1d2c3b-4a59-4e6f-8a7b-9c0d1e2f3a4b"}
    with pytest.raises(ConfigError, match="no household key") as caught:
        load_settings(None, tmp_path, given).require_identity()
    assert "\n" not in str(caught.value) and "provision" in str(caught.value) and "--recipient" in str(caught.value)
    recipient = "age1pvnuxhcmtjlrwtsn8kaghezmllqkn57r8m8v832tn0l0dlp3e4dqlnyw3q"
    load_settings(None, tmp_path, {**given, "recipients": (recipient,)}).require_identity()
    with pytest.raises(ConfigError, match=r"recipients\[0\]: must be an age X25519 recipient"):
        load_settings(None, tmp_path, {**given, "recipients": ("AGE-SECRET-KEY-1",)}).require_identity()
