"""Command line of `python -m training`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training.errors import DatasetError, OutputError, ParityError
from training.settings import TrainingSettings, settings_from_env


def build_parser(defaults: TrainingSettings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train the penguin classifiers of service/registry.py and export them to a "
        "models directory (joblib pipelines, compiled .npz artifacts, manifest.json). The "
        "directory is replaced atomically, only after every model passed its checks.",
        epilog="Environment defaults: PENGUIN_TRAINING_DATA, PENGUIN_TRAINING_OUTPUT, "
        "PENGUIN_TRAINING_SEED, PENGUIN_TRAINING_TEST_SIZE, PENGUIN_TRAINING_CV_FOLDS, "
        "PENGUIN_TRAINING_FOREST_TREES.",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=defaults.data,
        help=f"CSV to train on (default: {defaults.data})",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=defaults.output,
        help=f"models directory to write (default: {defaults.output})",
    )
    parser.add_argument(
        "--seed", type=int, default=defaults.seed, help=f"random seed (default: {defaults.seed})"
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        defaults = settings_from_env()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    parser = build_parser(defaults)
    args = parser.parse_args(argv)
    settings = TrainingSettings(
        data=args.data,
        output=args.output,
        seed=args.seed,
        test_size=defaults.test_size,
        cv_folds=defaults.cv_folds,
        forest_trees=defaults.forest_trees,
    )
    log = (lambda _message: None) if args.quiet else print
    # Imported only now: scikit-learn and pandas take seconds to import, --help should not wait.
    from training.train import train

    try:
        result = train(settings, log=log)
    except (DatasetError, OutputError) as error:
        parser.error(str(error))  # exits 2 with the usage line and the reason
    except ParityError as error:
        print(f"error: {error}; nothing was written", file=sys.stderr)
        return 1
    log(f"wrote {result.output}")
    return 0
