"""Diagnosis: where the chi2 difference between the engine's redshift and redrock's accrues.

For one DESI coadd and its redrock file (HDU ``REDSHIFTS``), runs the engine (``--zrange``,
default 0-4: Lyman alpha enters the blue arm at z = 1.96), then refits the model (continuum
templates times the IGM transmission + emission-line groups, float64 NNLS) at the engine's
best redshift and at redrock's, and prints

- chi2 of both fits and at the engine's other candidates, and the share of each continuum/line component (line groups refitted
  without the minor groups: what they absorb);
- where chi2(redrock z) - chi2(engine z) accrues: per arm, per 500 A window, and the 40 A
  window that holds most of it;
- the emission lines actually in the spectrum: every matched-filter peak above S/N 5, and the
  flux of each catalogue line expected at both redshifts (joint fit of Gaussians of the
  strongest line's width and of the continuum templates), so that the line identifications
  can be checked against the model's fixed ratios (e.g. [OIII] 4960/5008 = 1/2.98, atomic);
- the strongest line's profile: single Gaussian vs skewed Gaussian (Lyman-alpha-like red
  wing) vs the [OII] doublet, and the continuum on both sides of it and below the Lyman limit
  were it Lyman alpha.

Usage::

    python benchmarks/redshift_desi_diagnosis.py ../shared/data/desi/coadd-special-dark-27247.fits \\
        ../shared/data/desi/redrock-special-dark-27247.fits
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measured import CLI, ENGINE  # noqa: E402
from timing import commit, machine, results_marker  # noqa: E402

#: The code the printed result measures (benchmarks/check_results.py).
MEASURED = [*ENGINE, *CLI, "benchmarks/redshift_desi_diagnosis.py"]

C_KMS = 299792.458


def arm_labels(path) -> np.ndarray:
    """Arm letter of each pixel, in the order of :func:`astrolearn.redshift.io.read_desi_coadd`."""
    from astropy.io import fits

    with fits.open(path, memmap=False) as hdul:
        arms = [a for a in "BRZ" if f"{a}_FLUX" in hdul]
        waves = [np.asarray(hdul[f"{a}_WAVELENGTH"].data, dtype=np.float64) for a in arms]
    labels = np.concatenate([np.full(w.size, a) for a, w in zip(arms, waves)])
    return labels[np.argsort(np.concatenate(waves), kind="stable")]


def fit_at(model, flux, ivar, z, keep=None):
    """Float64 NNLS fit of the model at ``z``: per-pixel chi2, coefficients, column names."""
    from scipy.optimize import nnls

    A, names = model.matrix(z)
    cols = list(range(len(names))) if keep is None else [i for i, n in enumerate(names) if n in keep]
    s = np.sqrt(ivar)
    x, _ = nnls(A[:, cols] * s[:, None], flux * s)
    return ((flux - A[:, cols] @ x) * s) ** 2, dict(zip([names[i] for i in cols], x))


def line_fluxes(model, wave, flux, ivar, z, sigma_v):
    """Flux and error of every catalogue line observable at ``z``, fitted jointly.

    Weighted linear least squares (fluxes may be negative) of one Gaussian per line (width:
    LSF (+) ``sigma_v`` [km/s]) plus the model's continuum templates at ``z``; blended lines
    share their flux through the covariance, and a line's wing does not bias its neighbour.
    """
    from astrolearn.redshift.lines import CATALOGUE as LINES

    names = [k for k, lam in sorted(LINES.items(), key=lambda kv: kv[1])
             if wave[0] + 40 < lam * (1 + z) < wave[-1] - 40]
    cols = []
    for k in names:
        mu = LINES[k] * (1 + z)
        sig = np.hypot(np.interp(mu, wave, model.lsf_sigma), mu * sigma_v / C_KMS)
        cols.append(np.exp(-0.5 * ((wave - mu) / sig) ** 2) / (np.sqrt(2 * np.pi) * sig))
    A, tnames = model.matrix(z)
    A = np.column_stack(cols + [A[:, i] for i, n in enumerate(tnames) if n in model.templates.names])
    G = A.T @ (A * ivar[:, None])
    cov = np.linalg.pinv(G)
    c = cov @ (A.T @ (ivar * flux))
    return {k: (float(c[i]), float(np.sqrt(cov[i, i]))) for i, k in enumerate(names)}


def band_mean(wave, flux, ivar, lo, hi):
    """Inverse-variance weighted mean flux over [lo, hi) [Angstrom] and its error."""
    sel = (wave >= lo) & (wave < hi)
    w = ivar[sel].sum()
    return float((flux[sel] * ivar[sel]).sum() / w), float(1 / np.sqrt(w))


def line_peaks(wave, flux, ivar, sigma=2.5, threshold=5.0):
    """Observed wavelengths and S/N of matched-filter emission peaks (Gaussian of ``sigma`` A)."""
    from scipy.ndimage import median_filter

    step = float(np.median(np.diff(wave)))
    k = np.exp(-0.5 * (np.arange(-8, 9) * step / sigma) ** 2)
    resid = flux - median_filter(flux, 101, mode="nearest")
    snr = np.convolve(resid * ivar, k, "same") / np.sqrt(np.convolve(ivar, k * k, "same"))
    return [(wave[i], snr[i]) for i in range(5, wave.size - 5)
            if snr[i] > threshold and snr[i] == snr[i - 5 : i + 6].max()]


def profile_fits(wave, flux, ivar, lsf, lam):
    """Fits of the line at ``lam``: single Gaussian, skewed Gaussian, [OII] doublet.

    Returns {name: (chi2, parameters, errors)} (parameters after the linear continuum: flux,
    centre [A] or 1 + z, sigma [A] or sigma_v [km/s], then skewness or 3730/3727 ratio) and
    the number of pixels.
    """
    from scipy.optimize import least_squares
    from scipy.special import erf

    from astrolearn.redshift.lines import CATALOGUE as LINES

    sel = np.abs(wave - lam) < 50
    x, y, e = wave[sel], flux[sel], 1 / np.sqrt(ivar[sel])
    res = np.interp(lam, wave, lsf)
    scale = float(np.max(y))

    def gauss(mu, sig):
        return np.exp(-0.5 * ((x - mu) / sig) ** 2) / (np.sqrt(2 * np.pi) * sig)

    def single(p):
        return p[0] + p[1] * (x - lam) + p[2] * gauss(p[3], p[4])

    def skewed(p):
        # skew-normal: p[5] > 0 is a red wing (as Lyman alpha absorbed on its blue side)
        return p[0] + p[1] * (x - lam) + p[2] * gauss(p[3], p[4]) * (1 + erf(p[5] * (x - p[3]) / (p[4] * np.sqrt(2))))

    l1, l2 = LINES["OII3727"], LINES["OII3730"]

    def oii(p):  # p[3]: 1 + z, p[4]: sigma_v [km/s], p[5]: 3730 / 3727 flux ratio
        s1, s2 = (np.hypot(res, l * p[3] * p[4] / C_KMS) for l in (l1, l2))
        return p[0] + p[1] * (x - lam) + p[2] / (1 + p[5]) * (gauss(l1 * p[3], s1) + p[5] * gauss(l2 * p[3], s2))

    a0 = scale * 5
    out = {}
    for name, fn, p0, lo, hi in (
            ("single Gaussian", single, [0, 0, a0, lam, 3], [-scale, -1, 0, lam - 10, 0.3],
             [scale, 1, 50 * a0, lam + 10, 20]),
            ("skewed Gaussian", skewed, [0, 0, a0, lam, 4, 1], [-scale, -1, 0, lam - 10, 0.3, -20],
             [scale, 1, 50 * a0, lam + 10, 20, 20]),
            ("[OII] doublet, free ratio", oii, [0, 0, a0, lam / 3728.5, 100, 1.3],
             [-scale, -1, 0, (lam - 10) / 3728.5, 0, 0.3], [scale, 1, 50 * a0, (lam + 10) / 3728.5, 1000, 1.5])):
        r = least_squares(lambda p: (y - fn(p)) / e, p0, bounds=(lo, hi))
        err = np.sqrt(np.diag(np.linalg.inv(r.jac.T @ r.jac)))
        out[name] = (2 * r.cost, r.x, err)
    return out, sel.sum()


def main(argv=None):
    import torch

    from astropy.io import fits

    from astrolearn.redshift import io as rio
    from astrolearn.redshift.engine import EngineConfig, RedshiftEngine, SpectralModel
    from astrolearn.redshift.igm import LYMAN_ALPHA, LYMAN_LIMIT
    from astrolearn.redshift.lines import CATALOGUE as LINES, DEFAULT_GROUPS
    from astrolearn.redshift.pdf import ZGrid

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("coadd")
    ap.add_argument("redrock")
    ap.add_argument("--zrange", type=float, nargs=2, default=(0.0, 4.0))
    args = ap.parse_args(argv)

    print(results_marker("redshift_desi_diagnosis", MEASURED))
    print(f"{Path(args.coadd).name}: commit {commit()}; {machine()}")
    sp = rio.read_desi_coadd(args.coadd)
    ref = fits.getdata(args.redrock, "REDSHIFTS")
    z_rr = float(ref["Z"][0])
    print(f"redrock: {ref['SPECTYPE'][0]} z = {z_rr:.5f} ZWARN {ref['ZWARN'][0]} DELTACHI2 {ref['DELTACHI2'][0]:.0f} "
          f"chi2 {ref['CHI2'][0]:.0f} over {ref['NPIXELS'][0]} pixels")
    # What the target is: the observation and the imaging behind its selection (none for special
    # programmes); older reductions lack some of these columns.
    fibermap = fits.getdata(args.coadd, "FIBERMAP")
    fm = {k: fibermap[k][0] for k in fibermap.columns.names}
    fields = [("exposures", "COADD_NUMEXP", "{}"), ("nights", "COADD_NUMNIGHT", "{}"), ("tiles", "COADD_NUMTILE", "{}"),
              ("exposure h", "COADD_EXPTIME", "{:.1f}", 1 / 3600), ("first MJD", "MIN_MJD", "{:.0f}"),
              ("last MJD", "MAX_MJD", "{:.0f}"), ("Legacy Surveys g flux [nanomaggies]", "FLUX_G", "{:.3g}"),
              ("r", "FLUX_R", "{:.3g}"), ("z", "FLUX_Z", "{:.3g}"), ("brick", "BRICKNAME", "{!r}"),
              ("PRIORITY_INIT", "PRIORITY_INIT", "{}")]
    print(f"target: RA {fm['TARGET_RA']:.4f} Dec {fm['TARGET_DEC']:.4f}; " + ", ".join(
        f"{label} {fmt.format(fm[key] * scale[0] if scale else fm[key])}" for label, key, fmt, *scale in fields if key in fm))
    eng = RedshiftEngine(sp.wave, sp.lsf_sigma, EngineConfig(grid=ZGrid(*args.zrange)), pixel_width=sp.pixel_width)
    t0 = time.perf_counter()
    res = eng.run(sp.flux, sp.ivar)
    seconds = time.perf_counter() - t0
    z_al = float(res.z[0])
    print(f"engine ({seconds:.1f} s, {eng.workers} worker threads, z {args.zrange[0]:g}-{args.zrange[1]:g}, "
          f"{eng.grid.z.size} redshifts, stride {eng.stride}):")
    print(f"engine:  z = {z_al:.6f} Dz {res.z_err[0]:.2g} z_proba {res.z_proba[0]:.6f} chi2 {res.chi2_min[0]:.1f} over {res.npix[0]} "
          f"pixels; candidates {np.round(res.candidates.z[0], 5)} probabilities {res.candidates.proba[0]}")

    # float64 refits in 1e-17 erg/s/cm2/A (DESI's unit), so that coefficients read as line fluxes
    flux, ivar = sp.flux[0] * 1e17, sp.ivar[0] * 1e-34
    model = SpectralModel(sp.wave, sp.lsf_sigma, sp.pixel_width, dtype=torch.float64)
    c_al, x_al = fit_at(model, flux, ivar, z_al)
    c_rr, x_rr = fit_at(model, flux, ivar, z_rr)
    print(f"\nrefit chi2: {c_al.sum():.1f} at engine z, {c_rr.sum():.1f} at redrock z "
          f"(difference {c_rr.sum() - c_al.sum():+.1f})")
    print("refit chi2 at the engine's other candidates: " + ", ".join(
        f"z = {zc:.5f} {fit_at(model, flux, ivar, zc)[0].sum():.1f}" for zc in res.candidates.z[0][1:] if np.isfinite(zc)))
    for z, x in ((z_al, x_al), (z_rr, x_rr)):
        lines = {k: round(float(v), 2) for k, v in x.items() if v > 0 and k not in model.templates.names}
        main_group = max(lines, key=lines.get) if lines else None
        msg = ""
        if main_group:
            keep = {main_group} | set(model.templates.names)
            only, _ = fit_at(model, flux, ivar, z, keep)
            fitted = c_al if z == z_al else c_rr
            msg = f"; the groups other than {main_group} absorb {only.sum() - fitted.sum():.1f} of chi2"
        print(f"  z = {z:.5f}: line fluxes [1e-17 erg/s/cm2] {lines}{msg}")

    d = c_rr - c_al
    arms = arm_labels(args.coadd)
    print("\nchi2(redrock z) - chi2(engine z) per arm: "
          + ", ".join(f"{a} {d[arms == a].sum():+.1f} ({(arms == a).sum()} px)" for a in "BRZ" if (arms == a).any()))
    edges = np.arange(3500.0, 10000.0, 500.0)
    print("per 500 A window: " + ", ".join(f"{a:.0f}-{a + 500:.0f} {d[(sp.wave >= a) & (sp.wave < a + 500)].sum():+.1f}"
                                             for a in edges if ((sp.wave >= a) & (sp.wave < a + 500)).any()))
    near = np.zeros(sp.wave.size, dtype=bool)
    parts = []
    for k, lam0 in sorted(LINES.items(), key=lambda kv: kv[1]):
        for z in (z_al, z_rr):
            sel = np.abs(sp.wave - lam0 * (1 + z)) < 15.0
            if abs(d[sel & ~near].sum()) > 5.0:
                parts.append(f"{k} at z = {z:.5f} ({lam0 * (1 + z):.0f} A) {d[sel & ~near].sum():+.1f}")
            near |= sel
    print("within 15 A of the catalogue lines of either redshift: " + ", ".join(parts)
          + f"; all other pixels {d[~near].sum():+.1f}")

    peaks = line_peaks(sp.wave, flux, ivar)
    print("\nemission peaks above S/N 5 (matched filter, sigma 2.5 A): "
          + ", ".join(f"{w:.1f} A (S/N {s:.0f})" for w, s in peaks))
    if not peaks:
        return
    lam = max(peaks, key=lambda p: p[1])[0]
    fits_, n = profile_fits(sp.wave, flux, ivar, sp.lsf_sigma, lam)
    print(f"profile of the {lam:.1f} A line ({n} pixels):")
    for name, (chi2, p, err) in fits_.items():
        print(f"  {name:26s} chi2 {chi2:6.1f}; " + ", ".join(f"{v:.4g}+-{e:.2g}" for v, e in zip(p[2:], err[2:])))
    sig, lsf = fits_["single Gaussian"][1][4], np.interp(lam, sp.wave, sp.lsf_sigma)
    sigma_v = C_KMS * np.sqrt(max(sig**2 - lsf**2, 0.0)) / lam
    print(f"  line sigma {sig:.2f} A (model: LSF {lsf:.2f} A (+) {eng.config.vdisp:.0f} km/s = "
          f"{model.line_sigma([lam])[0]:.2f} A); intrinsic {sigma_v:.0f} km/s")
    z_lya = lam / LYMAN_ALPHA - 1
    bands = (("below the Lyman limit", sp.wave[0], LYMAN_LIMIT * (1 + z_lya)),
             ("blueward of the line", lam - 650, lam - 15), ("redward of the line", lam + 15, lam + 555))
    print(f"continuum if the line is Lyman alpha (z = {z_lya:.3f}), weighted mean flux [1e-17 erg/s/cm2/A]: "
          + ", ".join(f"{name} ({a:.0f}-{b:.0f} A) {mean:.3f} +- {err:.3f}"
                      for name, a, b in bands for mean, err in [band_mean(sp.wave, flux, ivar, a, b)]))
    for z in (z_al, z_rr):
        print(f"catalogue lines expected at z = {z:.5f} (flux [1e-17 erg/s/cm2], sigma_v {sigma_v:.0f} km/s):")
        measured = line_fluxes(model, sp.wave, flux, ivar, z, sigma_v)
        print("  " + "; ".join(f"{k} {LINES[k] * (1 + z):.0f} A {f:.2f}+-{e:.2f}" for k, (f, e) in measured.items()))
        for g in DEFAULT_GROUPS:  # fixed ratios of the model's groups, against the data
            ks = [k for k in g.lines if k in measured]
            main_line = max(ks, key=lambda k: g.ratios[g.lines.index(k)]) if ks else None
            if len(ks) < 2 or measured[main_line][0] < 5 * measured[main_line][1]:
                continue
            f0 = measured[main_line][0]
            for k in ks:
                blended = abs(LINES[k] - LINES[main_line]) * (1 + z) < 3 * model.line_sigma([LINES[k] * (1 + z)])[0]
                if k == main_line or blended:  # a blend is one measurement, not a ratio
                    continue
                want = g.ratios[g.lines.index(k)] / g.ratios[g.lines.index(main_line)]
                got, err = measured[k][0] / f0, measured[k][1] / f0
                print(f"  group {g.name}: {k}/{main_line} = {got:.3f} +- {err:.3f}, model {want:.3f} "
                      f"({(got - want) / err:+.1f} sigma)")


if __name__ == "__main__":
    main()
