"""The reliability CNN: PDF -> network input, calibrated class probabilities, model files.

Network input
    A log PDF on the engine's grid is max-pooled by a few grid points and becomes up to two
    channels (``channels``, see :class:`PdfTransform`):

    - ``pdf``: the probability of the cells (highest density times width), which shows how the
      mass is shared between peaks and how sharp they are;
    - ``log``: the log PDF relative to its maximum, clipped at ``-LOG_FLOOR`` and mapped to
      [0, 1], which shows the secondary peaks that are invisible in linear scale (a rival peak
      at delta chi2 = 20 holds 5e-5 of the mass yet says that another line identification fits).

Calibration
    The network is trained with balanced class weights, which shifts its probabilities towards
    the rare classes, and cross-entropy training of a small network leaves them over- or
    under-confident. Both are corrected on the validation split by fitting a scale ``a`` and
    class biases ``b`` (temperature scaling with a bias, ``softmax(a * logits + b)``, Platt
    scaling for 2 classes) to minimise the unweighted negative log-likelihood. The NLL is
    convex in (a, b), so the fit is reliable; ``a`` keeps the ranking of the spectra.

Model files
    A directory with ``reliability_model.json`` (:data:`METADATA_FILE`: grid, classes, label
    scheme, input channels and pooling, calibration), ``checkpoints/`` and, when there is one,
    the descriptors + GBM baseline (:data:`BASELINE_FILE`): a training run (see
    :func:`astrolearn.training.fit`) or a model exported from one (:func:`export_model`), as the
    shipped ones in ``astrolearn/redshift/models/<name>/``.
    :class:`ReliabilityModel` refuses PDFs on another grid than the training one.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ... import __version__
from ...errors import UserError
from ..pdf import ZGrid
from .labels import SUCCESS, LabelScheme

METADATA_FILE = "reliability_model.json"
#: The descriptors + gradient-boosting baseline of a run or model directory.
BASELINE_FILE = "baseline_gbm.pkl"
#: Shipped models: one model directory per name.
PACKAGED_DIR = Path(__file__).resolve().parents[1] / "models"
DEFAULT_MODEL = "classical"
CHANNELS = ("pdf", "log")
#: Floor of the ``log`` channel: log PDF values more than this below the maximum are clipped.
LOG_FLOOR = 20.0
#: Relative tolerance when comparing grid parameters.
GRID_RTOL = 1e-6


# ---- grid ----------------------------------------------------------------------------------
def grid_from_meta(meta: dict) -> ZGrid:
    """A :class:`ZGrid` from stored grid metadata (``zmin``, ``zmax``, ``zstep``/``step``, ``sampling``)."""
    try:
        step = meta["zstep"] if "zstep" in meta else meta["step"]
        return ZGrid(float(meta["zmin"]), float(meta["zmax"]), float(step), str(meta.get("sampling", "log")))
    except KeyError as exc:
        raise UserError(f"redshift grid metadata lacks {exc.args[0]!r} (has {', '.join(meta)})") from None


def describe_grid(grid: ZGrid) -> str:
    return f"z {grid.zmin:g}-{grid.zmax:g}, step {grid.step:g} ({grid.sampling}), {grid.size} points"


def check_grid(expected: ZGrid, given: ZGrid, where) -> None:
    """Refuse PDFs on another grid than the model's.

    Raises
    ------
    UserError
        Naming both grids and the two ways out.
    """
    same = (expected.sampling == given.sampling and expected.size == given.size
            and all(math.isclose(a, b, rel_tol=GRID_RTOL, abs_tol=1e-12)
                    for a, b in ((expected.zmin, given.zmin), (expected.zmax, given.zmax),
                                 (expected.step, given.step))))
    if not same:
        raise UserError(f"{where}: PDFs on grid {describe_grid(given)}, but the reliability model was "
                        f"trained on {describe_grid(expected)}; rerun the estimate on that grid "
                        "(--zrange/--zstep/--sampling) or train a model for this one")


# ---- network input -------------------------------------------------------------------------
class PdfTransform:
    """Log PDFs (..., Z) -> network input (..., C, ceil(Z / pool)) float32 (picklable).

    The log PDF is first max-pooled by ``pool`` grid points (Amazed's grids oversample the
    peaks: at the default step 1e-4 in ln(1 + z) a peak of Dz ~ 0.002 (1 + z) spans ~40
    points). Max-pooling commutes with the exponential, so this is the max-pooling layer a
    network would start with, done once on the raw input: it keeps each peak's height and
    makes everything after it ``pool`` times cheaper (the exponential of the whole grid would
    cost more than the network). Then, per cell:

    - ``pdf``: the highest PDF value of the cell times the cell width, ``max p(z) x sum w``
      (the cell's probability for a PDF flat over the cell; an upper bound otherwise): how the
      mass is shared between peaks;
    - ``log``: the highest ``log p`` of the cell relative to the global maximum, clipped at
      ``-LOG_FLOOR`` and mapped to [0, 1]: the peaks, including the secondary ones that hold
      too little mass to show in ``pdf``.

    Parameters
    ----------
    grid : ZGrid
        Grid of the PDFs (its trapezoid weights give the cell masses).
    channels : sequence of str
        Among :data:`CHANNELS`, in this order in the output.
    pool : int
        Max-pooling factor (1: none). The last cell pools the remaining points.
    """

    def __init__(self, grid: ZGrid, channels=CHANNELS, pool: int = 1):
        channels = tuple(channels)
        if not channels or any(c not in CHANNELS for c in channels) or len(set(channels)) != len(channels):
            raise UserError(f"input channels must be distinct names among {', '.join(CHANNELS)}, "
                            f"not {', '.join(channels) or 'none'}")
        if not (isinstance(pool, int) and pool >= 1):
            raise UserError(f"input pooling must be an integer >= 1, not {pool!r}")
        self.channels, self.pool, self.size = channels, pool, grid.size
        w = np.pad(grid.weights, (0, -grid.size % pool))  # the last cell may hold fewer points
        self.log_widths = np.log(w.reshape(-1, pool).sum(axis=1)).astype(np.float32)

    def __call__(self, log_pdf) -> np.ndarray:
        import torch

        lp = torch.as_tensor(np.asarray(log_pdf, dtype=np.float32))
        if lp.shape[-1] != self.size:
            raise UserError(f"PDFs of {lp.shape[-1]} points for a grid of {self.size}")
        shape = lp.shape[:-1]
        lp = lp.reshape(-1, 1, self.size)
        if self.pool > 1:
            lp = torch.nn.functional.max_pool1d(lp, self.pool, ceil_mode=True)
        lp = torch.nan_to_num(lp[:, 0], nan=-torch.inf, posinf=-torch.inf, neginf=-torch.inf)
        top = lp.amax(dim=1, keepdim=True)
        out = []
        for name in self.channels:
            if name == "pdf":
                out.append(torch.exp(lp + torch.from_numpy(self.log_widths)))
            else:
                # A row without any finite value (no data) stays at -inf: an all-zero input.
                rel = lp - torch.where(torch.isfinite(top), top, 0.0)
                out.append(torch.clamp(rel, min=-LOG_FLOOR) * (1 / LOG_FLOOR) + 1)
        x = torch.stack(out, dim=1)
        return x.reshape(*shape, len(out), x.shape[-1]).numpy()


# ---- calibration ---------------------------------------------------------------------------
@dataclass
class Calibration:
    """``probs = softmax(scale * logits + bias)``; the identity is scale 1, bias 0."""

    scale: float
    bias: np.ndarray

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        z = self.scale * np.asarray(logits, dtype=np.float64) + self.bias
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def to_dict(self) -> dict:
        return {"scale": float(self.scale), "bias": [float(b) for b in self.bias]}

    @classmethod
    def from_dict(cls, d: dict | None, n_classes: int) -> "Calibration":
        if d is None:
            return cls(1.0, np.zeros(n_classes))
        return cls(float(d["scale"]), np.asarray(d["bias"], dtype=np.float64))


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of integer ``labels`` under ``probs`` (N, C)."""
    p = probs[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.maximum(p, 1e-300))))


def fit_calibration(logits, labels) -> Calibration:
    """Scale and class biases minimising the NLL of ``labels`` (see the module documentation).

    Parameters
    ----------
    logits : array_like, shape (N, C)
        Raw network outputs on held-out data.
    labels : array_like of int, shape (N,)

    Returns
    -------
    Calibration
        The bias of class 0 is fixed to 0 (softmax is invariant to a common shift). Classes
        absent from ``labels`` keep the uncalibrated scale-only treatment of their bias (0).
    """
    from scipy.optimize import minimize

    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n, c = logits.shape
    onehot = np.eye(c)[labels]

    def objective(theta):
        scale, bias = theta[0], np.r_[0.0, theta[1:]]
        z = scale * logits + bias
        zmax = z.max(axis=1, keepdims=True)
        lse = np.log(np.exp(z - zmax).sum(axis=1)) + zmax[:, 0]
        value = np.mean(lse - (z * onehot).sum(axis=1))
        resid = (np.exp(z - lse[:, None]) - onehot) / n  # d value / d z
        return value, np.r_[(resid * logits).sum(), resid.sum(axis=0)[1:]]

    res = minimize(objective, np.r_[1.0, np.zeros(c - 1)], jac=True, method="L-BFGS-B",
                   bounds=[(1e-3, 1e3)] + [(-50.0, 50.0)] * (c - 1))
    return Calibration(float(res.x[0]), np.r_[0.0, res.x[1:]])


# ---- model files ---------------------------------------------------------------------------
def model_metadata(grid: ZGrid, scheme: LabelScheme, channels, pool: int, calibration: Calibration | None = None,
                   training: dict | None = None) -> dict:
    """What a reliability model needs besides its weights (``reliability_model.json``)."""
    return {
        "format": 1,
        "grid": grid.meta(),
        "classes": list(scheme.classes),
        "labels": scheme.to_dict(),
        "input": {"array": "log_pdf", "channels": list(channels), "pool": int(pool), "log_floor": LOG_FLOOR},
        "calibration": None if calibration is None else calibration.to_dict(),
        "training": training or {},
        "astrolearn_version": __version__,
    }


def write_metadata(path, meta: dict) -> Path:
    """Write model metadata to ``path`` (a file, or a directory's :data:`METADATA_FILE`)."""
    from ...io.shards import atomic_write

    path = Path(path)
    if path.is_dir():
        path = path / METADATA_FILE
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(meta, indent=1))
    return path


def locate_model(model=None) -> Path:
    """Directory of a model given as a run/model directory or a shipped model's name (default :data:`DEFAULT_MODEL`)."""
    from ...shipped import locate_model_dir

    return locate_model_dir(DEFAULT_MODEL if model is None else model, PACKAGED_DIR, METADATA_FILE, "reliability")


class ReliabilityModel:
    """A trained reliability classifier: ``predict(log_pdf, grid) -> class probabilities``.

    Parameters
    ----------
    model : path-like or str, optional
        A training run directory (``astrolearn redshift train``), an exported model directory,
        or the name of a shipped model (default :data:`DEFAULT_MODEL`).

    Attributes
    ----------
    grid : ZGrid
        The grid the model was trained on.
    classes : list of str
        Class names, ``classes[0] == "success"``.
    scheme : LabelScheme
    calibration : Calibration
    """

    def __init__(self, model=None):
        from ...nn import fold_batchnorm
        from ...shipped import display_name
        from ...training import load_model

        path = locate_model(model)
        self.name = display_name(path, PACKAGED_DIR)
        self.baseline_file = path / BASELINE_FILE
        self.meta = json.loads((path / METADATA_FILE).read_text())
        self.network = load_model(path)
        fold_batchnorm(self.network.net)  # 4x faster on CPU for the default network
        self.grid = grid_from_meta(self.meta["grid"])
        self.classes = list(self.meta["classes"])
        if self.network.names != self.classes or self.classes[0] != SUCCESS:
            raise UserError(f"{self.name}: weights for classes {self.network.names}, metadata says {self.classes}")
        self.scheme = LabelScheme.from_dict(self.meta["labels"])
        self.calibration = Calibration.from_dict(self.meta.get("calibration"), len(self.classes))
        self.transform = PdfTransform(self.grid, self.meta["input"]["channels"], self.meta["input"]["pool"])

    def logits(self, log_pdf, batch_size: int = 512) -> np.ndarray:
        """Raw network outputs (N, C) for log PDFs (N, Z) on the model grid (array or h5py dataset)."""
        import torch

        n = len(log_pdf)
        out = np.empty((n, len(self.classes)), dtype=np.float32)
        with torch.inference_mode():
            for i0 in range(0, n, batch_size):
                x = torch.from_numpy(self.transform(log_pdf[i0 : i0 + batch_size]))
                out[i0 : i0 + len(x)] = self.network(x).numpy()
        return out

    def predict(self, log_pdf, grid: ZGrid, where="input", batch_size: int = 512) -> np.ndarray:
        """Calibrated class probabilities (N, C), columns in the order of :attr:`classes`.

        Raises
        ------
        UserError
            When ``grid`` is not the model's grid.
        """
        check_grid(self.grid, grid, where)
        return self.calibration(self.logits(log_pdf, batch_size))

    def columns(self, probs: np.ndarray) -> dict[str, np.ndarray]:
        """Output columns ``p_<class>`` (``p_success`` first)."""
        return {f"p_{name}": probs[:, i] for i, name in enumerate(self.classes)}


def export_model(run_dir, dest, which: str = "best", baseline=None) -> Path:
    """Ship a run as a model directory ``dest`` (:func:`astrolearn.shipped.export_run`), with its baseline.

    ``baseline``: the descriptors + GBM pickle to ship beside it (default: the run's, if any).
    """
    import shutil

    from ...shipped import export_run

    dest = export_run(run_dir, dest, METADATA_FILE, which)
    baseline = Path(baseline) if baseline else Path(run_dir) / BASELINE_FILE
    if baseline.is_file():
        shutil.copyfile(baseline, dest / BASELINE_FILE)
    return dest
