"""The ``ecgwatch-train`` command: says which extra to install when the training libraries are missing,
instead of an ImportError traceback (the daemon's install leaves them out)."""

from __future__ import annotations

import sys

TRAIN_EXTRA = {"sklearn": "scikit-learn", "matplotlib": "matplotlib"}


def main(argv: list[str] | None = None) -> int:
    try:
        from training.cli import main as train_main
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing not in TRAIN_EXTRA:
            raise
        print(
            f"ecgwatch-train: error: {TRAIN_EXTRA[missing]} is not installed; "
            "install the training extra: pip install 'ecgwatch[train]'",
            file=sys.stderr,
        )
        return 2
    return train_main(argv)


if __name__ == "__main__":
    sys.exit(main())
