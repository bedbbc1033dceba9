# The package metadata lives in pyproject.toml; setup.py exists only because setuptools
# takes cffi_modules, the build-dependency check, the .pth hook and computed dependencies here.
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

ROOT = Path(__file__).resolve().parent
#: Read at interpreter start: imports trio_uring only when TRIO_URING is set (see trio_uring/_autoinstall.py).
PTH = "trio_uring.pth"


def tested_trio() -> tuple[tuple[int, int], tuple[int, int]]:
    """``TESTED_TRIO`` of trio_uring/_core/_compat.py, the one place the supported trio range is
    written: read from the source, since the build cannot import trio_uring (nor trio)."""
    tree = ast.parse((ROOT / "trio_uring" / "_core" / "_compat.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign | ast.Assign):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            if any(isinstance(t, ast.Name) and t.id == "TESTED_TRIO" for t in targets):
                assert node.value is not None
                (lo, hi) = ast.literal_eval(node.value)
                return (lo[0], lo[1]), (hi[0], hi[1])
    raise SystemExit("error: trio_uring/_core/_compat.py defines no TESTED_TRIO")


def dependencies() -> list[str]:
    """The install requirements: the oldest tested trio and up (``trio_uring.run`` refuses an older
    one and warns, then runs, on a newer one), cffi for the native module, attrs."""
    (major, minor), _newest = tested_trio()
    return [f"trio>={major}.{minor}", "cffi>=1.17", "attrs>=23.1"]


def _native_build() -> Any:
    spec = importlib.util.spec_from_file_location("_trio_uring_native_build", ROOT / "_native" / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildExt(build_ext):
    """Checks for a compiler and liburing's headers first: a missing one is named, with its package."""

    def build_extensions(self) -> None:
        _native_build().check_build_deps(self.compiler, self.include_dirs)
        super().build_extensions()


class BuildPy(build_py):
    """Puts ``trio_uring.pth`` at the top of the wheel, beside the package."""

    def run(self) -> None:
        super().run()
        self.copy_file(str(ROOT / PTH), str(Path(self.build_lib) / PTH))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib) / PTH)]


class EditableWheel(editable_wheel):
    """``pip install -e`` gets the .pth too (setuptools' editable wheel keeps only packages).

    Hooks a private step of setuptools; where it is gone the editable install just lacks the
    .pth (``TRIO_URING=1`` then does nothing there), regular wheels are unaffected.
    """

    def _run_build_commands(self, dist_name: str, unpacked_wheel: Any, *args: Any) -> Any:
        result = super()._run_build_commands(dist_name, unpacked_wheel, *args)  # type: ignore[misc]
        self.copy_file(str(ROOT / PTH), str(Path(unpacked_wheel) / PTH))
        return result


setup(
    install_requires=dependencies(),
    cffi_modules=["_native/build.py:ffibuilder"],
    cmdclass={"build_ext": BuildExt, "build_py": BuildPy, "editable_wheel": EditableWheel},
    # cffi builds the module against the limited API (trio_uring/_native.abi3.so): one wheel for 3.11+
    options={"bdist_wheel": {"py_limited_api": "cp311"}},
)
