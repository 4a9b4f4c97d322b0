"""A tiny "training" script for the quickstart: prints Katib-style ``name=value`` metrics.

The loss is a noisy bowl in (lr, momentum) whose minimum sits at lr=0.03, momentum=0.7, plus a
per-epoch decay, so a tuner has something real to find. Runs in milliseconds.
"""

import argparse
import math
import random


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--momentum", type=float, required=True)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(f"{args.lr}-{args.momentum}")
    floor = 40 * (math.log10(args.lr) - math.log10(0.03)) ** 2 + 4 * (args.momentum - 0.7) ** 2
    for epoch in range(1, args.epochs + 1):
        loss = floor + 1.0 / epoch + 0.01 * rng.random()
        accuracy = 1.0 / (1.0 + loss)
        print(f"epoch {epoch}: loss={loss:.6f} accuracy={accuracy:.6f}", flush=True)


if __name__ == "__main__":
    main()
