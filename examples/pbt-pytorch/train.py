"""A PyTorch MLP on scikit-learn's digits trained by population based training (CPU, no download).

Each trial trains ``--epochs`` more epochs from its checkpoint folder (``--checkpoint``): the
folder is empty in generation 0 and holds the parent's ``checkpoint.pt`` later (pbt copies
it there before the trial starts; on an exploit the parent is a better member, on an explore
the member itself). The new learning rate and momentum replace the optimizer's, the model
and optimizer state continue. Prints ``resumed epoch=N accuracy=...`` (the checkpoint's
validation accuracy before training) and ``epoch=N loss=... accuracy=...`` after every epoch;
the experiment reads the latest accuracy.
"""

from __future__ import annotations

import argparse
import os

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--checkpoint", default="/var/checkpoint")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(
        x / 16.0, y, test_size=0.25, random_state=0, stratify=y
    )
    x_train, x_val = (torch.tensor(a, dtype=torch.float32) for a in (x_train, x_val))
    y_train, y_val = (torch.tensor(a, dtype=torch.long) for a in (y_train, y_val))

    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    loss_fn = nn.CrossEntropyLoss()

    def evaluate() -> tuple[float, float]:
        model.eval()
        with torch.no_grad():
            logits = model(x_val)
            return loss_fn(logits, y_val).item(), (logits.argmax(1) == y_val).float().mean().item()

    path = os.path.join(args.checkpoint, "checkpoint.pt")
    epoch = 0
    if os.path.exists(path):
        state = torch.load(path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        for group in optimizer.param_groups:  # this trial's hyperparameters from here on
            group["lr"], group["momentum"] = args.lr, args.momentum
        epoch = int(state["epoch"])
        print(f"resumed epoch={epoch} accuracy={evaluate()[1]:.5f}", flush=True)
    os.makedirs(args.checkpoint, exist_ok=True)

    generator = torch.Generator().manual_seed(args.seed + epoch)
    for _ in range(args.epochs):
        epoch += 1
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        for start in range(0, len(order), 64):
            batch = order[start : start + 64]
            optimizer.zero_grad()
            loss_fn(model(x_train[batch]), y_train[batch]).backward()
            optimizer.step()
        loss, accuracy = evaluate()
        print(f"epoch={epoch} loss={loss:.5f} accuracy={accuracy:.5f}", flush=True)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch}
    torch.save(state, path + ".tmp")
    os.replace(path + ".tmp", path)  # a killed trial leaves no half-written checkpoint


if __name__ == "__main__":
    main()
