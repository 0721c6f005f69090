"""PNG figures for PSF work: data / model / residual panels."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_data_model_residual(path, data: np.ndarray, model: np.ndarray, titles=None, max_rows: int = 4) -> Path:
    """Rows of (data, model, residual) panels, log-stretched, for up to ``max_rows`` frames."""
    plt = _pyplot()
    n = min(len(data), max_rows)
    fig, axes = plt.subplots(n, 3, figsize=(9, 3 * n), squeeze=False)
    for i in range(n):
        peak = max(float(np.max(data[i])), 1e-30)
        floor = peak * 1e-4
        for j, (img, label) in enumerate(((data[i], "data"), (model[i], "model"))):
            ax = axes[i, j]
            ax.imshow(np.log10(np.clip(img, floor, None) / peak), origin="lower", cmap="magma", vmin=-4, vmax=0)
            ax.set_title(f"{label} (log10 / peak)" + (f" {titles[i]}" if titles else ""), fontsize=8)
        res = (data[i] - model[i]) / peak
        lim = max(float(np.abs(res).max()), 1e-12)
        im = axes[i, 2].imshow(res, origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim)
        axes[i, 2].set_title("residual / peak", fontsize=8)
        fig.colorbar(im, ax=axes[i, 2], fraction=0.046)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
