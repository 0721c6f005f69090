"""Choose or recalibrate spectrum classifiers on a fresh validation set (not the benchmark's test set).

    python benchmarks/spectra_select.py [--grid nisp|optical] [RUN_DIR ...]
    python benchmarks/spectra_select.py --grid optical --recalibrate

Simulates 20 000 spectra of the grid with seed 1100 (used by no training and not the test seed
1000 of ``spectra_classes.py``) and prints, for the shipped model of the grid and each run, the
accuracy over all spectra and in the goal subset (continuum S/N >= 3 or line S/N >= 5), the NLL
of the calibrated probabilities, and the goal subset's purity and completeness per class
(GALAXY, STAR, QSO).

``--recalibrate`` refits the shipped model's temperature and class biases on the first half of
those spectra (instead of its training run's validation split), prints the reliability of the
old and new probabilities on the second half and writes the new calibration, with its
provenance, into ``astrolearn/spectra/models/<grid>.json``.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from spectra_classes import calibration_rows, simulate_held_out  # noqa: E402
from timing import commit, threads  # noqa: E402

from astrolearn.redshift.reliability.classifier import fit_calibration  # noqa: E402
from astrolearn.spectra.classifier import METADATA_FILE, PACKAGED_DIR, SpectraClassifier, network_input  # noqa: E402
from astrolearn.spectra.evaluate import purity_completeness  # noqa: E402

SEED, N = 1100, 20000

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("runs", nargs="*", help="training run directories to compare with the shipped model")
ap.add_argument("--grid", choices=("nisp", "optical"), default="nisp")
ap.add_argument("--recalibrate", action="store_true")
args = ap.parse_args()
cfg, flux, noise, truth = simulate_held_out(args.grid, N, SEED)
true = truth["label"].astype(int)
good = (truth["snr_cont"] >= 3) | (truth["snr_line"] >= 5)
x = network_input(flux, 1 / noise.astype(np.float64) ** 2)
for name in [args.grid] + args.runs:
    clf = SpectraClassifier(name)
    with threads(1):
        p = clf.calibration(clf.logits(x))
    nll = -np.mean(np.log(np.clip(p[np.arange(len(true)), true], 1e-12, 1)))
    pur, comp = purity_completeness(true[good], p[good].argmax(1))
    print(f"{name}: accuracy all {np.mean(p.argmax(1) == true):.4f}, goal subset "
          f"{np.mean(p[good].argmax(1) == true[good]):.4f}, NLL {nll:.4f}; goal-subset purity {np.round(pur, 4)}, "
          f"completeness {np.round(comp, 4)}")
if args.recalibrate:
    clf = SpectraClassifier(args.grid)
    with threads(1):
        logits = clf.logits(x)
    half = N // 2
    cal = fit_calibration(logits[:half], true[:half])
    print("\n".join(calibration_rows(true[half:], {"shipped": clf.calibration(logits[half:]),
                                                    "refitted": cal(logits[half:])})))
    path = PACKAGED_DIR / args.grid / METADATA_FILE
    meta = json.loads(path.read_text())
    meta["calibration"] = {**cal.to_dict(), "fitted_on": f"{half} spectra simulated with seed {SEED} "
                                                        f"(benchmarks/spectra_select.py --recalibrate, commit {commit()})"}
    path.write_text(json.dumps(meta, indent=1))
    print(f"wrote {path}")
