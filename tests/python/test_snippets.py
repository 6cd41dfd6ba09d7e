"""Every ```python snippet of README.md, clients/python/README.md and
docs/deployment.md runs as written against a live daemon.

The test starts ``editfeed serve`` on a free port serving the synthetic demo dataset
(``editfeed synth``, at a quarter of its image sizes, with the README's train/val/test
split rule) as ``demo``. The blocks of one file run in order in one shared
namespace, with ``127.0.0.1:50051`` replaced by the live Loader endpoint and
``127.0.0.1:50052`` by the live Admin endpoint. A block directly preceded by a line
``<!-- not run: REASON -->`` is skipped (for what cannot run here, e.g. several hosts).
Snippets must end within seconds: finite curricula or ``max_batches``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO_ROOT, SPLIT_RULE, Daemon, run_editfeed

FILES = ("README.md", "clients/python/README.md", "docs/deployment.md")
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
_NOT_RUN = re.compile(r"<!-- not run: .+ -->\s*$")


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, code) of every ```python block not marked ``not run``."""
    blocks = []
    for m in _BLOCK.finditer(text):
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        if _NOT_RUN.match(before.strip()):
            continue
        blocks.append((text.count("\n", 0, m.start()) + 2, m.group(1)))
    return blocks


@pytest.fixture(scope="module")
def demo_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A daemon serving the synthetic demo dataset as ``demo``."""
    data = tmp_path_factory.mktemp("snippets") / "demo-data"
    # The demo dataset at a quarter of its image sizes, which a debug build makes fast.
    run_editfeed("synth", "--out", str(data), "--samples", "60", "--scale", "0.25", "--split-rule", SPLIT_RULE)
    d = Daemon(data, "demo")
    yield d
    d.stop()


def test_the_block_finder_skips_marked_blocks() -> None:
    text = "a\n```python\nx = 1\n```\n<!-- not run: needs two hosts -->\n```python\ny = 2\n```\n```sh\nz\n```\n"
    assert python_blocks(text) == [(3, "x = 1\n")]


@pytest.mark.parametrize("name", FILES)
def test_every_python_snippet_runs(name: str, demo_daemon: Daemon, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # snippets may write files (checkpoints)
    loader = demo_daemon.address
    admin = demo_daemon.admin_endpoint.removeprefix("http://")
    namespace: dict[str, object] = {"__name__": "__snippet__"}
    for line, code in python_blocks((REPO_ROOT / name).read_text()):
        code = code.replace("127.0.0.1:50051", loader).replace("127.0.0.1:50052", admin)
        try:
            exec(compile(code, f"{name}:{line}", "exec"), namespace)  # noqa: S102 - the docs' own code
        except Exception as e:
            raise AssertionError(f"the snippet at {name} line {line} failed: {type(e).__name__}: {e}") from e
