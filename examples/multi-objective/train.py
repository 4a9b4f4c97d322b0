"""A tiny "training" script with two competing metrics, for the multi-objective example.

A wider model (``width``) and more epochs lower the loss but raise the latency; a larger
learning rate helps up to a point. Prints Katib-style ``name=value`` lines; runs in
milliseconds.
"""

import argparse
import math


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--width", type=int, required=True)
    parser.add_argument("--activation", required=True)
    args = parser.parse_args()
    bonus = {"relu": 0.0, "gelu": -0.05, "tanh": 0.1}[args.activation]
    loss = 1.0 / math.sqrt(args.width) + 3 * (math.log10(args.lr) + 2) ** 2 / 10 + bonus + 0.2
    latency_ms = 0.05 * args.width + (2.0 if args.activation == "gelu" else 0.0) + 1.0
    print(f"loss={loss:.6f} latency_ms={latency_ms:.4f}", flush=True)


if __name__ == "__main__":
    main()
