"""Classical fitting: PSFs/s and median relative error per parameter, ours vs maoppy ``psffit``.

    python benchmarks/psf_fit.py [--n 200] [--seed 11] [--n-timed 8] [--repeats 5] [--threads 1 2]

Both fit the same noisy NIRC2 PSFs (default priors and noise, magnitude 12-14, no static
aberrations, maoppy's circular pupil so that both fit the true model), with the same
inverse-variance weights, from the same start (the prior median), solving flux, background and
shift too. maoppy's ``psffit`` runs one PSF at a time (scipy ``least_squares``, trust region);
ours runs batched Levenberg-Marquardt on the PyTorch model. Accuracy: all ``--n`` PSFs fitted once
by each (with our fits' status: converged, iteration cap, parameter at a bound). Speed: the first
``--n-timed`` PSFs fitted by both through ``benchmarks/timing.py`` (warm-up, interleaved repeats,
median and range), with the same number of threads for both sides.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import warnings

import numpy as np

from timing import commit, compare, machine, markdown, results_marker, threads

#: The code this benchmark measures (benchmarks/check_results.py).
MEASURED = ("astrolearn/psf/fit.py", "astrolearn/psf/model.py", "astrolearn/psf/noise.py")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="PSFs fitted once by each fitter (accuracy)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--n-timed", type=int, default=8, help="PSFs per timed call (speed)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts given to both sides")
    args = ap.parse_args()
    from maoppy.instrument import Instrument as MaoppyInstrument
    from maoppy.psffit import psffit
    from maoppy.psfmodel import Psfao

    from astrolearn.psf.fit import PsfFitter, status_summary
    from astrolearn.psf.instruments import load_instrument
    from astrolearn.psf.metrics import markdown_table, summary_row
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

    fitter = PsfFitter(inst, fit_static=False)
    ours = fitter.fit(images, weights)

    system = MaoppyInstrument(D=inst.diameter_m, occ=inst.obscuration, res=inst.pixel_rad, Nact=inst.nact)
    model = Psfao((inst.npix, inst.npix), system=system, samp=system.samp(inst.wavelength_m), lext=inst.outer_scale_m)
    lam = inst.wavelength_m
    x0 = [r0_to_wavelength(prior_median(DEFAULT_PRIORS["r0_500nm"]), lam), prior_median(DEFAULT_PRIORS["bck"]),
          nm_rms_to_rad2(prior_median(DEFAULT_PRIORS["amp_nm"]), lam), prior_median(DEFAULT_PRIORS["alpha"]),
          prior_median(DEFAULT_PRIORS["ratio"]), 0.0, prior_median(DEFAULT_PRIORS["beta"])]

    def maoppy_fit(n):
        out = np.zeros((n, 7))
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            for i in range(n):
                out[i] = psffit(images[i], model, x0, weights=weights[i]).x
        return out

    mao = maoppy_fit(args.n)
    mao[:, 0] = r0_to_500nm(mao[:, 0], lam)

    rows = []
    for j, name in enumerate(["r0", "bck", "amp", "alpha", "ratio", "beta"]):
        t = truth[:, names.index(name)]
        k = ["r0", "bck", "amp", "alpha", "ratio", "theta", "beta"].index(name)
        a = summary_row(name, t, ours.values[:, ours.names.index(name)])
        b = summary_row(name, t, mao[:, k])
        rows.append({"parameter": name, "ours median %": a["median"], "maoppy median %": b["median"],
                     "ours mean %": a["mean"], "maoppy mean %": b["mean"]})
    print(results_marker("psf_fit", MEASURED))
    print(f"# Classical fitting, {args.n} noisy NIRC2 PSFs (circular pupil, no static), seed {args.seed}; "
          f"commit {commit()}")
    print(f"# {machine()}")
    print(markdown_table(rows))
    print(f"\nastrolearn fit status: {status_summary(ours.status)['text'] or 'all converged'} "
          f"({status_summary(ours.status)['failed']} of {args.n} not converged)")
    k = args.n_timed
    methods = {"maoppy psffit (scipy least_squares, one PSF at a time)": lambda: maoppy_fit(k),
               "astrolearn (batched LM, torch float64)": lambda: fitter.fit(images[:k], weights[:k])}
    for n in args.threads:
        with threads(n):
            timed = compare(methods, k, repeats=args.repeats)
        print(f"\n{n} thread(s) for both sides, {k} PSFs per call:\n")
        print(markdown(timed, "PSFs", "maoppy"))
    print(f"\n# end: {machine()}")


if __name__ == "__main__":
    main()
