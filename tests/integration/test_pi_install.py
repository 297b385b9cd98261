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
# Bookworm's glibc is 2.36 (pymicro-wakeword's aarch64 wheel wants 2.35), Trixie's 2.41
AARCH64 = ["manylinux_2_36_aarch64", "manylinux_2_35_aarch64", "manylinux_2_28_aarch64", "manylinux_2_17_aarch64",
           "manylinux2014_aarch64", "linux_aarch64"]


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


SHIMS = {
    "uname": 'echo aarch64',
    # python3: the version, the venv module, and `-m venv DIR` making a venv whose pip and
    # earmark-device only say what they were asked.
    "python3": '''case "$*" in
  *version_info*) echo 3.13 ;;
  *ensurepip*) exit 0 ;;
  "-m venv "*) dir="${@: -1}"; mkdir -p "$dir/bin"
     for tool in pip earmark-device; do
       printf '#!/bin/sh\\necho "%s $*" >> "$CALLS"\\n' "$tool" > "$dir/bin/$tool"; chmod +x "$dir/bin/$tool"
     done ;;
esac''',
    "apt-get": 'echo "apt-get $*" >> "$CALLS"',
    "apt-cache": '[ -n "$HAS_LGPIO" ] || { echo "N: Unable to locate package $2" >&2; exit 100; }',
    "systemctl": '''echo "systemctl $*" >> "$CALLS"
if [ "$1" = daemon-reload ] && [ -z "$HAS_SYSTEMD" ]; then
  echo "System has not been booted with systemd as init system (PID 1). Can't operate." >&2; exit 1
fi''',
    "getent": '[ "$2" = audio ] || [ -n "$HAS_LGPIO" ]',  # plain Debian has no gpio or spi group
    "groupadd": 'echo "groupadd $*" >> "$CALLS"',
    "id": '[ "$1" = -u ] && echo 0 || exit 1',
    "useradd": 'echo "useradd $*" >> "$CALLS"',
    "usermod": 'echo "usermod $*" >> "$CALLS"',
    "install": '''args=(); while [ $# -gt 0 ]; do case "$1" in -o|-g) shift 2 ;; *) args+=("$1"); shift ;; esac; done
exec /usr/bin/install "${args[@]}"''',
    "runuser": 'echo "runuser $*" >> "$CALLS"; while [ "$1" != -- ]; do shift; done; shift; exec "$@"',
    "mountpoint": 'exit 1',
    "mount": 'echo "mount $*" >> "$CALLS"',
    "umount": 'echo "umount $*" >> "$CALLS"',
    "chroot": 'echo "chroot $1" >> "$CALLS"; image="$1"; shift; shift; while [ "$1" != bash ]; do shift; done; '
              'exec bash "$image$2"',  # the copy in the image, with these same shims
}


def install_on(tmp_path: Path, lgpio: bool, systemd: bool,
               args: tuple[str, ...] = ()) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """install-pi.sh on a pretend machine: PATH shims for apt, systemd, the user tools and
    python3; everything it installs lands under tmp_path. Returns (the run, the calls made)."""
    bin_dir, root = tmp_path / "bin", tmp_path / "root"
    bin_dir.mkdir()
    for name, body in SHIMS.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    running = root / "run" / "systemd" / "system"
    if systemd:
        running.mkdir(parents=True)
    calls = tmp_path / "calls.log"
    calls.touch()
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CALLS": str(calls), "HAS_LGPIO": "1" if lgpio else "",
           "HAS_SYSTEMD": "1" if systemd else "", "EARMARK_PREFIX": str(root / "opt" / "earmark"),
           "EARMARK_DATA": str(root / "var" / "lib" / "earmark"), "EARMARK_UNITS": str(root / "etc" / "systemd"),
           "EARMARK_SYSTEMD_RUNNING": str(running)}
    done = subprocess.run(["bash", str(ROOT / "deploy" / "install-pi.sh"), *args], capture_output=True, text=True,
                          env=env, timeout=60)
    print(done.stdout + done.stderr)
    return done, calls.read_text().splitlines()


def test_install_pi_on_raspberry_pi_os_uses_its_lgpio_and_starts_the_service(tmp_path: Path) -> None:
    done, calls = install_on(tmp_path, lgpio=True, systemd=True)
    assert done.returncode == 0, done.stderr
    [apt] = [c for c in calls if c.startswith("apt-get") and "install" in c]
    assert "python3-lgpio" in apt and "python3-venv" in apt
    assert "groupadd" not in " ".join(calls)
    systemctl = [c for c in calls if c.startswith("systemctl")]
    assert systemctl == ["systemctl enable earmark-device.service", "systemctl daemon-reload"]
    assert any(c.startswith("earmark-device models fetch") for c in calls)
    assert any(c.startswith("earmark-device mics") for c in calls)
    assert (tmp_path / "root" / "etc" / "systemd" / "earmark-device.service").exists()
    assert "Start it with: systemctl start earmark-device" in done.stdout


def test_install_pi_on_plain_debian_says_lgpio_is_not_there_and_goes_on(tmp_path: Path) -> None:
    """Issue 27 case 1: `E: Unable to locate package python3-lgpio` ended the install."""
    done, calls = install_on(tmp_path, lgpio=False, systemd=True)
    assert done.returncode == 0, done.stderr
    [apt] = [c for c in calls if c.startswith("apt-get") and "install" in c]
    assert "python3-lgpio" not in apt
    assert [line for line in done.stdout.splitlines() if "python3-lgpio" in line] == [
        "install-pi.sh: note: python3-lgpio is not in this system's apt sources (it comes from the Raspberry Pi "
        "archive): gpiozero falls back to another pin factory (not on a Pi 5); for lgpio add archive.raspberrypi.com"]
    assert {"groupadd --system gpio", "groupadd --system spi"} <= set(calls)  # the unit's groups exist
    assert "systemctl enable earmark-device.service" in calls


def test_install_pi_builds_an_image_in_a_chroot_without_systemd(tmp_path: Path) -> None:
    """Issue 27 case 2: `systemctl daemon-reload` ended the install where systemd does not
    run, as in a chroot building an SD-card image; the rest, `mics` included, was skipped."""
    image = tmp_path / "image"
    for folder in ("usr/bin", "etc", "proc", "sys", "dev"):
        (image / folder).mkdir(parents=True)
    (image / "usr" / "bin" / "python3").write_text("")
    (image / "usr" / "bin" / "python3").chmod(0o755)
    (image / "etc" / "resolv.conf").write_text("# the image's own\n")
    done, calls = install_on(tmp_path, lgpio=True, systemd=False, args=("--image", str(image)))
    assert done.returncode == 0, done.stderr
    assert (image / "opt" / "earmark" / "src" / "deploy" / "install-pi.sh").exists()  # the checkout, copied in
    assert not (image / "opt" / "earmark" / "src" / ".git").exists()
    assert f"chroot {image}" in calls
    assert [c for c in calls if c.startswith("systemctl")] == ["systemctl enable earmark-device.service"]
    assert "starts at the next boot" in done.stdout and "starts at its first boot" in done.stdout
    assert {f"mount --bind /{p} {image}/{p}" for p in ("proc", "sys", "dev")} <= set(calls)
    assert {f"umount -l {image}/{p}" for p in ("proc", "sys", "dev")} <= set(calls)
    assert (image / "etc" / "resolv.conf").read_text() == "# the image's own\n"  # put back


def test_install_pi_preflight_names_each_missing_prerequisite(tmp_path: Path) -> None:
    """Issue 27 case 4: a minimal Debian lacks sudo and python3-venv; the preflight named neither."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "uname").write_text("#!/bin/sh\necho aarch64\n")
    (bin_dir / "python3").write_text('#!/bin/sh\ncase "$*" in *version_info*) echo 3.13 ;; *) exit 1 ;; esac\n')
    for name in ("bash", "dirname", "cat"):  # the shell itself, and nothing else of a system
        (bin_dir / name).symlink_to(f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else f"/bin/{name}")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    done = subprocess.run([str(bin_dir / "bash"), str(ROOT / "deploy" / "install-pi.sh"), "--preflight"],
                          capture_output=True, text=True, env={"PATH": str(bin_dir)}, timeout=30)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2
    # (The script adds /usr/sbin and /sbin to PATH, where this machine's own runuser is.)
    runuser = [] if Path("/usr/sbin/runuser").exists() or Path("/sbin/runuser").exists() else ["runuser"]
    assert [line.split(" is missing")[0] for line in lines] == [
        f"install-pi.sh: {tool}" for tool in ("apt-get", *runuser, "systemctl")]
