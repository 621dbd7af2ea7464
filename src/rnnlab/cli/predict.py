"""`rnnlab predict RUN_DIR`: run a saved model on one input.

seq2seq: `--text hello` prints the output sequence. mnist: `--index N` (a test image) or
`--image FILE.png` (28x28 grayscale, white digit on black unless --invert) prints the class
and every class's probability.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image

from rnnlab.experiments import mnist, seq2seq
from rnnlab.experiments.saved import read_experiment


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="a saved model on one input: seq2seq text, or an mnist test index or PNG",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("run_dir", help="the run folder, e.g. runs/mnist")
    parser.add_argument("--text", default=None, help="seq2seq: the source sequence")
    parser.add_argument("--index", type=int, default=None, help="mnist: a test-split index")
    parser.add_argument("--image", default=None, help="mnist: a 28x28 grayscale PNG file")
    parser.add_argument(
        "--invert", action="store_true", help="mnist: the PNG is a dark digit on a light background"
    )
    parser.set_defaults(run=run)


def read_image(path: str, invert: bool) -> torch.Tensor:
    """A 28x28 grayscale picture as (28, 28) floats in [0, 1], white digit on black."""
    with Image.open(path) as picture:
        if picture.size != (28, 28):
            raise SystemExit(
                f"{path}: expected a 28x28 image, got {picture.size[0]}x{picture.size[1]}"
            )
        pixels = np.asarray(picture.convert("L"), dtype=np.float32) / 255  # (28, 28)
    image = torch.from_numpy(pixels.copy())
    return 1 - image if invert else image


def run(args: argparse.Namespace) -> int:
    record = read_experiment(args.run_dir)
    if record["experiment"] == seq2seq.NAME:
        if args.text is None:
            raise SystemExit("a seq2seq run predicts from --text")
        _, vocab, model = seq2seq.restore(args.run_dir, record)
        seq2seq.check_known(vocab, [args.text], f"--text {args.text!r}")
        print(seq2seq.translate(model, vocab, args.text))
        return 0
    if record["experiment"] != mnist.NAME:
        raise SystemExit(f"unknown experiment {record['experiment']!r} in {args.run_dir}")
    if (args.index is None) == (args.image is None):
        raise SystemExit("an mnist run predicts from exactly one of --index N or --image FILE")
    config, model = mnist.restore(args.run_dir, record)
    classes = record.get("classes") or [str(i) for i in range(10)]
    if args.image is not None:
        image, label = read_image(args.image, args.invert), None
    else:
        test = mnist.load_data(config).dataset("test")
        if not 0 <= args.index < len(test):
            raise SystemExit(f"--index must be in [0, {len(test) - 1}], got {args.index}")
        image, label = test[args.index]
    probs = mnist.probabilities(model, image)  # (10,)
    best = int(probs.argmax())
    truth = "" if label is None else f" (true label: {classes[int(label)]})"
    print(f"predicted: {classes[best]}{truth}")
    for i in probs.argsort(descending=True).tolist():
        print(f"  {classes[i]:>12} {probs[i]:.4f}")
    return 0
