"""The SPDL peer: Meta's thread-based pipeline (``spdl.pipeline``) with its FFmpeg
image decoding (``spdl.io``), in one process.

The source stage reads the zstd shards with webdataset (the reference's reading); a
``pipe`` stage with one task per core decodes each sample's images with
``spdl.io.demux_image`` and ``spdl.io.decode_packets``, whose FFmpeg filter graph
crops, scales (bicubic) and flips (``crop=...,scale=S:S:flags=bicubic,hflip,
format=rgb24``), the GIL released; the crop box is ``python_reference.crop_box`` of the
source's size (read from its header by the demuxer), one box in relative coordinates
and one flip for all images of a sample. ``aggregate`` groups the samples and a last
``pipe`` collates them into the daemon's uint8 arrays. SPDL needs FFmpeg's shared
libraries (Debian's libavutil57, libavcodec59, libavformat59, libavfilter8, libswscale6
and libavdevice59; ``bench/run`` installs them).

    python bench/peers/spdl_pipeline.py --data DATASET --subset sft --size 256 --batches 20
"""

from __future__ import annotations

import random

import common
import spdl.io
from common import ref
from spdl.pipeline import PipelineBuilder


def decoder(subset: str, size: int, seed: int):
    rng = random.Random(seed)

    def decode(sample: dict) -> list:
        packets = [spdl.io.demux_image(b) for b in ref.images_of(sample, subset, rng)]
        x0, y0, x1, y1 = ref.crop_box(rng, packets[0].width, packets[0].height, size, size)
        flip = ",hflip" if rng.random() < ref.HFLIP else ""
        out = []
        for p in packets:
            w, h = p.width, p.height
            left, top = round(x0 * w), round(y0 * h)
            cw, ch = max(1, min(round((x1 - x0) * w), w - left)), max(1, min(round((y1 - y0) * h), h - top))
            frames = spdl.io.decode_packets(p, filter_desc=f"crop={cw}:{ch}:{left}:{top},scale={size}:{size}:flags=bicubic{flip},format=rgb24")
            out.append(spdl.io.to_numpy(spdl.io.convert_frames(frames)))
        return out

    return decode


def main() -> None:
    args = common.parser(__doc__).parse_args()
    if common.prepared(args, lambda: None):
        return
    shards, slots = ref.subset_shards(args.data, args.subset)
    pipeline = (
        PipelineBuilder()
        .add_source(ref.sample_stream(ref.shard_urls(shards)))
        .pipe(decoder(args.subset, args.size, args.seed), concurrency=args.workers)
        .aggregate(args.batch, drop_last=True)
        .pipe(lambda samples: common.collate(args.subset, samples, slots))
        .add_sink(2)
        .build(num_threads=args.workers)
    )
    with pipeline.auto_stop():
        common.run(args, pipeline.get_iterator(), slots, "spdl")


if __name__ == "__main__":
    main()
