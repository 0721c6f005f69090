"""Choose between NISP spectrum classifiers on a fresh validation set (not the benchmark's test set).

    python benchmarks/spectra_select.py RUN_DIR [RUN_DIR ...]

Simulates 20 000 NISP spectra with seed 1100 (used by no training and not the test seed 1000 of
``spectra_classes.py``) and prints, for the shipped ``nisp`` model and each run, the accuracy
over all spectra and in the goal subset (continuum S/N >= 3 or line S/N >= 5), the NLL of the
calibrated probabilities, and the goal subset's purity and completeness per class
(GALAXY, STAR, QSO).
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from spectra_classes import simulate_held_out
from timing import threads
from astrolearn.spectra.classifier import SpectraClassifier, network_input
from astrolearn.spectra.evaluate import purity_completeness
cfg, flux, noise, truth = simulate_held_out("nisp", 20000, 1100)
ivar = 1 / noise.astype(np.float64) ** 2
true = truth["label"].astype(int)
good = (truth["snr_cont"] >= 3) | (truth["snr_line"] >= 5)
x = network_input(flux, ivar)
for name in ["nisp"] + sys.argv[1:]:
    clf = SpectraClassifier(name)
    with threads(1):
        p = clf.calibration(clf.logits(x))
    nll = -np.mean(np.log(np.clip(p[np.arange(len(true)), true], 1e-12, 1)))
    pur, comp = purity_completeness(true[good], p[good].argmax(1))
    print(f"{name}: accuracy all {np.mean(p.argmax(1) == true):.4f}, goal subset {np.mean(p[good].argmax(1) == true[good]):.4f}, "
          f"NLL {nll:.4f}; goal-subset purity {np.round(pur, 4)}, completeness {np.round(comp, 4)}")
