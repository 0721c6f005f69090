"""PNG figures for PSF work: data / model / residual panels."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_data_model_residual(path, data: np.ndarray, model: np.ndarray, status=None, max_rows: int = 4) -> Path:
    """Rows of (data, model, residual) panels for up to ``max_rows`` frames.

    Data and model are shown as log10 of the intensity over the frame's peak (down to 1e-4), the
    residual (data - model) over the peak, on a linear scale; axes in pixels. ``status``: the fit
    status of each frame (``FitResult.status``), shown in the titles.
    """
    from ..plotting import pyplot

    plt = pyplot()
    n = min(len(data), max_rows)
    fig, axes = plt.subplots(n, 3, figsize=(10.5, 3.2 * n), squeeze=False)
    for i in range(n):
        peak = max(float(np.max(data[i])), 1e-30)
        floor = peak * 1e-4
        head = f"frame {i} ({status[i]}): " if status is not None else f"frame {i}: "
        for j, (img, label) in enumerate(((data[i], "data"), (model[i], "model"))):
            im = axes[i, j].imshow(np.log10(np.clip(img, floor, None) / peak), origin="lower", cmap="magma",
                                   vmin=-4, vmax=0)
            axes[i, j].set_title(head + label, fontsize=8)
            _colorbar(fig, im, axes[i, j], "log10(intensity / data peak)")
        res = (data[i] - model[i]) / peak
        lim = max(float(np.abs(res).max()), 1e-12)
        im = axes[i, 2].imshow(res, origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim)
        axes[i, 2].set_title(head + "residual (data - model)", fontsize=8)
        _colorbar(fig, im, axes[i, 2], "residual / data peak")
        for ax in axes[i]:
            ax.set_xlabel("x [px]", fontsize=7)
            ax.set_ylabel("y [px]", fontsize=7)
            ax.tick_params(labelsize=6)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _colorbar(fig, image, ax, label: str) -> None:
    bar = fig.colorbar(image, ax=ax, fraction=0.046)
    bar.set_label(label, fontsize=7)
    bar.ax.tick_params(labelsize=6)
