"""The Python client's packaging: `python -m build` in clients/python makes an sdist and
a wheel (version from editfeed.__version__, typed, the generated stubs inside, the
`torch` extra), and building writes nothing into the source tree (no `build/`, no
`editfeed.egg-info`)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import REPO_ROOT


def tree(root: Path) -> set[str]:
    """Every path under root, relative to it."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_build_makes_a_typed_wheel_and_leaves_the_tree_clean(tmp_path: Path):
    # A copy in the repository's layout (clients/python beside ../../proto), so the
    # real tree is not touched whatever happens.
    src = tmp_path / "repo" / "clients" / "python"
    shutil.copytree(
        REPO_ROOT / "clients" / "python", src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    shutil.copytree(REPO_ROOT / "proto", tmp_path / "repo" / "proto")
    before = tree(src)
    out = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(src)], check=True, capture_output=True)
    assert tree(src) == before, f"the build wrote into the source tree: {sorted(tree(src) - before)}"

    version = re.search(r'^__version__ = "([^"]+)"', (src / "editfeed" / "__init__.py").read_text(), re.M).group(1)
    wheels = list(out.glob("*.whl"))
    assert [w.name for w in wheels] == [f"editfeed-{version}-py3-none-any.whl"]
    assert len(list(out.glob(f"editfeed-{version}.tar.gz"))) == 1
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = set(wheel.namelist())
        metadata = wheel.read(f"editfeed-{version}.dist-info/METADATA").decode()
    assert {"editfeed/py.typed", "editfeed/torch.py", "editfeed/v1/loader_pb2.py", "editfeed/v1/loader_pb2.pyi"} <= names
    assert f"Version: {version}" in metadata.splitlines()
    assert "Provides-Extra: torch" in metadata
    assert re.search(r'^Requires-Dist: torch>=[0-9.]+; extra == "torch"$', metadata, re.M)
