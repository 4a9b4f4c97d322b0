#!/usr/bin/env python
"""The trial of Katib's simple-pbt example (examples/v1beta1/trial-images/simple-pbt), rewritten.

A toy problem for population based training: accuracy grows fastest when the learning rate
is near an optimum that rises then falls with the accuracy itself (a triangle wave), so no
fixed learning rate does well and members must continue each other's checkpoints.

The checkpoint contract (tunery's and Katib's): ``--checkpoint`` is this trial's own folder;
it holds the parent's checkpoint when the trial continues one (pbt copied it there before
the trial started) and is empty otherwise; the trial saves its state there before exiting.
Unlike Katib's image, the trial does not sleep 7 s for a metrics collector to attach, and it
says which step it resumed from.
"""

from __future__ import annotations

import argparse
import os
import pickle
import random

import numpy as np

MIDPOINT = 50.0  # the optimal lr falls once the accuracy passes this (in percent)
Q_TOLERANCE = 3.0  # an lr more than this factor away from the optimum hurts
NOISE = 2.0  # standard deviation of the noise added to the accuracy each step


class Toy:
    def __init__(self, lr: float, checkpoint: str) -> None:
        self.lr = lr
        self.path = os.path.join(checkpoint, "training.ckpt")
        if os.path.exists(self.path):
            with open(self.path, "rb") as f:
                state = pickle.load(f)
            self.accuracy, self.step_count = float(state["accuracy"]), int(state["step"])
            print(f"resumed from step {self.step_count} accuracy {self.accuracy / 100:.4f}")
        else:
            os.makedirs(checkpoint, exist_ok=True)
            self.accuracy, self.step_count = 0.0, 1

    def optimal_lr(self) -> float:
        if self.accuracy < MIDPOINT:
            best = 0.01 * self.accuracy / MIDPOINT
        else:
            best = 0.01 - 0.01 * (self.accuracy - MIDPOINT) / MIDPOINT
        return min(0.01, max(0.001, best))

    def step(self) -> None:
        best = self.optimal_lr()
        q_err = max(self.lr, best) / (min(self.lr, best) + np.finfo(float).eps)
        if q_err < Q_TOLERANCE:
            self.accuracy += random.random() / q_err
        elif self.lr > best:
            self.accuracy -= (q_err - Q_TOLERANCE) * random.random()
        self.accuracy += NOISE * np.random.normal()
        self.accuracy = max(0.0, min(100.0, self.accuracy))
        self.step_count += 1

    def save(self) -> None:
        with open(self.path, "wb") as f:
            pickle.dump({"step": self.step_count, "accuracy": self.accuracy}, f)


def main() -> None:
    parser = argparse.ArgumentParser(description="PBT Basic Test")
    parser.add_argument("--lr", type=float, default=0.0001, help="learning rate")
    parser.add_argument("--epochs", type=int, default=20, help="steps to train")
    parser.add_argument(
        "--checkpoint", default="/var/log/katib/checkpoints/", help="checkpoint folder"
    )
    opt = parser.parse_args()
    toy = Toy(opt.lr, opt.checkpoint)
    for _ in range(opt.epochs):
        toy.step()
    toy.save()
    print(f"epoch {toy.step_count}:")
    print(f"lr={toy.lr:0.4f}")
    print(f"Validation-accuracy={toy.accuracy / 100:0.4f}")


if __name__ == "__main__":
    main()
