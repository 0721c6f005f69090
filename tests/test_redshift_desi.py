"""Real DESI coadds (../shared/data/desi) end to end against redrock: ~3-5 s each on two cores.

``--zrange 0 1.5`` (9163 redshifts) covers both galaxies and keeps the runs short; the grid
step and the engine settings are the defaults.
"""

import numpy as np
from astropy.io import fits

from astrolearn.cli import main


def estimate(shared_data, tmp_path, name):
    """Run ``astrolearn redshift estimate`` on one coadd: (first CSV row as a dict, redrock row)."""
    coadd = shared_data / "desi" / f"coadd-{name}.fits"
    ref = fits.getdata(shared_data / "desi" / f"redrock-{name}.fits", "REDSHIFTS")[0]
    out = tmp_path / name
    assert main(["redshift", "estimate", str(coadd), "--zrange", "0", "1.5", "--out", str(out), "--quiet"]) == 0
    head, row = (line.split(",") for line in (out / "redshifts.csv").read_text().splitlines()[:2])
    row = dict(zip(head, row))
    assert int(row["targetid"]) == int(ref["TARGETID"])
    proba = np.array([float(row[f"proba_cand{k}"]) for k in range(1, 6)])
    assert np.all((proba >= 0) & (proba <= 1)) and proba.sum() <= 1.0  # probabilities, never 1 + 5e-13
    return row, ref


def test_desi_coadd_agrees_with_redrock(shared_data, tmp_path):
    # bright emission-line galaxy (redrock DELTACHI2 1.5e5)
    row, ref = estimate(shared_data, tmp_path, "4-80613-thru20210324")
    z, zrr = float(row["z"]), float(ref["Z"])
    assert abs(z - zrr) < 0.003 * (1 + zrr)
    assert 0.9 < float(row["z_proba"]) <= 1.0
    assert 0 < float(row["z_err"]) < 1e-4


def test_desi_single_line_coadd_is_not_read_as_oiii_without_4960(shared_data, tmp_path):
    """Faint coadd whose only line (5045 A, S/N 35) redrock reads as [OIII] 5008 at z = 0.0073.

    [OIII] 4960 / 5008 is 1 / 2.98 (atomic physics) and the data have 0.02 +- 0.03 at 4996 A
    (benchmarks/redshift_desi_diagnosis.py; benchmarks/RESULTS.md): within 0 < z < 1.5 the
    engine's model, which ties the doublet, identifies the line as [OII] 3727/3730 (z = 0.353)
    and keeps redrock's redshift as its second, negligible candidate.
    """
    row, ref = estimate(shared_data, tmp_path, "special-dark-27247")
    z, zrr = float(row["z"]), float(ref["Z"])
    assert abs(z - 0.3530) < 0.003 * 1.353
    assert abs(float(row["z_cand2"]) - zrr) < 0.003 * (1 + zrr)
    assert float(row["proba_cand2"]) < 1e-6
