"""One error root: every error Earmark raises on purpose is an EarmarkError whose exit code
tells systemd whether restarting can help; each CLI maps exceptions in one place."""

from __future__ import annotations

import errno
import importlib
import inspect
from pathlib import Path

import pytest

from earmark.cloud.store.database import StoreError, StoreUnavailable
from earmark.device.audio.microphone import MicUnavailable
from earmark.wire.errors import (
    EXIT_TEMPFAIL,
    EXIT_USAGE,
    ConfigError,
    EarmarkError,
    TransientError,
    UsageError,
    exit_code_for,
)
from tests.unit.test_layout import modules


def test_every_exception_class_earmark_defines_has_the_one_root() -> None:
    strays = []
    for name in modules():
        if name.endswith("__main__"):  # importing it would run the CLI
            continue
        module = importlib.import_module(name)
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == name and issubclass(cls, BaseException) and not issubclass(cls, EarmarkError):
                strays.append(f"{name}.{cls_name}")
    assert strays == []


def test_the_error_class_alone_decides_the_exit_code() -> None:
    # StoreUnavailable was both a usage and a transient error with an override to pick one;
    # ExportError exited 2 without being a usage error; a broker error took its code as an argument.
    roots = {EarmarkError, UsageError, TransientError}
    for name in modules():
        if name.endswith("__main__"):
            continue
        for _, cls in inspect.getmembers(importlib.import_module(name), inspect.isclass):
            if not issubclass(cls, EarmarkError) or cls in roots:
                continue
            assert "exit_code" not in vars(cls), f"{cls.__qualname__} sets its own exit code"
            assert not (issubclass(cls, UsageError) and issubclass(cls, TransientError)), cls.__qualname__
            assert "exit_code" not in inspect.getsource(cls.__init__) if "__init__" in vars(cls) else True



def test_both_sides_share_one_config_error() -> None:
    from earmark.cloud import settings as cloud_settings
    from earmark.device import settings as device_settings

    cloud_config_error = getattr(cloud_settings, "ConfigError")  # noqa: B009 - re-exported by import
    device_config_error = getattr(device_settings, "ConfigError")  # noqa: B009
    assert cloud_config_error is device_config_error is ConfigError
    assert issubclass(ConfigError, ValueError) and exit_code_for(ConfigError("x = 1"))[0] == EXIT_USAGE


@pytest.mark.parametrize(("error", "code"), [
    (UsageError("fix it"), EXIT_USAGE),
    (StoreError("no store here"), EXIT_USAGE),
    (TransientError("not yet"), EXIT_TEMPFAIL),
    (StoreUnavailable("database down"), EXIT_TEMPFAIL),
    (MicUnavailable("no microphone yet"), EXIT_TEMPFAIL),
    (EarmarkError("refused"), 1),
])
def test_each_kind_of_error_has_its_exit_code(error: EarmarkError, code: int) -> None:
    assert exit_code_for(error) == (code, str(error))


def test_an_os_error_is_usage_when_a_path_is_wrong_and_temporary_otherwise(tmp_path: Path) -> None:
    missing = FileNotFoundError(errno.ENOENT, "No such file or directory", str(tmp_path / "x"))
    assert exit_code_for(missing, "reading the config") == (
        EXIT_USAGE, f"reading the config: {tmp_path / 'x'} No such file or directory")
    in_use = OSError(errno.EADDRINUSE, "Address already in use")
    assert exit_code_for(in_use, "serving metrics on :9108")[0] == EXIT_TEMPFAIL
    full = OSError(errno.ENOSPC, "No space left on device")
    assert exit_code_for(full)[0] == EXIT_TEMPFAIL


def test_a_bug_is_not_dressed_up_as_a_user_error() -> None:
    with pytest.raises(KeyError):
        exit_code_for(KeyError("surprise"))


def test_a_multi_line_message_becomes_one_line() -> None:
    assert exit_code_for(UsageError("first line\nhint: second"))[1] == "first line"


def test_the_cloud_cli_says_one_line_and_exits_2_for_a_missing_store(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from earmark.cloud.cli import main

    (tmp_path / "secrets").mkdir()
    code = main(["owner", "list", "--data-dir", str(tmp_path)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_USAGE and len(lines) == 1 and lines[0].startswith("earmark-cloud: error: master key")


def test_the_device_cli_says_one_line_and_exits_2_for_a_missing_model(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from earmark.device.cli import main

    code = main(["detect", str(tmp_path / "a.wav"), "--data-dir", str(tmp_path)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_USAGE and len(lines) == 1 and "models fetch" in lines[0]


def test_a_metrics_port_in_use_names_the_port_and_exits_temporary() -> None:
    import socket

    from earmark.cloud.ingest.metrics import Metrics, serve

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(TransientError) as caught:
            serve(Metrics(), dict, "127.0.0.1", port)
    assert exit_code_for(caught.value) == (EXIT_TEMPFAIL, f"cannot serve /metrics on 127.0.0.1:{port}: "
                                                          "Address already in use")


@pytest.mark.parametrize("module", ["earmark.cloud.cli", "earmark.device.cli"])
def test_both_command_lines_say_their_version(module: str, capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.split() == [f"earmark-{module.split('.')[1]}",
                                                                       version("earmark")]
