"""Petal cophasing of a deployable segmented telescope (AZIMOV): optics, estimators, closed loop."""
