"""Redshift reliability: is the engine's redshift right? A 1D CNN on the log PDF, and baselines.

Modules
-------
labels       success / failure (classical, Euclid window) and success / confusion / failure
descriptors  the 13 zPDF descriptors of Jamal et al. (2018) for the gradient-boosting baseline
classifier   network input, calibration, model files, :class:`ReliabilityModel` (grid-checked)
dataset      the engine's outputs as :class:`Estimates`, training shards
train        CNN training through the common engine, calibration, descriptor baseline
curves       purity / completeness against the threshold, operating points, ROC, calibration
report       ``evaluate-reliability``: CSV, PNG and Markdown comparison of the methods
predict      ``reliability.csv`` and the estimate + reliability chain (``run``)
synthetic    toy PDFs for tests and timing
cli          ``register_verbs``: ``train``, ``predict``, ``evaluate-reliability``, ``run``
"""
