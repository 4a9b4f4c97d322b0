"""Prints metrics the way Katib's PyTorch MNIST image does:
``{metricName: accuracy, metricValue: 0.9}`` — parsed by a custom metricsFormat regex."""

import argparse

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, required=True)
args = parser.parse_args()
for epoch in range(1, 4):
    loss = (args.lr - 0.02) ** 2 * 100 + 1 / epoch
    print(
        f"epoch {epoch}: {{metricName: loss, metricValue: {loss:.4f}}};"
        f"{{metricName: accuracy, metricValue: {1 / (1 + loss):.4f}}}",
        flush=True,
    )
