"""Build ``trio_uring._native`` with AddressSanitizer (and UBSan) into ``build/asan/``.

The normal in-place build (``trio_uring/_native*.so``) is left alone: the sanitized module
is loaded instead of it only by interpreters that have ``build/asan/site`` on PYTHONPATH,
whose ``sitecustomize`` redirects that one import (see ``scripts/asan_sitecustomize.py``).
That keeps the rest of the package — and pytest's own path handling, which puts the repo
root first on ``sys.path`` — untouched.

The flags go in through ``CFLAGS``/``LDFLAGS``, which the setuptools compiler that cffi
drives appends to its command lines, so ``_native/build.py`` needs no hook.

Usage: python scripts/asan_build.py [--out build/asan]
"""

from __future__ import annotations

import argparse
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: -O1 keeps stack traces readable and the build quick; UBSan errors abort like ASan's.
SAN_FLAGS = "-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g -O1"


def _ubsan_works(cc: str, out: Path) -> bool:
    """gcc without libubsan would fail at link time; then ASan alone is still worth having."""
    probe = out / "ubsan-probe.c"
    probe.write_text("int f(int x) { return x + 1; }\n")
    ret = subprocess.run(
        [
            cc,
            "-shared",
            "-fPIC",
            "-fsanitize=address,undefined",
            str(probe),
            "-o",
            str(out / "ubsan-probe.so"),
        ],
        capture_output=True,
        check=False,
    )
    return ret.returncode == 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "build" / "asan"))
    args = ap.parse_args()
    out = Path(args.out).resolve()
    tmp = out / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    cc = os.environ.get("CC", "cc")
    flags = SAN_FLAGS
    if not _ubsan_works(cc, tmp):
        print("asan_build: -fsanitize=undefined does not link here; building with ASan only")
        flags = flags.replace("address,undefined", "address")
    os.environ["CFLAGS"] = (os.environ.get("CFLAGS", "") + " " + flags).strip()
    os.environ["LDFLAGS"] = (os.environ.get("LDFLAGS", "") + " " + flags).strip()

    # build.py names its sources and include dir relative to the repo root, and cffi
    # compiles from inside tmpdir: a link there makes those relative paths resolve.
    link = tmp / "_native"
    if not link.is_symlink():
        shutil.rmtree(link, ignore_errors=True)
        link.symlink_to(ROOT / "_native")
    os.chdir(ROOT)
    ffibuilder = runpy.run_path(str(ROOT / "_native" / "build.py"))["ffibuilder"]
    built = Path(ffibuilder.compile(tmpdir=str(tmp), verbose=False))

    site = out / "site"
    site.mkdir(exist_ok=True)
    target = site / ("_native_asan" + "".join(built.suffixes))
    shutil.copy2(built, target)
    shutil.copy2(ROOT / "scripts" / "asan_sitecustomize.py", site / "sitecustomize.py")
    (site / "native_path.txt").write_text(str(target) + "\n")
    deps = subprocess.run(["ldd", str(target)], capture_output=True, text=True, check=False).stdout
    if "libasan" not in deps:
        print(f"asan_build: {target} is not linked against libasan:\n{deps}", file=sys.stderr)
        return 1
    print(f"asan_build: {target} ({flags})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
