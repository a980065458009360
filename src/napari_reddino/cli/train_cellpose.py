"""``napari-reddino train-cellpose RUN``: fine-tune Cellpose on the smears corrected in napari.

The smears whose cells were corrected by hand and saved into the run folder (the napari writer
keeps the ``edited`` flag) are cellpose's training set; some are held back, and the starting
model and the trained one are both scored on them, so the user sees whether to switch. The
weights file lands in ``RUN/models/`` and works as ``segment --method cellpose --model PATH``
and in the segmentation dock's model field.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_reddino.cli.console import drive


def cmd_train_cellpose(args: argparse.Namespace) -> int:
    from napari_reddino.runs.corrections import corrected_smears
    from napari_reddino.segment.finetune import iter_finetune_cellpose

    smears = corrected_smears(args.run_dir)
    if len(smears) < 2:
        raise ValueError(f"{args.run_dir}: {len(smears)} smear(s) corrected by hand; training "
                         "needs at least 2 (one is held back to score the model): correct and "
                         "save more smears from napari")
    out = Path(args.out) if args.out else Path(args.run_dir) / "models"
    result = drive(iter_finetune_cellpose(
        [image for _n, image, _l in smears], [labels for _n, _i, labels in smears], out,
        base_model=args.base_model, n_epochs=args.epochs, learning_rate=args.learning_rate,
        gpu="auto" if args.device == "auto" else args.device.startswith("cuda")),
        "training cellpose", quiet=args.quiet)
    print(f"{result.summary()}\nmodel -> {result.model_path}\nuse it: napari-reddino segment "
          f"IMAGES --method cellpose --model {result.model_path}")
    return 0
