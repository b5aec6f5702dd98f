"""Torch data pipeline over a `DetectionDataset`.

`DetectionImages` yields `(image, target)` pairs: the image as float CHW in [0, 1], the target as torchvision
expects it plus what methods need to map boxes back to annotations:
`boxes` (xyxy float32, from `bbox`), `labels` (int64 1..K, `contiguous_labels()`), `ann_ids` (int64),
`image_id` (int64), `orig_size` (h, w) and `flip` (hflip, vflip). Ignore/crowd boxes are not targets.

`TrainOrder` is the training sample stream: an endless sequence of seeded permutations with seeded flips, cut into
iterations of `batch_size` images (the total over DDP ranks; rank r takes every world-th image of a batch). The
images and flips of iteration `it` depend only on (data_seed, it), so a resumed run sees exactly the data an
uninterrupted run would, and data order is independent of the initialisation seed.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from PIL import UnidentifiedImageError

from benchmark.datasets.core import DetectionDataset
from benchmark.datasets.images import open_rgb
from benchmark.errors import BenchError
from methods._core.geometry import flip_boxes


def load_image(ds: DetectionDataset, image: dict) -> torch.Tensor:
    """RGB uint8 CHW tensor of one image; a missing/corrupt file or a size that contradicts the annotation is an error."""
    path = ds.image_path(image)
    annotated = (image["width"], image["height"]) if image.get("width") and image.get("height") else None
    try:
        arr = np.asarray(open_rgb(path, annotated))
    except FileNotFoundError:
        raise BenchError("image file not found", path) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise BenchError(f"not a readable image ({exc.__class__.__name__}: {exc})", path) from None
    h, w = arr.shape[:2]
    if image.get("width") and image.get("height") and (int(image["width"]), int(image["height"])) != (w, h):
        raise BenchError(f"image is {w}x{h} but annotated as {image['width']}x{image['height']}", path)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


class DetectionImages(torch.utils.data.Dataset):
    """(image, target) pairs of a DetectionDataset; item = index or (index, hflip, vflip)."""

    def __init__(self, ds: DetectionDataset, labels: dict[int, int] | None = None, cache_images: bool = False,
                 clip_gt: bool = True):
        self.ds = ds
        self.clip_gt = clip_gt  # mmdet does not clip training boxes to the image (`train.clip_gt=false`)
        self.labels = ds.contiguous_labels() if labels is None else labels
        self.cache_images = cache_images
        self._cache: dict[int, torch.Tensor] = {}
        self.skipped = {"ignored": 0, "degenerate": 0}
        by_image = ds.annotations_by_image()
        self._targets = [self._build_target(img, by_image.get(img["id"], [])) for img in ds.images]

    def _build_target(self, img: dict, anns: list[dict]) -> dict:
        boxes, labels, ids = [], [], []
        w, h = img.get("width"), img.get("height")
        for a in anns:
            if a.get("ignore") or a.get("iscrowd"):
                self.skipped["ignored"] += 1
                continue
            if a["category_id"] not in self.labels:
                raise BenchError(f"annotation {a.get('id')} has category_id {a['category_id']} unknown to the model "
                                 f"(known: {sorted(self.labels)})", self.ds.source or None)
            x, y, bw, bh = (float(v) for v in a["bbox"])
            x1, y1, x2, y2 = x, y, x + bw, y + bh
            if w and h and self.clip_gt:
                x1, x2 = min(max(x1, 0.0), float(w)), min(max(x2, 0.0), float(w))
                y1, y2 = min(max(y1, 0.0), float(h)), min(max(y2, 0.0), float(h))
            if x2 - x1 < 1e-3 or y2 - y1 < 1e-3:  # torchvision rejects empty boxes; count, don't crash
                self.skipped["degenerate"] += 1
                continue
            boxes.append([x1, y1, x2, y2])
            labels.append(self.labels[a["category_id"]])
            ids.append(int(a["id"]))
        return {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "ann_ids": torch.tensor(ids, dtype=torch.int64),
            "image_id": torch.tensor(int(img["id"]), dtype=torch.int64),
        }

    def __len__(self) -> int:
        return len(self.ds.images)

    def with_boxes(self) -> list[int]:
        """Indices of the images with at least one training box (mmdet's `filter_empty_gt` keeps only these)."""
        return [i for i, t in enumerate(self._targets) if len(t["boxes"])]

    def image(self, index: int) -> torch.Tensor:
        if index in self._cache:
            return self._cache[index]
        im = load_image(self.ds, self.ds.images[index])
        if self.cache_images:
            self._cache[index] = im
        return im

    def __getitem__(self, item):
        index, hflip, vflip = (item, False, False) if isinstance(item, (int, np.integer)) else item
        index = int(index)
        im = self.image(index)
        h, w = im.shape[-2:]
        src = self._targets[index]
        target = {k: v.clone() for k, v in src.items()}
        target["orig_size"] = torch.tensor([h, w], dtype=torch.int64)
        target["flip"] = torch.tensor([bool(hflip), bool(vflip)])
        if hflip or vflip:
            dims = ([-1] if hflip else []) + ([-2] if vflip else [])
            im = im.flip(dims)
            target["boxes"] = flip_boxes(target["boxes"], (h, w), bool(hflip), bool(vflip))
        return im.float().div_(255.0), target


def aspect_groups(ds: DetectionDataset) -> list[int]:
    """mmdet's aspect-ratio flag per image: 1 where width / height > 1 (landscape), else 0."""
    return [int(float(im.get("width") or 0) > float(im.get("height") or 0)) for im in ds.images]


def collate(batch):
    return [b[0] for b in batch], [b[1] for b in batch]


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0] >> 1)


class TrainOrder:
    """The seeded training stream: iteration -> this rank's list of (index, hflip, vflip).

    `indices`: the images to draw from (default all; `train.filter_empty_gt` passes those with boxes). `groups`:
    a group id per image (e.g. `aspect_groups`) for mmdet's `GroupSampler`: each pass shuffles every group, pads it
    to a multiple of the batch with images drawn from the same group, cuts it into batches and shuffles the
    batches, so every batch is one group. A pass then has `pass_length` (>= the number of images) positions."""

    def __init__(self, num_images: int, batch_size: int, data_seed: int, hflip: float = 0.0, vflip: float = 0.0,
                 rank: int = 0, world_size: int = 1, indices: list[int] | None = None,
                 groups: list[int] | None = None):
        if num_images <= 0 or (indices is not None and not indices):
            raise BenchError("the training set has no images" if num_images <= 0 else
                             "the training set has no image with a box (train.filter_empty_gt drops the others)")
        if batch_size % world_size:
            raise BenchError(f"train.batch_size ({batch_size}) must be divisible by the number of processes "
                             f"({world_size})")
        self._all = indices is None
        self.indices = list(range(num_images)) if indices is None else [int(i) for i in indices]
        self.n, self.batch_size, self.data_seed = len(self.indices), batch_size, data_seed
        self.hflip, self.vflip, self.rank, self.world_size = hflip, vflip, rank, world_size
        self.groups = None
        if groups is not None:
            self.groups = [int(groups[i]) for i in self.indices]
            sizes = np.bincount(self.groups)
            self.n = int(sum(-(-int(c) // batch_size) * batch_size for c in sizes if c))
        self.pass_length = self.n
        self._pass = lru_cache(maxsize=2)(self._make_pass)

    def _make_pass(self, p: int) -> tuple[list[int], list[bool], list[bool]]:
        g = torch.Generator().manual_seed(_seed(self.data_seed, p))
        if self.groups is None:
            perm = torch.randperm(self.n, generator=g).tolist()
            if not self._all:
                perm = [self.indices[j] for j in perm]
        else:
            perm = self._grouped(g)
        u = torch.rand(self.n, 2, generator=g)
        return perm, (u[:, 0] < self.hflip).tolist(), (u[:, 1] < self.vflip).tolist()

    def _grouped(self, g: torch.Generator) -> list[int]:
        bs, chunks = self.batch_size, []
        groups = torch.tensor(self.groups)
        for gid in sorted(set(self.groups)):
            members = torch.where(groups == gid)[0]
            members = members[torch.randperm(len(members), generator=g)]
            extra = (-len(members)) % bs
            if extra:  # pad with images of the same group, as mmdet's GroupSampler
                members = torch.cat([members, members[torch.randint(len(members), (extra,), generator=g)]])
            chunks += [members[k:k + bs] for k in range(0, len(members), bs)]
        order = torch.randperm(len(chunks), generator=g).tolist()
        return [self.indices[j] for c in order for j in chunks[c].tolist()]

    def global_batch(self, it: int) -> list[tuple[int, bool, bool]]:
        out = []
        for pos in range(it * self.batch_size, (it + 1) * self.batch_size):
            perm, hf, vf = self._pass(pos // self.n)
            j = pos % self.n
            out.append((perm[j], hf[j], vf[j]))
        return out

    def batch(self, it: int) -> list[tuple[int, bool, bool]]:
        return self.global_batch(it)[self.rank::self.world_size]


class IterationBatches(torch.utils.data.Sampler):
    """Batch sampler over iterations [start, stop) of a TrainOrder (one DataLoader per epoch)."""

    def __init__(self, order: TrainOrder, start: int, stop: int):
        self.order, self.start, self.stop = order, start, stop

    def __iter__(self):
        for it in range(self.start, self.stop):
            yield self.order.batch(it)

    def __len__(self) -> int:
        return self.stop - self.start
