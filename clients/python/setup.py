"""Build script of the editfeed Python client.

The protobuf and gRPC stubs are not stored in the source tree: they are generated from
the wire contract (``proto/editfeed/v1/*.proto`` at the repository root) with
``grpc_tools.protoc`` every time the package is built, by the ``build_py`` command
below.

The proto package ``editfeed.v1`` is generated into the Python package ``editfeed.v1``
(``editfeed/v1/dataset_pb2.py``, ``loader_pb2.py``, ``*_pb2_grpc.py`` and ``.pyi``
type stubs). protoc writes imports relative to the proto root, such as
``from editfeed.v1 import dataset_pb2``; because the proto root maps onto the
directory that holds the ``editfeed`` package, those imports resolve to this package
as they are, with no import rewriting and no ``sys.path`` changes.

Builds leave the source tree as they found it: the build tree (``build/``) and the
setuptools metadata (``editfeed.egg-info``) go to a temporary folder that is removed
when the build ends, so ``pip install ./clients/python`` writes nothing beside this
file.

The proto files are looked up, in order, in ``$EDITFEED_PROTO_DIR``, in ``proto/``
beside this file (where an sdist keeps its copy) and in ``../../proto`` (the
repository layout). The runtime requirements on ``grpcio`` and ``protobuf`` are taken
from the generated code, which refuses runtimes older than the generator.
"""

from __future__ import annotations

import atexit
import functools
import os
import re
import shutil
import tempfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
PROTO_FILES = ("editfeed/v1/dataset.proto", "editfeed/v1/loader.proto", "editfeed/v1/admin.proto")
GENERATED_PACKAGE = Path("editfeed") / "v1"
GENERATED_INIT = '''"""Protobuf messages and gRPC stubs of the editfeed.v1 wire contract.

Generated from proto/editfeed/v1/*.proto with grpc_tools.protoc when the package was
built; do not edit.
"""
'''


def proto_root() -> Path:
    """The directory holding ``editfeed/v1/*.proto``; raises if none is found."""
    candidates = []
    if os.environ.get("EDITFEED_PROTO_DIR"):
        candidates.append(Path(os.environ["EDITFEED_PROTO_DIR"]))
    candidates += [HERE / "proto", HERE.parent.parent / "proto"]
    for root in candidates:
        if all((root / name).is_file() for name in PROTO_FILES):
            return root
    tried = ", ".join(str(c) for c in candidates)
    raise RuntimeError(
        f"cannot find the editfeed wire contract ({', '.join(PROTO_FILES)}) under any of: "
        f"{tried}; build from the repository checkout or set EDITFEED_PROTO_DIR"
    )


def generate(out_dir: Path) -> list[Path]:
    """Runs protoc on the contract, writing ``editfeed/v1/*`` under ``out_dir``.

    Returns the files written.
    """
    try:
        import grpc_tools
        from grpc_tools import protoc
    except ImportError as e:  # pragma: no cover - only without the build requirements
        raise RuntimeError(
            "building editfeed needs grpcio-tools (declared in pyproject.toml "
            "[build-system] requires); install it or build with pip"
        ) from e
    root = proto_root()
    well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"
    out_dir.mkdir(parents=True, exist_ok=True)
    # Start clean, so no stub of a proto file that is gone survives in a reused build tree.
    shutil.rmtree(out_dir / GENERATED_PACKAGE, ignore_errors=True)
    args = [
        "grpc_tools.protoc",
        f"--proto_path={root}",
        f"--proto_path={well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(root / name) for name in PROTO_FILES),
    ]
    status = protoc.main(args)
    if status != 0:
        raise RuntimeError(f"grpc_tools.protoc failed with status {status}: {' '.join(args)}")
    package = out_dir / GENERATED_PACKAGE
    init = package / "__init__.py"
    init.write_text(GENERATED_INIT)
    # protoc also creates out_dir/editfeed without an __init__.py; the build keeps the
    # package's own one, which build_py copies there.
    return sorted(p for p in package.iterdir() if p.is_file())


@functools.cache
def runtime_requirements() -> tuple[str, ...]:
    """``grpcio`` and ``protobuf`` requirements matching the generator's versions."""
    requirements = ["numpy>=1.24"]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp))
            pb2 = (Path(tmp) / GENERATED_PACKAGE / "loader_pb2.py").read_text()
            grpc = (Path(tmp) / GENERATED_PACKAGE / "loader_pb2_grpc.py").read_text()
    except RuntimeError:
        # Metadata without the build requirements (e.g. a bare `python setup.py
        # --version`); a real build runs generate() again and fails there, clearly.
        return tuple(requirements + ["grpcio>=1.60", "protobuf>=4.25"])
    pb_version = re.search(r"^# Protobuf Python Version: (\d+)\.(\d+)\.(\d+)", pb2, re.M)
    grpc_version = re.search(r"^GRPC_GENERATED_VERSION = '([0-9.]+)'", grpc, re.M)
    if pb_version:
        major, minor, patch = (int(x) for x in pb_version.groups())
        requirements.append(f"protobuf>={major}.{minor}.{patch},<{major + 1}")
    else:
        requirements.append("protobuf>=4.25")
    requirements.append(f"grpcio>={grpc_version.group(1)}" if grpc_version else "grpcio>=1.60")
    return tuple(requirements)


class BuildPyWithStubs(build_py):
    """``build_py`` that also generates the ``editfeed.v1`` stubs into the build tree."""

    def run(self) -> None:
        """Copies the package, then generates the stubs beside it."""
        super().run()
        if not self.dry_run:
            self._generated = generate(Path(self.build_lib))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        """The package's files plus the generated stubs."""
        outputs = list(super().get_outputs(include_bytecode))
        outputs += [str(p) for p in getattr(self, "_generated", [])]
        return outputs


class SdistWithProtos(sdist):
    """``sdist`` that ships a copy of the contract in ``proto/`` so the sdist builds."""

    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        """Adds ``proto/editfeed/v1/*.proto`` to the release tree."""
        super().make_release_tree(base_dir, files)
        root = proto_root()
        for name in PROTO_FILES:
            target = Path(base_dir) / "proto" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / name, target)


def out_of_tree() -> dict[str, dict[str, str]]:
    """setuptools options that put ``build/`` and ``editfeed.egg-info`` in a temporary
    folder (removed at exit) instead of the source tree. An explicit
    ``--build-base`` / ``--egg-base`` on the command line still wins."""
    scratch = tempfile.mkdtemp(prefix="editfeed-build-")
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    return {"build": {"build_base": os.path.join(scratch, "build")}, "egg_info": {"egg_base": scratch}}


setup(
    options=out_of_tree(),
    install_requires=list(runtime_requirements()),
    cmdclass={"build_py": BuildPyWithStubs, "sdist": SdistWithProtos},
)
