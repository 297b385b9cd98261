"""The one settings loader both sides use (runtime/config.py): each field carries its
default, rule, help and flag; the example configs document every key; a flag is checked by
the same rule as the config file; nothing malformed gets past as another kind of error."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from earmark.cloud.settings import CloudSettings
from earmark.cloud.settings import load_settings as load_cloud
from earmark.device.settings import DeviceSettings
from earmark.device.settings import load_settings as load_device
from earmark.runtime.config import add_flags, describe, flag_values, load, setting, within
from earmark.wire.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("cls", "example"), [(DeviceSettings, "earmark-device.example.toml"),
                                              (CloudSettings, "earmark-cloud.example.toml")])
def test_every_setting_has_help_and_the_example_config_names_it(cls: type, example: str) -> None:
    text = (ROOT / "deploy" / example).read_text()
    for path, _, help_text in describe(cls):
        assert help_text, f"{path} has no help"
        key = path.split(".")[-1]
        assert re.search(rf"^#?\s*({re.escape(key)}\s*=|\[\[{re.escape(path)}\]\])", text, re.MULTILINE), \
            f"{example} does not document {path}"


def test_a_type_the_loader_cannot_read_is_a_config_error_not_a_crash() -> None:
    @dataclass(frozen=True)
    class Odd:
        when: complex = setting(1j, "something no TOML value is")

    with pytest.raises(ConfigError, match=r"config key when: a .* cannot be set from a config file"):
        load(Odd, {"when": 3})


def test_a_rule_lives_with_its_field_and_holds_for_the_file_and_the_flag_alike(tmp_path: Path) -> None:
    @dataclass(frozen=True)
    class Knob:
        level: int = setting(3, "how loud", within(1, 10), flag="--level")

    assert load(Knob, {"level": 7}).level == 7
    with pytest.raises(ConfigError, match=r"config key level: must be 1\.\.10"):
        load(Knob, {"level": 11})
    parser = argparse.ArgumentParser()
    add_flags(parser, Knob, ["level"])
    assert flag_values(parser.parse_args(["--level", "4"])) == {"level": 4}
    assert "how loud" in parser.format_help()
    with pytest.raises(ConfigError, match=r"config key metrics\.port: must be 0"):
        load_cloud(None, tmp_path, {"metrics.port": 70000})
    with pytest.raises(ConfigError, match=r"config key mic\.rate: must be 0"):
        load_device(None, tmp_path, {"mic.rate": 5})


def test_the_command_lines_flags_are_the_settings_own(tmp_path: Path) -> None:
    from earmark.cloud.cli.main import build_parser as cloud_parser
    from earmark.device.cli import build_parser as device_parser

    device = device_parser().parse_args(["run", "--data-dir", str(tmp_path), "--mic", "2", "--broker",
                                         "mqtts://cloud:8883", "--mock-gpio"])
    s = load_device(None, tmp_path, flag_values(device))
    assert (s.mic.device, s.broker.url, s.gpio.mock) == ("2", "mqtts://cloud:8883", True)
    cloud = cloud_parser().parse_args(["ingest", "--broker", "mqtts://b:8883", "--ca", "ca.pem", "--source", "amqp",
                                       "--metrics-port", "0", "--data-dir", str(tmp_path)])
    c = load_cloud(None, tmp_path, flag_values(cloud))
    assert (c.broker.url, c.broker.ca, c.source, c.metrics.port) == ("mqtts://b:8883", "ca.pem", "amqp", 0)


def test_an_amqp_url_names_a_clusters_nodes_in_order_and_each_is_checked(tmp_path: Path) -> None:
    from earmark.cloud.ingest.amqp_source import connection_parameters

    config = tmp_path / "cloud.toml"
    config.write_text('[amqp]\nurl = "amqp://rabbit-2:5673,[fd00::3],rabbit-1/earmark"\nheartbeat_s = 4\n')
    settings = load_cloud(config, tmp_path, {})
    nodes = connection_parameters(settings)
    assert [(n.host, n.port, n.virtual_host, n.heartbeat) for n in nodes] == [
        ("rabbit-2", 5673, "earmark", 4), ("fd00::3", 5672, "earmark", 4), ("rabbit-1", 5672, "earmark", 4)]
    for bad, says in (("amqp://rabbit-1:5672,rabbit-2:99999/earmark", "must be amqp://"),
                      ("amqp://rabbit-1,:5672/earmark", "must be amqp://"),
                      ("amqp://ingester:secret@rabbit-1,rabbit-2/earmark", "must not hold a password")):
        config.write_text(f'[amqp]\nurl = "{bad}"\n')
        with pytest.raises(ConfigError, match=says):
            load_cloud(config, tmp_path, {})


def test_a_list_setting_is_an_array_in_the_file_and_a_repeatable_flag() -> None:
    """recipients: an array of strings in device.toml, `--recipient` once per value, each checked."""
    import argparse

    from earmark.device.settings import DeviceSettings
    from earmark.runtime.config import add_flags, flag_values, load

    one, two = ("age1pvnuxhcmtjlrwtsn8kaghezmllqkn57r8m8v832tn0l0dlp3e4dqlnyw3q",
                "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p")
    parser = argparse.ArgumentParser()
    add_flags(parser, DeviceSettings, ["recipients"])
    assert flag_values(parser.parse_args(["--recipient", one, "--recipient", two])) == {"recipients": (one, two)}
    assert load(DeviceSettings, {"recipients": [one]}, data_dir="/x").recipients == (one,)
    for bad, why in (("age1x", r"recipients\[0\]: must be an age"), ([one, 5], "an array of strings")):
        with pytest.raises(ConfigError, match=why):
            load(DeviceSettings, {"recipients": bad if isinstance(bad, list) else [bad]}, data_dir="/x")
