"""Euclid-like spectroscopic redshifts: NISP simulator, template-fitting engine, evaluation.

Modules
-------
lines      emission-line catalogue, engine line groups, redshift aliases
templates  shipped continuum templates (kcorrect, lines removed), LSF smoothing, dust
simulate   NISP red-grism spectrum simulator (HDF5 shards)
engine     chi2(z) of templates + line groups (batched NNLS), log PDF, candidates
nnls       batched NNLS solvers (compiled Lawson-Hanson on CPU, torch active set anywhere)
pdf        redshift grids, PDF normalisation, priors, candidates (Amazed conventions)
io         spectrum readers (text, FITS batch, DESI coadd, shards) and result writers
readers    survey spectrum files (SDSS/BOSS, 6dFGS, OzDES, LAMOST, APOGEE, JWST msaexp tables)
evaluate   success rates vs Halpha flux / S/N, failure aliases, plots
cli        ``astrolearn redshift simulate|estimate|evaluate``
"""
