"""Classical fitting: PSFs/s and median relative error per parameter, ours vs maoppy ``psffit``.

    python benchmarks/psf_fit.py [--n 200] [--seed 11]

Both fit the same noisy NIRC2 PSFs (default priors and noise, magnitude 12-14, no static
aberrations, maoppy's circular pupil so that both fit the true model), with the same
inverse-variance weights, from the same start (the prior median), solving flux, background and
shift too. maoppy's ``psffit`` runs one PSF at a time (scipy ``least_squares``, trust region);
ours runs batched Levenberg-Marquardt on the PyTorch model.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import time
import warnings

import numpy as np
import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    from maoppy.instrument import Instrument as MaoppyInstrument
    from maoppy.psffit import psffit
    from maoppy.psfmodel import Psfao

    from astrolearn.psf.fit import PsfFitter
    from astrolearn.psf.instruments import load_instrument
    from astrolearn.psf.metrics import RELATIVE, markdown_table, summary_row
    from astrolearn.psf.model import nm_rms_to_rad2, r0_to_500nm, r0_to_wavelength
    from astrolearn.psf.noise import add_noise, variance_from_image
    from astrolearn.psf.simulate import DEFAULT_PRIORS, DEFAULT_SIM, column_names, draw_parameters, prior_median, render
    from astrolearn.psf.model import PsfaoModel

    inst = load_instrument("nirc2").to_dict()
    inst.update(name="nirc2-circular", pupil={"kind": "circular", "scale": "maoppy"}, static={"kind": "none"})
    inst = load_instrument(inst)
    rng = np.random.default_rng(args.seed)
    cfg = dict(DEFAULT_SIM, static=False)
    truth = draw_parameters(inst, cfg, args.n, rng)
    names = column_names(inst, False)
    images = add_noise(render(PsfaoModel(inst), inst, truth, names), inst, rng)
    weights = 1.0 / variance_from_image(images, inst)

    t0 = time.perf_counter()
    ours = PsfFitter(inst, fit_static=False).fit(images, weights)
    t_ours = (time.perf_counter() - t0) / args.n

    system = MaoppyInstrument(D=inst.diameter_m, occ=inst.obscuration, res=inst.pixel_rad, Nact=inst.nact)
    model = Psfao((inst.npix, inst.npix), system=system, samp=system.samp(inst.wavelength_m), lext=inst.outer_scale_m)
    lam = inst.wavelength_m
    x0 = [r0_to_wavelength(prior_median(DEFAULT_PRIORS["r0_500nm"]), lam), prior_median(DEFAULT_PRIORS["bck"]),
          nm_rms_to_rad2(prior_median(DEFAULT_PRIORS["amp_nm"]), lam), prior_median(DEFAULT_PRIORS["alpha"]),
          prior_median(DEFAULT_PRIORS["ratio"]), 0.0, prior_median(DEFAULT_PRIORS["beta"])]
    mao = np.zeros((args.n, 7))
    t0 = time.perf_counter()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        for i in range(args.n):
            res = psffit(images[i], model, x0, weights=weights[i])
            mao[i] = res.x
    t_mao = (time.perf_counter() - t0) / args.n
    mao[:, 0] = r0_to_500nm(mao[:, 0], lam)

    rows = []
    for j, name in enumerate(["r0", "bck", "amp", "alpha", "ratio", "beta"]):
        t = truth[:, names.index(name)]
        k = ["r0", "bck", "amp", "alpha", "ratio", "theta", "beta"].index(name)
        a = summary_row(name, t, ours.values[:, ours.names.index(name)])
        b = summary_row(name, t, mao[:, k])
        rows.append({"parameter": name, "ours median %": a["median"], "maoppy median %": b["median"],
                     "ours mean %": a["mean"], "maoppy mean %": b["mean"]})
    print(f"# Classical fitting, {args.n} noisy NIRC2 PSFs (circular pupil, no static), seed {args.seed}; "
          f"{platform.machine()}, {torch.get_num_threads()} torch threads")
    print(markdown_table(rows))
    print()
    print("| fitter | s per PSF | PSFs/s |")
    print("|---|---|---|")
    print(f"| astrolearn (batched LM, torch float64) | {t_ours:.3f} | {1 / t_ours:.2f} |")
    print(f"| maoppy psffit (scipy least_squares) | {t_mao:.3f} | {1 / t_mao:.2f} |")
    assert set(RELATIVE) >= {"r0"}


if __name__ == "__main__":
    main()
