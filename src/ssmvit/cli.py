"""What every stage script shares: common arguments and one-line errors."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from .config import KNOWN_DATASETS, KNOWN_MODELS, KNOWN_RESOLUTIONS, load_config
from .errors import UserError


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config", default="config.yaml", help="study config (default: config.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=1 (repeatable)")
    return p


def add_run_args(p: argparse.ArgumentParser, model=True, seed=True) -> None:
    # Choices are checked by the library (one-line error listing the valid ones).
    p.add_argument("--dataset", required=True, help=f"one of {', '.join(KNOWN_DATASETS)}")
    p.add_argument("--res", required=True, type=int, help=f"one of {', '.join(map(str, KNOWN_RESOLUTIONS))}")
    if model:
        p.add_argument("--model", required=True, help=f"one of {', '.join(KNOWN_MODELS)}")
    if seed:
        p.add_argument("--seed", type=int, default=None, help="default: the first of study.seeds")


def config_from(args) -> dict:
    return load_config(args.config, args.overrides)


def run(main: Callable[[], object]) -> None:
    """Run a stage; a UserError becomes one line on stderr and exit status 2."""
    try:
        main()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted; rerun the same command to resume", file=sys.stderr)
        sys.exit(130)
