"""The PSF code against its references: generated pupils vs measured masks, the model vs maoppy.

    python benchmarks/psf_references.py [--data ../shared/data]

Prints two results, each with its marker (``benchmarks/check_results.py``):

- ``psf_pupils``: the drawn Keck pupil (``nirc2-drawn``) and the shipped ``nirc2`` pupil (a measured
  mask) against ``keck/keck_pupil_largeHex_272px.fits`` (intersection over union), with the share
  of each mode of ``keck_piston_modes_200px_9modes_lr.fits`` inside the span of each preset's 9
  static modes; the drawn VLT pupil (``irdis-drawn``) and the shipped ``irdis`` one against the
  measured SPHERE Lyot stop (on the reference grids of ``tests/test_pupils.py``);
- ``psf_model_maoppy``: max |ours - maoppy.Psfao| / peak on the parameter sets of
  ``tests/test_psf_model.py`` (same circular pupil and parameters), in float64 and float32.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "tests")]
from timing import commit, machine, results_marker  # noqa: E402

PRESETS = [f"astrolearn/psf/presets/{p}.yaml" for p in ("nirc2", "nirc2-drawn", "irdis", "irdis-drawn")] + \
    ["astrolearn/psf/masks/keck_largehex_272px.fits", "astrolearn/psf/masks/sphere_alc2_lyot_stop_384px.fits"]
PUPILS = ["astrolearn/psf/pupils.py", "astrolearn/psf/instruments.py", *PRESETS, "tests/test_pupils.py",
          "benchmarks/psf_references.py"]
MODEL = ["astrolearn/psf/model.py", "astrolearn/psf/instruments.py", "astrolearn/psf/pupils.py",
         "tests/test_psf_model.py", "benchmarks/psf_references.py"]


def pupils(data: Path) -> None:
    """The drawn presets (``nirc2-drawn``, ``irdis-drawn``: the generated pupils) and the shipped ones
    (``nirc2``, ``irdis``: measured masks since issue 13 section 5) against the reference files, on
    the reference grids of ``tests/test_pupils.py``."""
    from test_pupils import _iou, _on_mask_grid, _read, keck_reference_span

    keck = _read(data / "keck" / "keck_pupil_largeHex_272px.fits")
    stop = _read(data / "vlt" / "ALC2LyotStop_measured.fits") >= 0.5
    print(results_marker("psf_pupils", PUPILS))
    print(f"Commit {commit()}; {machine()}\n")
    print("| preset | IoU with `keck_pupil_largeHex_272px.fits` | share of each mode of "
          "`keck_piston_modes_200px_9modes_lr.fits` in the span of the preset's 9 static modes |\n|---|---|---|")
    for name in ("nirc2-drawn", "nirc2"):
        pupil = _on_mask_grid(name, 272, 136)[2][:272, :272]
        span = keck_reference_span(data, name)
        print(f"| {name} | {_iou(pupil, keck):.3f} | " + ", ".join(f"{v:.3f}" for v in span) + " |")
    print("\n| preset | IoU with the measured SPHERE Lyot stop `ALC2LyotStop_measured.fits` | share of the stop "
          "inside the preset's pupil |\n|---|---|---|")
    for name in ("irdis-drawn", "irdis"):
        ours = _on_mask_grid(name, 384, 192)[2][:384, :384] >= 0.5
        print(f"| {name} | {_iou(ours, stop):.3f} | {(ours & stop).sum() / stop.sum():.3f} |")


def model_vs_maoppy() -> None:
    import torch
    from maoppy.instrument import Instrument as MaoppyInstrument
    from maoppy.psfmodel import Psfao
    from test_psf_model import PARAMS

    from astrolearn.psf.instruments import Instrument
    from astrolearn.psf.model import PsfaoModel

    print("\n" + results_marker("psf_model_maoppy", MODEL))
    print(f"Commit {commit()}; {machine()}\n")
    print("| D [m] | pixel [mas] | wavelength [um] | npix | (r0, C, A, alpha, ratio, theta, beta) | dx, dy | "
          "float64 | float32 |\n|---|---|---|---|---|---|---|---|")
    for D, occ, pix, wl, nact, npix, params, dx, dy in PARAMS:
        system = MaoppyInstrument(D=D, occ=occ, res=pix / 206264806.247, Nact=nact)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference = Psfao((npix, npix), system=system, samp=system.samp(wl * 1e-6), lext=10.0)(
                list(params), dx=dx, dy=dy)
        inst = Instrument(name="c", diameter_m=D, obscuration=occ, pixel_scale_mas=pix, wavelength_um=wl,
                          nact=nact, npix=npix, pupil={"kind": "circular", "scale": "maoppy"})
        errs = []
        for dtype in (torch.float64, torch.float32):
            ours = PsfaoModel(inst, dtype=dtype)(torch.tensor([params], dtype=dtype), dx=dx, dy=dy)[0]
            errs.append(np.abs(ours.double().numpy() - reference).max() / reference.max())
        print(f"| {D} | {pix} | {wl} | {npix} | {params} | {dx}, {dy} | {errs[0]:.2g} | {errs[1]:.2g} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("ASTRO_SHARED_DATA", ROOT.parent / "shared" / "data")))
    args = ap.parse_args(argv)
    pupils(args.data)
    model_vs_maoppy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
