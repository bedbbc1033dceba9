"""What a user installing from the sdist meets: the build-dependency check, the version, the .pth.

The full build-install-run cycle is ``make dist-check`` (scripts/dist-check), part of ``make test``.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

import trio_uring
from trio_uring._core._compat import TESTED_TRIO

from .._util import load_module

ROOT = Path(__file__).resolve().parents[2]


def _native_build() -> Any:
    return load_module("native_build_under_test", ROOT / "_native" / "build.py")


def _compiler() -> Any:
    from setuptools._distutils.ccompiler import new_compiler  # type: ignore[import-untyped]  # noqa: PLC0415
    from setuptools._distutils.sysconfig import customize_compiler  # type: ignore[import-untyped]  # noqa: PLC0415

    compiler = new_compiler()
    customize_compiler(compiler)
    return compiler


def test_missing_liburing_stops_the_build_with_one_line_naming_the_packages(
    capfd: pytest.CaptureFixture[str],
) -> None:
    build = _native_build()
    with pytest.raises(SystemExit) as info:
        build.check_build_deps(_compiler(), header="liburing_absent_for_this_test.h")
    msg = str(info.value.code)
    assert "\n" not in msg
    assert "liburing-dev (Debian/Ubuntu)" in msg
    assert "liburing-devel (Fedora)" in msg
    assert "No such file" not in capfd.readouterr().err  # gcc's own error is not shown


def test_build_check_passes_where_liburing_is_installed() -> None:
    _native_build().check_build_deps(_compiler())


def test_version_is_typed_once_and_reported_by_the_cli() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project
    assert "version" in project["dynamic"]
    assert importlib.metadata.version("trio-uring") == trio_uring.__version__
    out = subprocess.run(
        [sys.executable, "-m", "trio_uring", "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert out.strip() == f"trio-uring {trio_uring.__version__}"
    # the changelog has a section for it: released (with its date), or announced in Unreleased
    version = trio_uring.__version__
    changelog = (ROOT / "CHANGELOG.md").read_text()
    unreleased = changelog.split("## [Unreleased]", 1)[1].split("\n## [", 1)[0]
    released = re.search(rf"^## \[{re.escape(version)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", changelog, re.M)
    assert released or f"**{version}**" in unreleased


def test_trio_range_is_typed_once() -> None:
    """``TESTED_TRIO`` is the source; the install requirement, the Makefile's oldest-trio lane
    and the README's requirements agree with it, and no other file spells a trio pin."""
    (lo_major, lo_minor), (hi_major, hi_minor) = TESTED_TRIO
    oldest, newest = f"{lo_major}.{lo_minor}", f"{hi_major}.{hi_minor}"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "dependencies" not in project and "dependencies" in project["dynamic"]  # setup.py's
    requires = importlib.metadata.requires("trio-uring") or []
    assert [r for r in requires if re.match(r"trio\b", r)] == [f"trio>={oldest}"]
    for name in ("pyproject.toml", "setup.py", "Makefile"):
        assert not re.search(r"(?<![\w-])trio\s*[<>=]=?\s*\d", (ROOT / name).read_text()), name
    readme = re.sub(r"\s+", " ", (ROOT / "README.md").read_text())
    assert f"trio ≥ {oldest}, tested with {oldest}\N{EN DASH}{newest}" in readme
    assert f"on trio {oldest}, the oldest supported" in readme
    make = shutil.which("make")
    if make is None:
        pytest.skip("no make to ask for OLDEST_TRIO")
    out = subprocess.run(
        [make, "-s", "--no-print-directory", "--eval=_oldest_trio: ; @echo $(OLDEST_TRIO)", "_oldest_trio"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert out.strip() == f"{oldest}.0"


def test_license_file_is_mit_and_shipped() -> None:
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    manifest = (ROOT / "MANIFEST.in").read_text()
    for needed in ("LICENSE", "_native/build.py", "_native/*.c", "_native/*.h", "trio_uring.pth"):
        assert needed in manifest


def test_the_pth_hook_is_installed_and_inert_without_the_variable() -> None:
    site_files = [Path(p) / "trio_uring.pth" for p in sys.path if p.endswith("site-packages")]
    assert any(f.exists() for f in site_files), "trio_uring.pth is not installed beside the package"
    env = {k: v for k, v in os.environ.items() if k != "TRIO_URING"}
    out = subprocess.run(
        [sys.executable, "-c", "import sys; print('trio_uring' in sys.modules)"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    ).stdout
    assert out.strip() == "False"  # nothing imported at interpreter start unless asked


@pytest.mark.parametrize("value", ["0", "off", ""])
def test_the_pth_hook_stays_out_when_switched_off(value: str) -> None:
    env = {**os.environ, "TRIO_URING": value}
    out = subprocess.run(
        [sys.executable, "-c", "import sys; print('trio_uring' in sys.modules)"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == "False" and not out.stderr


def test_the_env_switch_installs_io_uring_for_plain_trio_runs() -> None:
    code = (
        "import trio, trio_uring\n"
        "async def main():\n"
        "    s = trio.socket.socket(); s.close()\n"
        "    print(trio_uring.backend(), type(s).__name__)\n"
        "trio.run(main)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, "TRIO_URING": "1"},
    )
    assert out.stdout.split() == ["io_uring", "UringSocket"]
    bad = subprocess.run(
        [sys.executable, "-c", "pass"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, "TRIO_URING": "maybe"},
    )
    assert "ignoring TRIO_URING='maybe'" in bad.stderr
