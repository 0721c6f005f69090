"""Star / galaxy / quasar classification of spectra: simulator, CNN, baselines (``astrolearn spectra``)."""
