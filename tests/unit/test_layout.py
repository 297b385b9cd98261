"""The layout promises: one import package `earmark` whose parts keep their folders at the
root, layers without import cycles, SQL only in the store, and an installed wheel that puts
nothing but `earmark` into site-packages."""

from __future__ import annotations

import ast
import hashlib
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PARTS = {"wire": "earmark.wire", "runtime": "earmark.runtime", "device": "earmark.device", "cloud": "earmark.cloud"}


def modules() -> dict[str, Path]:
    found = {}
    for folder, package in PARTS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join((package, *rel))
            found[name.removesuffix(".__init__")] = path
    return found


def top_level_imports(path: Path) -> set[str]:
    """Modules imported when `path` is imported (not inside functions or TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("earmark."):
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.startswith("earmark."))
    return names


def test_every_package_folder_is_listed_for_setuptools() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {name for name, path in modules().items() if path.name == "__init__.py"}
    data_only = {name for name in setuptools["package-data"] if name not in folders}  # templates, static files
    assert set(setuptools["packages"]) == folders | data_only


def test_the_layers_import_each_other_without_cycles() -> None:
    known = modules()
    graph = {name: {m for m in top_level_imports(path) if m in known and m != name} for name, path in known.items()}
    # A package's __init__ re-exports its modules; importing a module imports its package first.
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1 and known[node].name != "__init__.py":
                cycles.append([*trail[trail.index(nxt):], nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_the_wire_imports_neither_side_and_the_device_never_the_cloud() -> None:
    for name, path in modules().items():
        imported = top_level_imports(path) | {n for n in re.findall(r"earmark\.\w+", path.read_text())}
        if name.startswith("earmark.wire"):
            assert not {i for i in imported if i.startswith(("earmark.device", "earmark.cloud", "earmark.runtime"))}, \
                name
        if name.startswith("earmark.runtime"):
            assert not {i for i in imported if i.startswith(("earmark.device", "earmark.cloud"))}, name
        if name.startswith("earmark.device"):
            assert not {i for i in imported if i.startswith("earmark.cloud")}, name


SQL = re.compile(r"""["'](SELECT |INSERT INTO |UPDATE \w+ SET |DELETE FROM |CREATE TABLE )""")


def test_sql_lives_only_in_the_store_layer() -> None:
    outside = [str(path.relative_to(ROOT)) for name, path in modules().items()
               if not name.startswith("earmark.cloud.store") and SQL.search(path.read_text())]
    assert outside == []


def test_the_wheel_installs_only_earmark(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for item in ("pyproject.toml", "README.md", "LICENSE", *PARTS):
        copy = shutil.copytree if (ROOT / item).is_dir() else shutil.copy
        copy(ROOT / item, source / item)
    # Warnings as errors: setuptools' deprecations (a license table, data folders left out of
    # `packages`) become build failures on a date they name, and the README's set-up with them.
    built = subprocess.run([sys.executable, "-W", "error", "-c",
                            f"from setuptools import build_meta; build_meta.build_wheel({str(tmp_path / 'dist')!r})"],
                           cwd=source, capture_output=True, text=True)
    if built.returncode != 0:
        pytest.fail(f"the wheel did not build without warnings: {built.stderr[-2000:]}")
    [wheel] = (tmp_path / "dist").glob("earmark-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    tops = {name.split("/")[0] for name in names}
    assert "earmark/device/listening/model_checksums.json" in names
    portal = ROOT / "cloud" / "portal"
    for folder in ("templates", "static"):
        for path in (portal / folder).iterdir():
            assert f"earmark/cloud/portal/{folder}/{path.name}" in names, f"{folder}/{path.name} is not in the wheel"
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert {t for t in tops if not t.endswith(".dist-info")} == {"earmark"}

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    probe = ("import sys, importlib.util\n"
             "sys.path = [p for p in sys.path if '__editable__' not in p]\n"  # not the checkout's own install
             "import earmark.wire, earmark.device, earmark.cloud\n"
             f"assert earmark.wire.__file__.startswith({str(target)!r}), earmark.wire.__file__\n"
             "assert importlib.util.find_spec('device') is None and importlib.util.find_spec('cloud') is None\n"
             "assert importlib.util.find_spec('earmark_wire') is None\n"
             "print('ok')\n")
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                            env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert result.stdout.strip() == "ok", result.stderr
    serve_the_portal_from(target, tmp_path)


def serve_the_portal_from(target: Path, tmp_path: Path) -> None:
    """`earmark-cloud init` and `portal` run from the installed wheel alone (not the checkout's
    editable install): the sign-in page and the stylesheet come from the wheel's package data."""
    import socket
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    strip = "import sys; sys.path = [p for p in sys.path if '__editable__' not in p]; "
    run = [sys.executable, "-c", strip + "from earmark.cloud.cli.main import main; sys.exit(main())"]
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    data = ["--data-dir", str(tmp_path / "cloud")]
    subprocess.run([*run, "init", *data], check=True, capture_output=True, env=env, cwd=tmp_path)
    portal = subprocess.Popen([*run, "portal", *data, "--port", str(port)], env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline, pages = time.monotonic() + 30, {}
        while time.monotonic() < deadline and len(pages) < 2:
            try:
                for path in ("/signin", "/static/portal.css"):
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
                        pages[path] = (response.status, response.read())
            except OSError:
                time.sleep(0.2)
        assert portal.poll() is None, portal.stderr.read().decode() if portal.stderr else ""
        assert pages["/signin"][0] == 200 and b"<html" in pages["/signin"][1].lower()
        assert pages["/static/portal.css"] == (200, (ROOT / "cloud/portal/static/portal.css").read_bytes())
        where = subprocess.run([*run[:2], strip + "import earmark.cloud.portal as p; print(p.__file__)"],
                               capture_output=True, text=True, env=env, cwd=tmp_path).stdout
        assert where.startswith(str(target)), where
    finally:
        portal.terminate()
        portal.wait(10)


def test_the_vendored_age_module_is_the_one_its_build_records() -> None:
    """cloud/portal/static/age-encryption.js is typage as deploy/typage/build.sh bundles it
    (`--check` rebuilds it byte for byte); a hand edit shows here, without the network."""
    static = ROOT / "cloud" / "portal" / "static"
    recorded = (static / "age-encryption.js.sha256").read_text().split()[0]
    assert hashlib.sha256((static / "age-encryption.js").read_bytes()).hexdigest() == recorded
    assert "age-encryption 0.3.1" in (static / "age-encryption.LICENSE").read_text()
