"""The device installs on current Raspberry Pi OS, 64-bit: Bookworm (Python 3.11) and
Trixie (3.13). pip's own resolver, asked for aarch64 wheels only, must find every
dependency of the device extra (the two small C extensions that build from source on the
Pi aside), and none of openwakeword's tflite-runtime or training-only packages. Needs PyPI,
as setup.sh does."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILT_ON_THE_PI = {"pyaudio", "spidev"}  # sdists; install-pi.sh installs their build dependencies
NOT_ON_THE_PI = {"openwakeword", "tflite-runtime", "scipy", "scikit-learn", "requests", "tqdm"}
AARCH64 = ["manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64", "linux_aarch64"]


def requirement_name(spec: str) -> str:
    return re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0].lower()


def device_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["device"]]


def resolve(python: str, platforms: list[str], requirements: list[str], tmp_path: Path) -> dict[str, str]:
    report = tmp_path / f"report-{python}.json"
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed",
               "--only-binary=:all:", "--implementation", "cp", "--python-version", python,
               *(arg for p in platforms for arg in ("--platform", p)),
               "--target", str(tmp_path / "target"), "--report", str(report), *requirements]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise AssertionError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "pip failed")
    installs = json.loads(report.read_text())["install"]
    return {i["metadata"]["name"].lower(): i["download_info"]["url"].rsplit("/", 1)[-1] for i in installs}


@pytest.mark.parametrize("python", ["3.11", "3.13"])
def test_the_device_extra_resolves_to_aarch64_wheels(python: str, tmp_path: Path) -> None:
    # Issue 12 case 1: openwakeword 0.6 requires tflite-runtime on Linux, which has no
    # wheel past Python 3.11, so resolving for Trixie (3.13) failed.
    wanted = [r for r in device_requirements() if requirement_name(r) not in BUILT_ON_THE_PI]
    resolved = resolve(python, AARCH64, wanted, tmp_path)
    print(f"cp{python.replace('.', '')} aarch64:", ", ".join(f"{n} ({w})" for n, w in sorted(resolved.items())))
    assert {"numpy", "onnxruntime", "gpiozero", "paho-mqtt", "cryptography"} <= set(resolved)
    assert not NOT_ON_THE_PI & set(resolved)
    tag = f"cp{python.replace('.', '')}"
    assert tag in resolved["onnxruntime"] and "aarch64" in resolved["onnxruntime"]


def test_what_builds_on_the_pi_is_named_and_nothing_else_is_missing() -> None:
    names = {requirement_name(r) for r in device_requirements()}
    assert names >= BUILT_ON_THE_PI
    assert not NOT_ON_THE_PI & names


def test_32_bit_arm_has_no_onnxruntime_wheel(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="onnxruntime"):
        resolve("3.11", ["linux_armv7l", "manylinux_2_17_armv7l", "manylinux2014_armv7l"],
                ["onnxruntime>=1.16,<2"], tmp_path)


def preflight(tmp_path: Path, machine: str, python: str) -> subprocess.CompletedProcess[str]:
    """install-pi.sh's checks on a pretend Pi: `uname -m` and python3 answer as told."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "uname").write_text(f"#!/bin/sh\necho {machine}\n")
    (bin_dir / "python3").write_text(f"#!/bin/sh\necho {python}\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return subprocess.run(["bash", str(ROOT / "deploy" / "install-pi.sh"), "--preflight"], capture_output=True,
                          text=True, env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, timeout=30)


@pytest.mark.parametrize(("machine", "python", "ok", "says"), [
    ("aarch64", "3.11", True, "supported"),
    ("aarch64", "3.13", True, "supported"),
    ("armv7l", "3.11", False, "no 32-bit ARM wheels"),
    ("aarch64", "3.9", False, "needs 3.11-3.13"),
])
def test_install_pi_checks_the_machine_first(tmp_path: Path, machine: str, python: str, ok: bool,
                                             says: str) -> None:
    done = preflight(tmp_path, machine, python)
    assert (done.returncode == 0) == ok
    assert says in (done.stdout + done.stderr)
    assert len((done.stdout + done.stderr).strip().splitlines()) == 1
