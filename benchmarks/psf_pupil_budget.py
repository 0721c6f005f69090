"""Pupil error budget: bias of noiseless PSFAO fits when the model's pupil is not the true one.

    OMP_NUM_THREADS=1 python benchmarks/psf_pupil_budget.py [--n 8] [--seed 1]

Noiseless NIRC2 PSFs (the ``nirc2`` preset: 128 px of 9.942 mas at 1.6455 um, no static
aberrations, parameters drawn from the simulator's default priors) are made on a reference
pupil sampled ``REF_PIXELS`` pixels across, then fitted (``PsfFitter``, no static modes) with
a perturbed pupil, one perturbation at a time. For each case: the median signed bias
(fitted / true - 1, in %) of r0, C, A, alpha and beta over the PSFs, and the fits' statuses.

Families (the reference pupil is the one the PSFs were made on):

- ``scale``: the shipped Keck mask, fitted with the mask scaled by 1 + e (``diameter_m`` and the
  number of actuators scaled together, so that the AO cut-off frequency stays the same: only the
  pupil's size changes against the pixel scale).
- ``diameter_m``: the same, but the actuator count kept, so the AO cut-off moves as 1 / D too
  (a wrong ``diameter_m`` in a preset).
- ``sampling``: the Keck mask, the drawn ``keck_hex`` and the circular pupil, each at
  ``REF_PIXELS`` against the same pupil on coarser grids (``min_pixels``; the grid is a whole
  multiple of the FFT grid's pupil, 40 px here).
- ``spiders``, ``gaps``, ``hole``: the drawn ``keck_hex`` pupil of the preset, fitted with its
  spider width, segment gap or central hole changed.
- ``drawn``: the Keck mask, fitted with the drawn ``keck_hex`` pupil (the ``nirc2`` default).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from astrolearn.psf.fit import PsfFitter, status_summary
from astrolearn.psf.instruments import load_instrument
from astrolearn.psf.model import PsfaoModel
from astrolearn.psf.pupils import KECK_CENTRAL_HOLE_FLAT_TO_FLAT_M, KECK_SPIDER_WIDTH_M
from astrolearn.psf.simulate import DEFAULT_SIM, column_names, draw_parameters, render

REF_PIXELS = 480  # reference pupil sampling [pixels across D]: 12 x the FFT grid's 40
PARAMS = {"r0": "r0", "C": "bck", "A": "amp", "alpha": "alpha", "beta": "beta"}
MASK = {"kind": "file", "path": "keck_largehex_272px.fits"}
MEASURED = ["astrolearn/psf/fit.py", "astrolearn/psf/instruments.py", "astrolearn/psf/model.py",
            "astrolearn/psf/pupils.py", "benchmarks/psf_pupil_budget.py"]


def nirc2(pupil: dict, min_pixels: int = REF_PIXELS, scale: float = 1.0, keep_cutoff: bool = True,
          base: str = "nirc2"):
    """The ``base`` preset without static modes, with ``pupil`` sampled ``min_pixels`` across.

    ``scale`` multiplies the pupil's size (``diameter_m``); with ``keep_cutoff`` the actuator
    count (nact - 1) too, so that the AO cut-off frequency (nact - 1) / (2 D) stays the same and
    only the pupil changes against the pixel scale; without, the cut-off moves as 1 / D, as when
    a preset's ``diameter_m`` is wrong.
    """
    data = load_instrument(base).to_dict()
    data.update(name=f"{base}-budget", static={"kind": "none"}, pupil=dict(pupil, min_pixels=min_pixels))
    if keep_cutoff:
        data["nact"] = 1 + (data["nact"] - 1) * scale
    data["diameter_m"] *= scale
    return load_instrument(data)


def noiseless_psfs(instrument, n: int, seed: int):
    """Truth table (n, P), its column names and the noiseless images (n, H, W) [e-]."""
    config = dict(DEFAULT_SIM, static=False, noise="none")
    truth = draw_parameters(instrument, config, n, np.random.default_rng(seed))
    names = column_names(instrument, False)
    return truth, names, render(PsfaoModel(instrument, dtype=torch.float64), instrument, truth, names)


def fit_bias(psfs, fit_instrument) -> tuple[dict, dict]:
    """Median signed bias [%] of r0, C, A, alpha, beta fitting ``psfs`` with ``fit_instrument``.

    Returns the biases by parameter (and ``|A|``, the median |error| of A [%] over the PSFs)
    and :func:`status_summary` of the fits.
    """
    truth, names, images = psfs
    weights = np.ones_like(images) / images.max() ** 2  # noiseless: uniform weights
    result = PsfFitter(fit_instrument, fit_static=False, batch=len(images)).fit(images, weights)
    bias = {}
    for label, column in PARAMS.items():
        error = result.values[:, result.names.index(column)] / truth[:, names.index(column)] - 1
        bias[label] = 100 * float(np.median(error))
        if label == "A":  # the typical size of the error on one PSF, whatever its sign
            bias["|A|"] = 100 * float(np.median(np.abs(error)))
    return bias, status_summary(result.status)


def drawn_keck() -> dict:
    """The ``nirc2-drawn`` preset's ``keck_hex`` pupil spec, without its sampling."""
    spec = dict(load_instrument("nirc2-drawn").pupil)
    spec.pop("min_pixels")
    return spec


def cases():
    """(family, case label, reference pupil spec, fit instrument builder) for the whole budget."""
    drawn = drawn_keck()
    out = []
    for e in (-2, -1, -0.5, -0.25, 0.25, 0.5, 1, 2):
        out.append(("scale", f"{e:+g} %", MASK, lambda e=e: nirc2(MASK, scale=1 + e / 100)))
    for e in (-1, 1):
        out.append(("diameter_m", f"{e:+g} %", MASK,
                     lambda e=e: nirc2(MASK, scale=1 + e / 100, keep_cutoff=False)))
    for name, pupil in (("mask", MASK), ("keck_hex", drawn), ("circular", {"kind": "circular"})):
        for m in (1, 2, 3, 4, 6, 8):
            out.append((f"sampling, {name}", f"{40 * m} px", pupil,
                        lambda m=m, p=pupil: nirc2(p, min_pixels=40 * m)))
    for k in (0, 2, 4):
        spiders = dict(drawn, spider_width_m=k * KECK_SPIDER_WIDTH_M)
        out.append(("spiders", f"{k}x ({k * KECK_SPIDER_WIDTH_M * 100:.1f} cm)", drawn,
                    lambda s=spiders: nirc2(s)))
    for gap_cm in (1, 2, 5):
        gaps = dict(drawn, gap_m=gap_cm / 100)
        out.append(("gaps", f"{gap_cm} cm", drawn, lambda g=gaps: nirc2(g)))
    for e in (-10, -5, 5, 10):
        hole = dict(drawn, central_hole_flat_to_flat_m=KECK_CENTRAL_HOLE_FLAT_TO_FLAT_M * (1 + e / 100))
        out.append(("hole", f"{e:+d} %", drawn, lambda h=hole: nirc2(h)))
    out.append(("drawn", "keck_hex (min_pixels 480)", MASK, lambda: nirc2(drawn)))
    out.append(("drawn", "keck_hex (min_pixels 80, the preset)", MASK, lambda: nirc2(drawn, min_pixels=80)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8, help="PSFs per case")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    from timing import commit, machine, results_marker

    start = time.perf_counter()
    references = {}
    print(f"{args.n} noiseless NIRC2 PSFs per case (seed {args.seed}), reference pupil {REF_PIXELS} px across; "
          "median signed bias [%] of fitted / true - 1\n")
    print(results_marker("psf_pupil_budget", MEASURED))
    print("| family | fit pupil | r0 | C | A | alpha | beta | median abs A | fits not converged |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for family, label, ref, build in cases():
        key = repr(ref)
        if key not in references:
            references[key] = noiseless_psfs(nirc2(ref), args.n, args.seed)
        bias, status = fit_bias(references[key], build())
        cells = " | ".join(f"{bias[p]:+.2f}" for p in PARAMS) + f" | {bias['|A|']:.2f}"
        print(f"| {family} | {label} | {cells} | {status['failed']}/{status['n']} {status['text']} |", flush=True)
    print(f"\n{time.perf_counter() - start:.0f} s; commit {commit()}; {machine()}")


if __name__ == "__main__":
    main()
