"""Build the reference images the realism measures compare with: ``resources/realism_<dataset>.npz``
(a user data set's: ``realism.npz`` in its folder).

    python -m training.build_realism_reference --dataset mnist [--per-class 1000] [--seed 0]

Takes ``--per-class`` random training images of each class (the app ships these, not the
training set) and measures, on the shipped held-out test images, what is typical: the median
distance of a real test image to the nearest reference image of its class, and the 90th
percentile of that distance over the median (the success threshold of the realism metrics).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from trav_gui.engine.data.datasets import (
    DEFAULT_DATASET,
    DatasetUnavailableError,
    all_datasets,
    get_dataset,
    load_training_set,
    realism_reference_path,
    stored_shape,
    test_set,
)
from trav_gui.engine.files import atomic_path


def build(dataset: str, per_class: int = 1000, seed: int = 0, root=None) -> dict[str, np.ndarray]:
    ds = get_dataset(dataset)
    x, y, _ = load_training_set(dataset, True, root)
    rng = np.random.default_rng(seed)
    # Stored as the shipped test sets are: (N, H, W) grey, (N, 3, H, W) colour.
    pixels = np.round(x.numpy() * 255).astype(np.uint8).reshape(len(x), *stored_shape(ds))
    labels = y.numpy()
    k = ds.num_classes
    keep = np.concatenate([np.sort(rng.choice(np.flatnonzero(labels == c), min(per_class, int((labels == c).sum())),
                                              replace=False))
                           for c in range(k)])
    images, ref_labels = pixels[keep], labels[keep]
    bank = images.reshape(len(images), -1).astype(np.float32) / 255.0
    test_x, test_y = test_set(dataset)
    typical, p90 = np.zeros(k), np.zeros(k)
    for c in range(k):
        t = test_x[test_y == c].reshape(int((test_y == c).sum()), -1).astype(np.float32) / 255.0
        b = bank[ref_labels == c]
        d2 = (t * t).sum(1)[:, None] - 2 * t @ b.T + (b * b).sum(1)[None]
        dist = np.sqrt(np.maximum(d2.min(1), 0))
        typical[c] = np.median(dist)
        p90[c] = np.percentile(dist / typical[c], 90)
    return {"images": images, "labels": ref_labels.astype(np.uint8 if k <= 256 else np.uint16), "typical": typical,
            "p90": p90}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=sorted(all_datasets()), default=DEFAULT_DATASET)
    p.add_argument("--per-class", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=None)
    args = p.parse_args(argv)
    try:
        arrays = build(args.dataset, args.per_class, args.seed, args.data_root)
    except DatasetUnavailableError as exc:
        sys.exit(f"error: {exc}")
    out = realism_reference_path(args.dataset)  # a user data set's in its own folder
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    print(f"wrote {out}: {len(arrays['labels'])} reference images; typical distance per class "
          f"{np.round(arrays['typical'], 2).tolist()}, 90th percentile ratio {np.round(arrays['p90'], 2).tolist()}")


if __name__ == "__main__":
    main()
