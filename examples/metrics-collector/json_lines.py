"""Writes one JSON object per epoch to the metrics file given by --out (Katib's File
collector with format JSON). Values may be numbers or strings; ``timestamp`` is epoch seconds."""

import argparse
import json
import time

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, required=True)
parser.add_argument("--out", required=True)
args = parser.parse_args()
with open(args.out, "a") as out:
    for epoch in range(1, 4):
        accuracy = 1 - abs(args.lr - 0.05) - 0.1 / epoch
        out.write(
            json.dumps(
                {
                    "epoch": epoch,
                    "accuracy": accuracy,
                    "loss": str(1 - accuracy),
                    "timestamp": time.time(),
                }
            )
            + "\n"
        )
        out.flush()
