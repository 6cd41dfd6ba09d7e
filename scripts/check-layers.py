#!/usr/bin/env python3
"""Checks the layering of src/: no module imports a module of a later stage.

The stages, in the order data flows (a module may use its own stage and earlier ones):

    foundation  allocator, error_report, hex, metrics, rng, secret, units
    store       where bytes come from and go to (local folders, object stores)
    shard       .tar.zst shards: frames, members, indexes
    codec       image formats, headers and limits, decoders, encoders
    dataset     manifest, sample schema, importers, writer, reader, reshard
    plan        stream specs, curricula, which sample goes to which step and rank
    transport   the wire contract: protobuf types, batch tensors, shared memory, the client
    pipeline    decode + augment on the worker pool, collation, the stream producer
    config      the daemon's configuration
    server      the gRPC services, admin jobs, health
    cli         the binary's commands (src/cli, src/main.rs)

Every use of `crate::<module>` in a file under src/ (in `use` lines, `use crate::{...}`
groups and inline paths; comments excluded) is checked against the table. A top-level
module missing from the table is an error too, so a new module must be given its stage.
Files over --max-lines lines are reported as well (0 turns that off).

Usage: check-layers.py [SRC_DIR] [--max-lines N]   (default: src, 500)
       check-layers.py --self-test                  (shows that an upward import fails)
"""

import os
import re
import sys
import tempfile

STAGES = [
    ("foundation", ["allocator", "error_report", "hex", "metrics", "rng", "secret", "units", "lib"]),
    ("store", ["store"]),
    ("shard", ["shard"]),
    ("codec", ["codec"]),
    ("dataset", ["dataset"]),
    ("plan", ["plan"]),
    ("transport", ["transport"]),
    ("pipeline", ["pipeline"]),
    ("config", ["config"]),
    ("server", ["server"]),
    ("cli", ["cli", "main"]),
]
RANK = {module: rank for rank, (_, modules) in enumerate(STAGES) for module in modules}
STAGE = {module: stage for stage, modules in STAGES for module in modules}

PATH = re.compile(r"\bcrate::(\{[^}]*\}|\w+)")
LINE_COMMENT = re.compile(r"//.*$")


def top_module(rel):
    first = rel.split(os.sep)[0]
    return first[:-3] if first.endswith(".rs") else first


def imported(line):
    """The top-level modules a line of code names through `crate::`."""
    code = LINE_COMMENT.sub("", line)
    names = []
    for m in PATH.finditer(code):
        target = m.group(1)
        if target.startswith("{"):
            names += [p.strip().split("::")[0] for p in target[1:-1].split(",") if p.strip()]
        else:
            names.append(target)
    return [n for n in names if n not in ("self", "super")]


def check(src, max_lines):
    problems = []
    for dirpath, _, files in os.walk(src):
        for name in sorted(files):
            if not name.endswith(".rs"):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, src)
            module = top_module(rel)
            if module not in RANK:
                problems.append(f"{rel}: module `{module}` has no stage in scripts/check-layers.py")
                continue
            with open(path, encoding="utf-8") as f:
                lines = f.readlines()
            if max_lines and len(lines) > max_lines:
                problems.append(f"{rel}: {len(lines)} lines, over {max_lines}")
            for number, line in enumerate(lines, 1):
                for target in imported(line):
                    if target not in RANK:
                        problems.append(
                            f"{rel}:{number}: `crate::{target}` has no stage in scripts/check-layers.py"
                        )
                    elif RANK[target] > RANK[module] and STAGE[target] != STAGE[module]:
                        problems.append(
                            f"{rel}:{number}: {STAGE[module]} (`{module}`) imports the later stage "
                            f"{STAGE[target]} (`crate::{target}`): {line.strip()}"
                        )
    return problems


def self_test():
    """An upward import, a group import and an unknown module are each caught; a clean
    tree passes."""
    with tempfile.TemporaryDirectory() as root:
        def write(rel, text):
            path = os.path.join(root, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)

        write("store/mod.rs", "use crate::units::parse_bytes;\n// crate::server in a comment\n")
        write("dataset/mod.rs", "use crate::{codec::ImageFormat, shard::RawSample};\n")
        assert check(root, 500) == [], check(root, 500)
        write("dataset/reader.rs", "fn f() -> crate::plan::PlanDataset { todo!() }\n")
        write("shard/mod.rs", "use crate::{hex::hex, pipeline::pool};\n")
        write("widgets.rs", "\n")
        found = check(root, 500)
        assert any("dataset/reader.rs:1: dataset" in p and "crate::plan" in p for p in found), found
        assert any("shard/mod.rs:1: shard" in p and "crate::pipeline" in p for p in found), found
        assert any("module `widgets` has no stage" in p for p in found), found
        assert len(found) == 3, found
    print("check-layers self-test: upward imports and unknown modules are caught")


def main(argv):
    if "--self-test" in argv:
        self_test()
        return 0
    max_lines = 500
    if "--max-lines" in argv:
        i = argv.index("--max-lines")
        max_lines = int(argv[i + 1])
        del argv[i : i + 2]
    src = argv[0] if argv else "src"
    problems = check(src, max_lines)
    for p in problems:
        print(p)
    if problems:
        print(f"check-layers: {len(problems)} problem(s) in {src}", file=sys.stderr)
        return 1
    print(f"check-layers: {src} keeps to the stages")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
