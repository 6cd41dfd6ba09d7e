"""Python's webdataset reads editfeed shards through `pipe:zstd -dc` and sees the same
keys and member bytes that editfeed's own indexed reader returns."""

import hashlib
import os
import subprocess
from pathlib import Path

import webdataset as wds

EDITFEED = os.environ.get("EDITFEED_BIN", "target/debug/editfeed")


def editfeed(*args):
    return subprocess.run([EDITFEED, *args], check=True, capture_output=True, text=True).stdout


def test_webdataset_reads_the_same_keys_and_bytes(tmp_path: Path):
    out = tmp_path / "ds"
    editfeed("synth", "--out", str(out), "--samples", "20", "--scale", "0.1", "--shard-samples", "4")
    expected = {}
    for line in editfeed("inspect", str(out), "--members").splitlines():
        subset, shard, key, field, size, sha = line.split()
        expected.setdefault(shard, []).append((key, field, int(size), sha))
    assert len(expected) >= 5, "the dataset should span several shards"

    for shard, members in expected.items():
        url = f"pipe:zstd -dc {out / shard}"
        got = []
        for sample in wds.WebDataset(url, shardshuffle=False, empty_check=False):
            for field, data in sample.items():
                if field.startswith("__"):
                    continue
                got.append((sample["__key__"], field, len(data), hashlib.sha256(data).hexdigest()))
        assert sorted(got) == sorted(members), shard
        # Samples come out in the stored order.
        keys = []
        for key, *_ in got:
            if not keys or keys[-1] != key:
                keys.append(key)
        stored = []
        for key, *_ in members:
            if not stored or stored[-1] != key:
                stored.append(key)
        assert keys == stored


def test_a_ppm_pack_decodes_in_webdataset_to_the_pixels_of_the_published_edits(tmp_path: Path):
    out = tmp_path / "ds"
    editfeed("synth", "--out", str(out), "--samples", "12", "--scale", "0.1", "--shard-samples", "4")
    members = [line.split() for line in editfeed("inspect", str(out), "--members").splitlines()]
    shards = sorted({shard for subset, shard, *_ in members if subset == "sft"})
    assert shards, "the synthetic set has single-turn shards"
    packed = tmp_path / "ppm"
    editfeed("pack", "webdataset", *[str(out / s) for s in shards], "--subset", "sft", "--out", str(packed),
             "--transcode-edits", "ppm", "--level", "-100")

    def samples(folder: Path) -> dict:
        names = sorted(p.name for p in folder.glob("*.tar.zst"))
        urls = [f"pipe:zstd -dc {folder / n}" for n in names]
        return {s["__key__"]: s for s in wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode("rgb8")}

    published, ppm = samples(out), samples(packed)
    assert set(ppm) <= set(published) and len(ppm) >= 4
    for key, sample in ppm.items():
        assert "edit.ppm" in sample and "edit.png" not in sample
        want = published[key]["edit.png"]
        assert sample["edit.ppm"].dtype == want.dtype and sample["edit.ppm"].shape == want.shape
        assert (sample["edit.ppm"] == want).all(), key
        assert (sample["src.jpg"] == published[key]["src.jpg"]).all(), key
