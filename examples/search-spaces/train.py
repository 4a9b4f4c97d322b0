"""A tiny "training" script for the conditional/constrained example: prints Katib-style
``name=value`` metrics.

``--momentum`` is given only with ``--optimizer sgd`` (the controller leaves the argv element
out of other trials) and ``--beta1`` only with ``adam``. Besides the loss it reports
``memory_over_gb``, a constraint (feasible when <= 0): a large batch "needs" more memory than
the 8 GB budget, so the lowest loss is not a feasible one. Runs in milliseconds.
"""

import argparse
import math


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--optimizer", choices=["sgd", "adam"], required=True)
    parser.add_argument("--momentum", type=float)
    parser.add_argument("--beta1", type=float)
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--batch", type=int, required=True)
    args = parser.parse_args()
    if (args.momentum is not None) != (args.optimizer == "sgd"):
        parser.error("--momentum is for sgd only")
    if (args.beta1 is not None) != (args.optimizer == "adam"):
        parser.error("--beta1 is for adam only")
    lr_term = (math.log10(args.lr) + 1.5) ** 2
    if args.optimizer == "sgd":
        loss = 0.1 + lr_term + 4 * (args.momentum - 0.9) ** 2
    else:
        loss = 0.3 + lr_term + 4 * (args.beta1 - 0.9) ** 2
    loss += 8.0 / args.batch  # larger batches train better here...
    memory_gb = args.batch / 32  # ...but need memory
    print(f"loss={loss:.6f}", flush=True)
    print(f"memory_over_gb={memory_gb - 8:.3f}", flush=True)


if __name__ == "__main__":
    main()
