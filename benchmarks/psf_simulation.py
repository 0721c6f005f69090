"""Simulation throughput: PSFs/s at 128x128, ours (batched torch) vs maoppy, same machine, same run.

    python benchmarks/psf_simulation.py [--n 256]

Both compute the same noiseless PSFAO19 PSFs on a circular pupil (maoppy's geometry) for the
NIRC2 preset's optics; ours is also timed with the generated Keck pupil and static modes.
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings

import numpy as np
import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=256)
    args = ap.parse_args()
    from maoppy.instrument import Instrument as MaoppyInstrument
    from maoppy.psfmodel import Psfao

    from astrolearn.psf.instruments import load_instrument
    from astrolearn.psf.model import PsfaoModel, r0_to_wavelength
    from astrolearn.psf.simulate import DEFAULT_SIM, column_names, draw_parameters, render

    nirc2 = load_instrument("nirc2")
    circ = nirc2.to_dict()
    circ.update(name="nirc2-circular", pupil={"kind": "circular", "scale": "maoppy"}, static={"kind": "none"})
    circ = load_instrument(circ)
    rng = np.random.default_rng(0)
    params = draw_parameters(circ, dict(DEFAULT_SIM, static=False), args.n, rng)
    psd = params[:, :7].copy()
    psd[:, 0] = r0_to_wavelength(psd[:, 0], circ.wavelength_m)

    system = MaoppyInstrument(D=circ.diameter_m, occ=circ.obscuration, res=circ.pixel_rad, Nact=circ.nact)
    mao = Psfao((128, 128), system=system, samp=system.samp(circ.wavelength_m), lext=circ.outer_scale_m)
    n_mao = min(args.n, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        for p, dx, dy in zip(psd[:n_mao], params[:n_mao, -4], params[:n_mao, -3]):
            mao(list(p), dx=dx, dy=dy)
        mao_rate = n_mao / (time.perf_counter() - t0)

    rows = [("maoppy Psfao (numpy, one by one), circular pupil", mao_rate)]
    for label, inst, dtype, static in [
        ("astrolearn float64, circular pupil", circ, torch.float64, False),
        ("astrolearn float32, circular pupil", circ, torch.float32, False),
        ("astrolearn float32, Keck pupil + 9 static modes (simulator default)", nirc2, torch.float32, True),
    ]:
        model = PsfaoModel(inst, dtype=dtype)
        p = draw_parameters(inst, dict(DEFAULT_SIM, static=static), args.n, rng)
        names = column_names(inst, static)
        render(model, inst, p[:8], names)  # warm-up
        t0 = time.perf_counter()
        render(model, inst, p, names)
        rows.append((label, args.n / (time.perf_counter() - t0)))

    print(f"# PSF simulation throughput, 128x128 noiseless PSFAO19 PSFs; {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")
    print("| method | PSFs/s | x maoppy |")
    print("|---|---|---|")
    for label, rate in rows:
        print(f"| {label} | {rate:.1f} | {rate / mao_rate:.1f} |")


if __name__ == "__main__":
    main()
