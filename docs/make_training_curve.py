"""Plot the bundled backbone's dev-split curve (docs/images/bundled_morph_training.png).

Reads ``docs/images/bundled_morph_curve.tsv`` (one row per evaluated checkpoint: ``stage``,
``step`` counted from the start of stage 3, linear-probe / 1-NN / 20-NN weighted F1 from
``python -m training.eval --protocol kfold`` on the 8,330 dev-split crops) and, when given, the
runs' ``log.jsonl`` files for the morphology head's loss.

    python docs/make_training_curve.py [RUN_DIR:FIRST_STEP ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

IMAGES = Path(__file__).parent / "images"
TARGETS = {"lp": 72.0, "nn20": 65.0}  # issue 13's bars for the bundled model


def _morph_loss(runs: list[str]) -> pd.DataFrame:
    frames = []
    for spec in runs:
        folder, first = spec.rsplit(":", 1)
        rows = [json.loads(line) for line in (Path(folder) / "log.jsonl").read_text().splitlines()]
        frame = pd.DataFrame([r for r in rows if "morph_loss" in r])
        frame["total_step"] = frame["step"] + int(first)
        frames.append(frame[["total_step", "morph_loss"]])
    return pd.concat(frames) if frames else pd.DataFrame()


def main(argv: list[str]) -> int:
    curve = pd.read_csv(IMAGES / "bundled_morph_curve.tsv", sep="\t")
    loss = _morph_loss(argv)
    fig, axes = plt.subplots(1, 2 if len(loss) else 1, figsize=(11 if len(loss) else 6, 4))
    axes = list(axes) if len(loss) else [axes]
    ax = axes[0]
    lines = [("lp", "linear probe", "tab:blue"), ("nn20", "20-NN", "tab:green"),
             ("nn1", "1-NN", "tab:gray")]
    for column, label, color in lines:
        ax.plot(curve["step"], curve[column], "o-", label=label, color=color)
        if column in TARGETS:
            ax.axhline(TARGETS[column], color=color, ls=":", lw=1)
    for step in curve.groupby("stage")["step"].max().iloc[1:-1]:  # where a stage ended
        ax.axvline(step, color="k", lw=0.5)
    ax.set(xlabel="training step (batch 32) since stage 3", ylabel="weighted F1, % (5-fold)",
           title="Chula RBC-12 dev crops: frozen CLS (dotted: targets)")
    ax.legend(loc="lower right")
    if len(loss):
        axes[1].plot(loss["total_step"], loss["morph_loss"].rolling(10, min_periods=1).mean())
        axes[1].set(xlabel="training step since stage 3", ylabel="MSE per target",
                    title="morphology head loss (10-step mean)")
    fig.tight_layout()
    out = IMAGES / "bundled_morph_training.png"
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
