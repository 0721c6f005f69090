"""The package code each redshift benchmark measures: the ``code:`` of its result marker.

``benchmarks/check_results.py`` calls a result stale once one of these files changes. The groups
are shared so that the engine's files are listed once for every benchmark that runs the engine.
"""

#: The template-fitting engine: its model (templates, line groups), solver and PDF.
ENGINE = ["astrolearn/redshift/engine.py", "astrolearn/redshift/nnls.py", "astrolearn/redshift/_nnls_kernel.py",
          "astrolearn/redshift/pdf.py", "astrolearn/redshift/lines.py", "astrolearn/redshift/templates.py",
          "astrolearn/redshift/data/kcorrect_continua.fits"]
#: The NISP simulator (the spectra of the simulated benchmarks).
SIMULATOR = ["astrolearn/redshift/simulate.py"]
#: ``redshift estimate``/``run`` around the engine: readers, outputs, the calibrated probability.
CLI = ["astrolearn/redshift/estimate.py", "astrolearn/redshift/io.py", "astrolearn/redshift/readers.py",
       "astrolearn/redshift/calibration.py", "astrolearn/redshift/data/zproba_calibration.json"]
#: The reliability classifier as shipped (``classical``), its prediction and evaluation.
RELIABILITY = ["astrolearn/redshift/reliability/classifier.py", "astrolearn/redshift/reliability/predict.py",
               "astrolearn/redshift/reliability/dataset.py", "astrolearn/redshift/reliability/report.py",
               "astrolearn/redshift/reliability/descriptors.py", "astrolearn/redshift/reliability/curves.py",
               "astrolearn/redshift/models/classical"]


def reusable(out, code) -> bool:
    """Whether the slow outputs in directory ``out`` were made by this very ``code`` (a benchmark's
    cache: reused only while none of the files it depends on has changed since)."""
    from pathlib import Path

    from timing import code_digest

    stamp = Path(out) / "code_digest.txt"
    return stamp.is_file() and stamp.read_text().strip() == code_digest(code)


def made_by(out, code) -> None:
    """Record in ``out`` the digest of the ``code`` that made its outputs (see :func:`reusable`)."""
    from pathlib import Path

    from timing import code_digest

    (Path(out) / "code_digest.txt").write_text(code_digest(code) + "\n")
