"""A synthetic learning curve for the early-stopping example: prints accuracy per epoch.

Accuracy rises towards a ceiling set by (lr, dropout); bad settings plateau low, so medianstop
can stop them after a few epochs. Sleeps a little per epoch so stopping saves visible time.
"""

import argparse
import math
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--dropout", type=float, required=True)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    ceiling = 0.98 - 0.3 * (math.log10(args.lr) + 2) ** 2 - 0.5 * (args.dropout - 0.2) ** 2
    for epoch in range(1, args.epochs + 1):
        accuracy = ceiling * (1 - math.exp(-epoch / 3))
        print(f"epoch={epoch} accuracy={accuracy:.5f}", flush=True)
        time.sleep(0.1)


if __name__ == "__main__":
    main()
