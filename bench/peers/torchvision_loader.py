"""The torchvision peer: PyTorch's default pipeline, a DataLoader with one worker process
per core over the same shards.

Each worker reads its share of the zstd shards with webdataset (the reference's
reading), decodes every image with ``torchvision.io.decode_image`` (libjpeg-turbo and
libpng inside torchvision), crops and resizes it with ``transforms.v2.functional``
(``resized_crop``, bicubic with antialiasing, then ``horizontal_flip``), the same crop
box in relative coordinates and the same flip for every image of a sample (the box of
``python_reference.crop_box``: v2's own ``RandomResizedCrop`` cannot share one box
between images of different sizes), and the DataLoader's collate_fn stacks the samples
into the daemon's uint8 tensors (zero-padded turns for multi-turn). Batches reach the
consumer through the DataLoader's queues (prefetch factor 2), as numpy views of the
tensors.

    python bench/peers/torchvision_loader.py --data DATASET --subset sft --size 256 --batches 20
"""

from __future__ import annotations

import random

import common
import torch
from common import ref
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F


class Samples(IterableDataset):
    """Augmented samples, each a list of [H, W, 3] uint8 tensors, from the worker's share
    of the shards, forever."""

    def __init__(self, shards: list, subset: str, size: int, seed: int) -> None:
        self.urls, self.subset, self.size, self.seed = ref.shard_urls(shards), subset, size, seed

    def __iter__(self):
        info = get_worker_info()
        w, n = (info.id, info.num_workers) if info else (0, 1)
        rng = random.Random(self.seed + w)
        for sample in ref.sample_stream(ref.worker_shares(self.urls, n)[w]):
            encoded = ref.images_of(sample, self.subset, rng)
            decoded = [decode_image(torch.frombuffer(bytearray(b), dtype=torch.uint8), mode=ImageReadMode.RGB) for b in encoded]
            _, h0, w0 = decoded[0].shape
            x0, y0, x1, y1 = ref.crop_box(rng, w0, h0, self.size, self.size)
            flip = rng.random() < ref.HFLIP
            out = []
            for img in decoded:
                _, h, w_ = img.shape
                top, left = round(y0 * h), round(x0 * w_)
                small = F.resized_crop(
                    img, top, left, max(1, round((y1 - y0) * h)), max(1, round((x1 - x0) * w_)),
                    [self.size, self.size], interpolation=InterpolationMode.BICUBIC, antialias=True,
                )
                if flip:
                    small = F.horizontal_flip(small)
                out.append(small.permute(1, 2, 0))
            yield out


def collate_fn(subset: str, slots: int):
    """The DataLoader's collate_fn: samples into the daemon's tensors."""

    def collate(samples: list[list[torch.Tensor]]) -> dict[str, torch.Tensor]:
        if subset != "multi_turn":
            return {name: torch.stack([s[j] for s in samples]) for j, name in enumerate(common.NAMES[subset])}
        h, w, _ = samples[0][0].shape
        images = torch.zeros((len(samples), slots, h, w, 3), dtype=torch.uint8)
        for i, s in enumerate(samples):
            images[i, : len(s)] = torch.stack(s)
        return {"images": images, "turn_counts": torch.tensor([len(s) - 1 for s in samples], dtype=torch.int32)}

    return collate


def main() -> None:
    args = common.parser(__doc__).parse_args()
    if common.prepared(args, lambda: None):
        return
    shards, slots = ref.subset_shards(args.data, args.subset)
    loader = DataLoader(
        Samples(shards, args.subset, args.size, args.seed),
        batch_size=args.batch,
        num_workers=args.workers,
        collate_fn=collate_fn(args.subset, slots),
        prefetch_factor=2,
        persistent_workers=False,
    )
    batches = ({k: v.numpy() for k, v in b.items()} for b in loader)
    common.run(args, batches, slots, "torchvision")


if __name__ == "__main__":
    main()
