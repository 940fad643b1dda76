"""Train a run's attribute classifier on the device (gpu/chunk.sh's first step when CLASSIFIER_WORLD is set).

    python3 gpu/classifier.py OUT.safetensors WORLD_VERSION DEVICE [KEY=VALUE ...]

A file, not a here-document: the renderer's process pool starts its workers by spawning, and a spawned worker
re-imports the parent's main module, which must therefore be a file with a `__main__` guard. KEY=VALUE pairs
override TrainClassifierConfig fields, read as train-gan's --set reads them (Python literals), e.g. n_train=256
steps=2 for a CPU rehearsal.
"""

import json
import logging
import sys

from ganinv.training.train_classifier import TrainClassifierConfig, train_classifier
from ganinv.training.checkpoint import parse_settings


def main(out: str, world_version: str, device: str, *overrides: str) -> None:
    try:
        fields = parse_settings(list(overrides), TrainClassifierConfig)
    except ValueError as err:  # before the faces are rendered
        raise SystemExit(str(err)) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    config = TrainClassifierConfig(**{**fields, "world_version": int(world_version), "device": device})
    record = train_classifier(config, out)
    print(json.dumps({key: record[key] for key in ("heldout", "passes", "train_seconds")}))


if __name__ == "__main__":
    main(*sys.argv[1:])
