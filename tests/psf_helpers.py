"""Small instruments for fast PSF tests."""

from astrolearn.psf.instruments import Instrument

DETECTOR = {"zero_point_mag": 25.44, "exposure_s": 0.5, "coadds": 50, "read_noise_e": 60.0,
            "sky_mag_arcsec2": 13.6, "gain_e_per_adu": 4.0}


def circular(npix=64, pixel_mas=20.0, wavelength_um=2.2, scale="maoppy", **extra):
    """NIRC2-like instrument with a circular pupil (maoppy geometry); 64 px of 20 mas keep the AO halo in the field."""
    return Instrument(name="circ", diameter_m=10.5, obscuration=0.2311, pixel_scale_mas=pixel_mas,
                      wavelength_um=wavelength_um, nact=21, npix=npix,
                      pupil={"kind": "circular", "scale": scale}, detector=dict(DETECTOR), **extra)
