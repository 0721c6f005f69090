"""Real DESI spectrum: agreement with redrock (slow: ~20-60 s on two cores)."""

import numpy as np
import pytest
from astropy.io import fits

from astrolearn.cli import main


@pytest.mark.slow
def test_desi_coadd_agrees_with_redrock(shared_data, tmp_path):
    coadd = shared_data / "desi" / "coadd-4-80613-thru20210324.fits"
    ref = fits.getdata(shared_data / "desi" / "redrock-4-80613-thru20210324.fits", "REDSHIFTS")
    out = tmp_path / "desi"
    assert main(["redshift", "estimate", str(coadd), "--zrange", "0", "1.5", "--out", str(out), "--quiet"]) == 0
    row = (out / "redshifts.csv").read_text().splitlines()[1].split(",")
    assert int(row[0]) == int(ref["TARGETID"][0])
    z, zrr = float(row[1]), float(ref["Z"][0])
    assert abs(z - zrr) < 0.003 * (1 + zrr)
    assert float(row[3]) > 0.9  # redshift probability
    assert np.isfinite(float(row[2]))
