"""A local stand-in for Katib's ``pytorch-mnist`` trial: softmax regression on scikit-learn's
bundled digits, trained with SGD and momentum for ``--epochs`` epochs (numpy only, no
download, well under a second per epoch). Prints ``epoch=N loss=... accuracy=...`` per epoch
(Katib's default stdout metrics format); ``loss`` is the validation cross-entropy, so more
epochs (Hyperband's resource) give a lower loss for a good learning rate.

    python3 digits_sgd.py --epochs=2 --batch-size=16 --lr=0.03 --momentum=0.7
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits (1797 8x8 images), read from its data file directly:
    importing scikit-learn would take longer than the training."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise SystemExit("scikit-learn is needed for its bundled digits data set")
    data = np.loadtxt(Path(spec.origin).parent / "datasets/data/digits.csv.gz", delimiter=",")
    return data[:, :-1], data[:, -1].astype(int)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--momentum", type=float, default=0.5)
    args = parser.parse_args()
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")

    x, y = load_digits()
    x = x / 16.0
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    split = int(0.8 * len(x))
    x_train, y_train, x_val, y_val = x[:split], y[:split], x[split:], y[split:]
    rng = np.random.default_rng(1)
    w = np.zeros((x.shape[1], 10))
    b = np.zeros(10)
    vw, vb = np.zeros_like(w), np.zeros_like(b)

    def forward(inputs: np.ndarray) -> np.ndarray:
        z = inputs @ w + b
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    for epoch in range(1, args.epochs + 1):
        batches = rng.permutation(split)
        for start in range(0, split, args.batch_size):
            idx = batches[start : start + args.batch_size]
            p = forward(x_train[idx])
            p[np.arange(len(idx)), y_train[idx]] -= 1.0
            gw = x_train[idx].T @ p / len(idx)
            gb = p.mean(axis=0)
            vw = args.momentum * vw - args.lr * gw
            vb = args.momentum * vb - args.lr * gb
            w += vw
            b += vb
        p = forward(x_val)
        loss = float(-np.log(p[np.arange(len(y_val)), y_val] + 1e-12).mean())
        accuracy = float((p.argmax(axis=1) == y_val).mean())
        print(f"epoch={epoch} loss={loss:.5f} accuracy={accuracy:.4f}", flush=True)


if __name__ == "__main__":
    main()
