"""Simulation throughput: 128x128 noiseless PSFs/s, ours (batched torch) vs maoppy, on the same work.

    python benchmarks/psf_simulation.py [--n 256] [--repeats 5] [--threads 1 2]

Both compute the same noiseless PSFAO19 PSFs (same parameters and shifts) on a circular pupil
(maoppy's geometry) for the NIRC2 preset's optics; ours in float64 and float32, each with its
largest deviation from maoppy's PSFs (fraction of the peak). For each thread count, both sides get
that many threads (torch's, and numpy's native pools through threadpoolctl); timings come from
``benchmarks/timing.py`` (warm-up, interleaved repeats, median and range). The simulator's own
configuration (generated Keck pupil sampled twice finer than the FFT grid, 9 static modes) is
timed too: maoppy has no counterpart of it.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch

from timing import commit, compare, machine, markdown, results_marker, threads

#: The code this benchmark measures (benchmarks/check_results.py).
MEASURED = ("astrolearn/psf/model.py", "astrolearn/psf/pupils.py", "astrolearn/psf/instruments.py")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=256, help="PSFs per call (the same for every method)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts given to both sides")
    args = ap.parse_args()
    from maoppy.instrument import Instrument as MaoppyInstrument
    from maoppy.psfmodel import Psfao

    from astrolearn.psf.instruments import load_instrument
    from astrolearn.psf.model import PsfaoModel, r0_to_wavelength
    from astrolearn.psf.simulate import DEFAULT_SIM, column_names, draw_parameters

    nirc2 = load_instrument("nirc2")
    circ = nirc2.to_dict()
    circ.update(name="nirc2-circular", pupil={"kind": "circular", "scale": "maoppy"}, static={"kind": "none"})
    circ = load_instrument(circ)
    rng = np.random.default_rng(0)
    params = draw_parameters(circ, dict(DEFAULT_SIM, static=False), args.n, rng)
    names = column_names(circ, False)
    psd = params[:, :7].copy()
    psd[:, 0] = r0_to_wavelength(psd[:, 0], circ.wavelength_m)
    dx, dy = params[:, names.index("dx")], params[:, names.index("dy")]

    system = MaoppyInstrument(D=circ.diameter_m, occ=circ.obscuration, res=circ.pixel_rad, Nact=circ.nact)
    mao = Psfao((circ.npix, circ.npix), system=system, samp=system.samp(circ.wavelength_m), lext=circ.outer_scale_m)

    def maoppy_all():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.stack([mao(list(p), dx=x, dy=y) for p, x, y in zip(psd, dx, dy)])

    def ours(model, p, shift_x, shift_y, static=None):
        def call():
            with torch.no_grad():
                return model(p, static=static, dx=shift_x, dy=shift_y)
        return call

    methods = {"maoppy Psfao (numpy, one PSF per call)": maoppy_all}
    deviation = {}
    reference = maoppy_all()
    peak = reference.max(axis=(1, 2))
    for dtype in (torch.float64, torch.float32):
        model = PsfaoModel(circ, dtype=dtype)
        call = ours(model, torch.tensor(psd, dtype=dtype), torch.tensor(dx, dtype=dtype), torch.tensor(dy, dtype=dtype))
        label = f"astrolearn {str(dtype).removeprefix('torch.')}, circular pupil"
        methods[label] = call
        deviation[label] = float((np.abs(call().double().numpy() - reference).max(axis=(1, 2)) / peak).max())
    keck = draw_parameters(nirc2, dict(DEFAULT_SIM, static=True), args.n, rng)
    kn = column_names(nirc2, True)
    kpsd = keck[:, :7].copy()
    kpsd[:, 0] = r0_to_wavelength(kpsd[:, 0], nirc2.wavelength_m)
    static = keck[:, [kn.index(s) for s in nirc2.static_names()]]
    methods["astrolearn float32, Keck pupil + 9 static modes (the simulator's configuration)"] = ours(
        PsfaoModel(nirc2, dtype=torch.float32), torch.tensor(kpsd, dtype=torch.float32),
        torch.tensor(keck[:, kn.index("dx")], dtype=torch.float32), torch.tensor(keck[:, kn.index("dy")], dtype=torch.float32),
        torch.tensor(static, dtype=torch.float32))

    print(results_marker("psf_simulation", MEASURED))
    print(f"# PSF simulation: {args.n} noiseless {circ.npix}x{circ.npix} PSFs per call, {args.repeats} repeats, "
          f"commit {commit()}")
    print(f"# {machine()}")
    print("\nLargest |ours - maoppy| / peak over the PSFs:")
    for label, dev in deviation.items():
        print(f"- {label}: {dev:.2g}")
    for n in args.threads:
        with threads(n):
            rows = compare(methods, args.n, repeats=args.repeats)
        print(f"\n{n} thread(s) for both sides:\n")
        print(markdown(rows, "PSFs", "maoppy"))
    print(f"\n# end: {machine()}")


if __name__ == "__main__":
    main()
