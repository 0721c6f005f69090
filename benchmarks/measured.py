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
