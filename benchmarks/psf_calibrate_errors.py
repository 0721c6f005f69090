"""Calibrate a PSF model's predicted uncertainties: ``err_scale`` in its psf_model.json.

    python benchmarks/psf_calibrate_errors.py MODEL [--n 1000] [--seed 7001] [--write]

``MODEL``: a shipped model's name (``nirc2``, ``nirc2-nostatic``, ``irdis``) or a model/run
directory. Simulates ``--n`` noisy frames drawn as the model's training set was (fresh seed: not
a training, validation or test set), fits per target the factor on the network's standard
deviation that gives its pulls a unit standard deviation (:func:`astrolearn.psf.learn.calibrate_err_scale`)
and prints it; ``--write`` stores it as ``err_scale`` in the model's psf_model.json, which
``PsfEstimator.predict`` then applies.
"""

from __future__ import annotations

import argparse
import json


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=7001)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()

    from astrolearn.psf.learn import (METADATA_FILE, PsfEstimator, calibrate_err_scale, locate_model,
                                      simulated_like_training)

    model_dir = locate_model(args.model)
    est = PsfEstimator(model_dir)
    images, truth = simulated_like_training(est.meta, args.n, args.seed)
    scales = calibrate_err_scale(est, images, truth)
    print(json.dumps({"model": str(model_dir), "n": args.n, "seed": args.seed, "err_scale": scales}, indent=1))
    if args.write:
        path = model_dir / METADATA_FILE
        meta = json.loads(path.read_text())
        meta["err_scale"] = scales
        path.write_text(json.dumps(meta, indent=1))
        print(f"wrote err_scale into {path}")


if __name__ == "__main__":
    main()
