"""Train edgegen's embedded models on scikit-learn's digits and write them into edgegen/zoo/.

    python benchmarks/zoo/train.py [--seed 0] [--out edgegen/zoo] [--only cond_unet ...]

Needs the export extra (torch, diffusers). Seeded: the same seed reproduces the recorded
losses (model cards: edgegen/zoo/*.json). Data and recipes: training.py here; the model
definitions the package exports: edgegen/export/zoo.py.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from training import train_all  # noqa: E402  (this directory is on sys.path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "edgegen" / "zoo"))
    parser.add_argument("--only", nargs="+", help="train just these models (default: all four)")
    args = parser.parse_args()
    train_all(args.out, seed=args.seed, only=args.only, progress=lambda m: print(m, flush=True))


if __name__ == "__main__":
    main()
