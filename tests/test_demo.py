from astrolearn.cli import main


def test_demo_runs_every_problem_end_to_end(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--n", "20", "--n-fit", "2", "--n-spectra", "60"]) == 0
    report = (out / "README.md").read_text()
    for heading in ("## PSF", "## Redshift", "## Star / galaxy / QSO classes", "## Petal cophasing", "## Figures"):
        assert heading in report, heading
    # Every linked figure exists, and each problem wrote its tables.
    for line in report.splitlines():
        if line.startswith("- [`") and line.endswith(".png)"):
            assert (out / line.split("](")[1][:-1]).is_file(), line
    for table in ("psf/cnn.csv", "redshift/estimates/redshifts.csv", "spectra/evaluation/classes.csv",
                  "cophasing/cnn/loop.csv", "cophasing/lsq/loop.csv"):
        assert (out / table).is_file(), table
    # The least-squares loop corrects 16 random petal errors far below where they started.
    lsq = [line for line in report.splitlines() if line.startswith("| phase-diversity least squares")][0]
    before, after2 = float(lsq.split("|")[2]), float(lsq.split("|")[4])
    assert after2 < 15 < before
