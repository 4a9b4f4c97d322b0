"""Tune a PyTorch MLP on scikit-learn's bundled digits with early stopping, from Python.

Run it (no download)::

    python examples/sdk/torch_digits.py                 # a GPU per trial if any, else CPU
    python examples/sdk/torch_digits.py --device cpu    # CPU only
    python examples/sdk/torch_digits.py --device gpu    # one GPU per trial (CUDA_VISIBLE_DEVICES)

On a machine without GPUs the default runs on the CPU and says so; ``--device gpu`` there
stops with an error instead of failing every trial.

The model is the one of ``examples/pytorch-digits/train.py``. The objective reports the
validation loss and accuracy after every epoch with ``report_metrics(..., step=epoch)``;
medianstop compares each running trial with the completed ones at the same epoch and stops
those worse than the median, so bad learning rates cost a few epochs instead of all of them.
"""

from __future__ import annotations

import argparse
import sys

from tunery import search, tune


def train(params: dict) -> dict:
    """Train for ``epochs`` epochs; report every epoch; return the final validation metrics."""
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from torch import nn

    from tunery import report_metrics

    torch.manual_seed(params["seed"])
    torch.set_num_threads(1)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"training on {device}", flush=True)  # in the trial's log
    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(
        x / 16.0, y, test_size=0.25, random_state=0, stratify=y
    )

    def tensor(a, dtype):
        return torch.tensor(a, dtype=dtype, device=device)

    x_train, x_val = tensor(x_train, torch.float32), tensor(x_val, torch.float32)
    y_train, y_val = tensor(y_train, torch.long), tensor(y_val, torch.long)
    model = nn.Sequential(
        nn.Linear(64, params["hidden"]), nn.ReLU(), nn.Linear(params["hidden"], 10)
    ).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=params["lr"], momentum=params["momentum"])
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(params["seed"])
    metrics: dict = {}
    for epoch in range(params["epochs"]):
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
            metrics = {
                "loss": loss_fn(logits, y_val).item(),
                "accuracy": (logits.argmax(1) == y_val).float().mean().item(),
            }
        report_metrics(metrics, step=epoch)  # drives medianstop as the trial runs
    return metrics


def gpus_per_trial(device: str) -> int:
    """1 when trials get a GPU each, 0 for the CPU; says which on stderr.

    The GPUs are the ones tunery hands to local trials (NVML, ``nvidia-smi``, or
    ``TUNERY_GPUS``, which also serves as a fake inventory in tests)."""
    from controller.gpus import discover_gpus

    if device == "cpu":
        return 0
    found = len(discover_gpus())
    if found:
        print(f"{found} GPU(s) found: each trial gets one", file=sys.stderr)
        return 1
    if device == "gpu":
        sys.exit("--device gpu: no GPU found (NVML, nvidia-smi, TUNERY_GPUS); use --device cpu")
    print("no GPU found: the trials run on the CPU", file=sys.stderr)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "gpu"),
        default="auto",
        help="auto (default): one GPU per trial when this machine has GPUs, else the CPU",
    )
    parser.add_argument("--name", default=None, help="experiment name (same name: resume)")
    args = parser.parse_args()
    gpus = gpus_per_trial(args.device)

    result = tune(
        train,
        {
            "lr": search.double(1e-3, 0.5, distribution="logUniform"),
            "momentum": search.double(0.5, 0.99),
            "hidden": search.int(16, 256, step=16),
            "epochs": args.epochs,
            "seed": 0,
        },
        name=args.name,
        objective_metric_name="accuracy",
        additional_metric_names=["loss"],
        objective_type="maximize",
        algorithm_name="tpe",
        seed=0,
        early_stopping={
            "algorithm_name": "medianstop",
            "algorithm_settings": {"min_trials_required": 2, "start_step": 3},
        },
        max_trial_count=args.trials,
        parallel_trial_count=args.parallel,
        resources_per_trial={"gpu": gpus} if gpus else None,
        env_per_trial={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    )
    stopped = result.trials_by_condition("EarlyStopped")
    print(f"best accuracy {result.best_value:.4f} with {result.best_parameters}")
    print(f"{len(result.trials)} trials, {len(stopped)} stopped early by medianstop")


if __name__ == "__main__":
    main()
