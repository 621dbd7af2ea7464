"""The tutorial's MNIST classifier as a plain script: the yardstick `rnnlab mnist` is timed against.

torch.nn.RNN(28, 128, 3) reads an image as 28 steps of 28 pixels; Linear(128, 10) classifies
the top layer's last hidden state; Adam at 1e-3, batch 64, all 60,000 training images, the test
split scored after every epoch. The data are in memory as tensors and a batch is one index into
them: no Dataset, no DataLoader, nothing of rnnlab but its cached copy of MNIST.

    python scripts/tutorial_mnist.py --epochs 1 --json tutorial.json

prints, per epoch, the seconds of training, of testing and the test accuracy; `--json` writes
the same. `rnnlab bench --run` calls its `run` to time one epoch beside `rnnlab mnist`.
Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from rnnlab.data import load_mnist
from rnnlab.data.download import DatasetUnavailableError


class Classifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(28, 128, 3, batch_first=True)
        self.fc = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)  # (B, 28, 128)
        return self.fc(out[:, -1])  # (B, 10)


def run(epochs: int = 1, seed: int = 0, batches: int = 0, log=print) -> list[dict]:
    """Train the tutorial's model for `epochs` (each stopped after `batches` batches when > 0, and
    its test pass too: a dry run) and return each epoch's seconds and test accuracy."""
    torch.manual_seed(seed)
    data = load_mnist("mnist")
    train_x = torch.from_numpy(data.train_images).float() / 255  # (60000, 28, 28)
    train_y = torch.from_numpy(data.train_labels)  # (60000,)
    test_x = torch.from_numpy(data.test_images).float() / 255  # (10000, 28, 28)
    test_y = torch.from_numpy(data.test_labels)  # (10000,)
    limit = batches or None

    model = Classifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    epochs_done = []
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        model.train()
        for idx in torch.randperm(len(train_x)).split(64)[:limit]:
            loss = F.cross_entropy(model(train_x[idx]), train_y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        trained = time.perf_counter()
        model.eval()
        correct, count = 0, 0
        with torch.no_grad():
            for idx in torch.arange(len(test_x)).split(1000)[:limit]:
                correct += (model(test_x[idx]).argmax(-1) == test_y[idx]).sum().item()
                count += len(idx)
        record = {
            "epoch": epoch,
            "train_s": trained - started,
            "test_s": time.perf_counter() - trained,
            "test_acc": correct / count,
        }
        epochs_done.append(record)
        log(
            f"tutorial script epoch {epoch}: train {record['train_s']:.1f}s, test "
            f"{record['test_s']:.1f}s, test accuracy {record['test_acc']:.2%}"
        )
    return epochs_done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="passes over the training data")
    parser.add_argument("--seed", type=int, default=0, help="torch's seed")
    parser.add_argument(
        "--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads"
    )
    parser.add_argument("--json", help="also write the per-epoch figures to this file")
    args = parser.parse_args()
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    if args.json and (Path(args.json).is_dir() or not Path(args.json).parent.is_dir()):
        parser.error(f"--json {args.json}: expected a file path in an existing folder")
    torch.set_num_threads(args.threads)
    try:
        epochs = run(args.epochs, args.seed, log=lambda line: print(line, flush=True))
    except DatasetUnavailableError as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "torch": torch.__version__, "epochs": epochs}, f)


if __name__ == "__main__":
    main()
