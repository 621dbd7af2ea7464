"""MNIST and Fashion-MNIST read as sequences: each image is 28 time steps of 28 pixels.

The seed's classifier: the rows go through a stacked RNN (3 layers by default) and a Linear
maps the top layer's last hidden state to the 10 classes. The last `val_size` training images
are held out for validation, which picks the best epoch; the test split is scored once, at
the end, with that best model.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from rnnlab.data import MNISTData, load_mnist
from rnnlab.experiments.saved import claim_experiment, load_weights
from rnnlab.files import atomic_write
from rnnlab.models import INITS, RowClassifier, check_rnn_settings
from rnnlab.train import (
    EvalResult,
    FitResult,
    TrainConfig,
    broadcast_from_main,
    evaluate,
    fit,
    init_distributed,
    make_eval_loader,
    make_loader,
    seed_everything,
    wrap_model,
)

NAME = "mnist"
# The training recipe the README reports (98.35-98.62% on MNIST over 3 seeds).
# TrainConfig fields; the command line shows them as its defaults.
TRAIN_DEFAULTS = dict(epochs=10, lr=1e-3, schedule="cosine", grad_clip=1.0)
DATASETS = ("mnist", "fashion-mnist")
TEST_FILE = "test.json"


@dataclass
class MnistConfig:
    dataset: str = "mnist"  # 'mnist' or 'fashion-mnist'
    data_dir: str | None = None  # a folder with the four IDX files; None: cache, then sources
    hidden: int = 128  # hidden units in each RNN layer
    layers: int = 3  # stacked RNN layers
    nonlinearity: str = "tanh"  # 'tanh' or 'relu'
    init: str = "default"  # recurrent weights: 'default' (uniform), 'identity' or 'orthogonal'
    impl: str = "rnnlab"  # 'rnnlab' (fused), 'rnnlab-reference' (per-step loop) or 'torch'
    dropout: float = 0.0  # dropout between RNN layers, in training only
    batch_size: int = 64  # images per training batch
    val_size: int = 5000  # last training images held out for validation; 0: no validation

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(DATASETS)}; got {self.dataset!r}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}; got {self.init!r}")
        check_rnn_settings(self.impl, self.nonlinearity, self.hidden, self.layers)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.val_size < 0:
            raise ValueError(f"val_size must be >= 0, got {self.val_size}")


@dataclass
class MnistResult:
    fit: FitResult  # the training run: folder, history, best epoch
    test: EvalResult  # the best model on the test split


def build_model(config: MnistConfig) -> RowClassifier:
    return RowClassifier(
        input_size=28,
        hidden_size=config.hidden,
        num_layers=config.layers,
        num_classes=10,
        impl=config.impl,
        nonlinearity=config.nonlinearity,
        init_scheme=config.init,
        dropout=config.dropout,
    )


def load_data(config: MnistConfig) -> MNISTData:
    return load_mnist(config.dataset, data_dir=config.data_dir)


def splits(config: MnistConfig, data: MNISTData) -> tuple[Dataset, Dataset | None, Dataset]:
    """(train, validation or None, test) datasets of (28, 28) images and labels."""
    train, test = data.dataset("train"), data.dataset("test")
    if not config.val_size:
        return train, None, test
    if config.val_size >= len(train):
        raise ValueError(
            f"val_size must be smaller than the {len(train)} training images, got {config.val_size}"
        )
    cut = len(train) - config.val_size
    return Subset(train, range(cut)), Subset(train, range(cut, len(train))), test


def loader(dataset: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
    """Batches of (B, 28, 28) images and (B,) labels in one process (cross-validation folds,
    evaluation of a saved run); shuffled by a generator fit() seeds."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=torch.Generator())


def run(config: MnistConfig, train_config: TrainConfig, threads: int | None = None) -> MnistResult:
    """Train the row classifier, then score its best epoch on the test split (test.json).

    Under torchrun every process trains its share of each global batch (DDP); only rank 0
    prints and writes. `threads`: torch threads per process (default: the CPUs shared out).
    """
    with init_distributed(train_config.device, threads=threads) as ctx:
        data = load_data(config) if ctx.local_rank == 0 else None  # fetch once per machine
        ctx.barrier()
        data = data or load_data(config)
        train, val, test = splits(config, data)
        seed_everything(train_config.seed)  # the initial weights, too, follow from the seed
        model = build_model(config)
        if ctx.is_main:
            print(
                f"{data.name}: {len(train)} train, {len(val) if val else 0} validation, "
                f"{len(test)} test images, from {data.source}"
            )
            run_dir = Path(train_config.out_dir) / train_config.name
            claim_experiment(run_dir, NAME, dataclasses.asdict(config), classes=list(data.classes))
        result = fit(
            wrap_model(model, ctx),
            make_loader(train, config.batch_size, shuffle=True, seed=train_config.seed, ctx=ctx),
            make_eval_loader(val, config.batch_size, ctx=ctx) if val is not None else None,
            train_config,
            class_names=list(data.classes),
        )
        if ctx.is_main:
            load_weights(model, result.run_dir)
        broadcast_from_main(model, ctx)
        test_loader = make_eval_loader(test, 1000, ctx=ctx)
        test_result = evaluate(model, test_loader, limit_batches=train_config.limit_batches)
        if ctx.is_main:
            record = {
                "epoch": result.best_epoch,
                "test_loss": test_result.loss,
                "test_acc": test_result.accuracy,
                "count": test_result.count,
            }
            atomic_write(result.run_dir / TEST_FILE, json.dumps(record, indent=2).encode())
            print(
                f"test accuracy {test_result.accuracy:.2%} (loss {test_result.loss:.4f}) on "
                f"{test_result.count} images, model of epoch {result.best_epoch}"
            )
    return MnistResult(result, test_result)


def restore(run_dir: str | Path, record: dict) -> tuple[MnistConfig, RowClassifier]:
    """The config and the best model of a finished run, from its experiment.json record."""
    config = MnistConfig(**record["config"])
    model = build_model(config)
    load_weights(model, run_dir)
    return config, model.eval()


def probabilities(model: RowClassifier, image: torch.Tensor) -> torch.Tensor:
    """Class probabilities (10,) of one (28, 28) image with pixels in [0, 1]."""
    if image.shape != (28, 28):
        raise ValueError(f"image must be 28x28 pixels, got {tuple(image.shape)}")
    with torch.no_grad():
        return model(image.unsqueeze(0)).softmax(dim=-1)[0]  # (10,)
