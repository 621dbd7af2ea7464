"""`rnnlab evaluate RUN_DIR`: score a finished run's best model again.

mnist runs are scored on their test split; seq2seq runs on their pairs (or --pairs FILE).
"""

from __future__ import annotations

import argparse
import json

from rnnlab.data import PairDataset, read_pairs
from rnnlab.experiments import mnist, seq2seq
from rnnlab.experiments.saved import read_experiment
from rnnlab.train import evaluate


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="test metrics of a saved run (mnist: the test split; seq2seq: its pairs)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("run_dir", help="the run folder, e.g. runs/mnist")
    parser.add_argument(
        "--pairs",
        default=None,
        help="seq2seq only: score these TSV pairs instead of the training ones",
    )
    parser.add_argument(
        "--data-dir", default=None, help="mnist only: read the data set from this IDX folder"
    )
    parser.add_argument("--dry-run", action="store_true", help="score two batches only")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    record = read_experiment(args.run_dir)
    limit = 2 if args.dry_run else 0
    if record["experiment"] == mnist.NAME:
        config, model = mnist.restore(args.run_dir, record)
        if args.data_dir is not None:
            config.data_dir = args.data_dir
        _, _, test = mnist.splits(config, mnist.load_data(config))
        result = evaluate(model, mnist.loader(test, 1000, shuffle=False), limit_batches=limit)
        what = f"{config.dataset} test split"
    elif record["experiment"] == seq2seq.NAME:
        config, vocab, model = seq2seq.restore(args.run_dir, record)
        pairs = read_pairs(args.pairs, config.level) if args.pairs else seq2seq.load_pairs(config)
        texts = [text for pair in pairs for text in (pair.source, pair.target)]
        seq2seq.check_known(vocab, texts, f"pairs file {args.pairs}")
        dataset = PairDataset(pairs, vocab)
        loader = seq2seq.loader(dataset, config.batch_size, shuffle=False)
        result = evaluate(model, loader, limit_batches=limit)
        what = f"{len(pairs)} pair(s)"
    else:
        raise SystemExit(f"unknown experiment {record['experiment']!r} in {args.run_dir}")
    print(
        json.dumps(
            {
                "run": str(args.run_dir),
                "on": what,
                "loss": result.loss,
                "accuracy": result.accuracy,
                "count": result.count,
            },
            indent=2,
        )
    )
    return 0
