"""Training curves as a picture: loss and accuracy per epoch, and validation mP@1 / mAP.

Not every epoch is validated (:class:`~muselens.training.train_config.ValidationConfig`): the
validation curves join the epochs that were, at their place on the epoch axis.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO


def plot_curves(history: list[dict[str, Any]], path: Path | BinaryIO) -> None:
    """The curves as a PNG at ``path`` (a file name or an open binary file)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    stages = sorted({h["stage"] for h in history})
    step = 0
    for stage in stages:
        rows = [h for h in history if h["stage"] == stage]
        x = list(range(step, step + len(rows)))
        step += len(rows)
        colour = f"C{stage - 1}"
        axes[0].plot(x, [h["loss"] for h in rows], marker="o", color=colour, label=f"stage {stage}")
        axes[1].plot(x, [100 * h["accuracy"] for h in rows], marker="o", color=colour, label=f"stage {stage}")
        validated = [(i, h) for i, h in zip(x, rows) if "val_mp_at_1" in h]
        if validated:
            vx = [i for i, _ in validated]
            axes[2].plot(vx, [100 * h["val_mp_at_1"] for _, h in validated], marker="o", color=colour,
                         label=f"mP@1, stage {stage}")
            axes[2].plot(vx, [100 * h["val_map"] for _, h in validated], ls="--", marker=".", color=colour,
                         label=f"mAP, stage {stage}")
    for ax, title in zip(axes, ("training loss", "training accuracy (%)", "validation (%)")):
        ax.set_title(title)
        ax.set_xlabel("epoch (all stages in sequence)")
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
