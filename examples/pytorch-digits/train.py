"""A small PyTorch MLP on scikit-learn's bundled digits data set (no download).

Prints Katib-style metrics after every epoch: ``epoch=N loss=... accuracy=...`` (validation
loss and accuracy), so the default StdOut collector and medianstop both work on it. Uses CUDA
when a GPU is visible (tunery sets CUDA_VISIBLE_DEVICES from ``nvidia.com/gpu`` limits) and
prints which device it trained on.
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
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device={device} name={name!r} CUDA_VISIBLE_DEVICES="
        f"{os.environ.get('CUDA_VISIBLE_DEVICES', '')!r}",
        flush=True,
    )

    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(
        x / 16.0, y, test_size=0.25, random_state=0, stratify=y
    )
    to = lambda a, dtype: torch.tensor(a, dtype=dtype, device=device)  # noqa: E731
    x_train, x_val = to(x_train, torch.float32), to(x_val, torch.float32)
    y_train, y_val = to(y_train, torch.long), to(y_val, torch.long)

    model = nn.Sequential(nn.Linear(64, args.hidden), nn.ReLU(), nn.Linear(args.hidden, 10)).to(
        device
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator(device="cpu").manual_seed(args.seed)
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(x_train), generator=generator).to(device)
        for start in range(0, len(order), 64):
            batch = order[start : start + 64]
            optimizer.zero_grad()
            loss_fn(model(x_train[batch]), y_train[batch]).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            logits = model(x_val)
            loss = loss_fn(logits, y_val).item()
            accuracy = (logits.argmax(1) == y_val).float().mean().item()
        print(f"epoch={epoch} loss={loss:.5f} accuracy={accuracy:.5f}", flush=True)


if __name__ == "__main__":
    main()
