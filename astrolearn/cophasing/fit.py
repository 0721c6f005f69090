"""Classical baseline and photon-noise limit: phase-diversity least squares, Fisher matrix, Cramer-Rao bound.

Least squares (:class:`LsqFitter`): for each measurement, the 12 modes minimising the weighted
squared residual between its images and the model ``F_c psf_c(modes) + b_c`` of
:meth:`Optics.psf`, where the flux ``F_c`` and a residual background ``b_c`` of each channel are
solved linearly at every evaluation. Weights are the inverse noise variance estimated from the
data, ``1 / (max(d, 0) + read_noise^2 + 1)``. L-BFGS (torch, strong-Wolfe line search) runs on
every start of every measurement at once; the first start is at zero (the natural one in a
closed loop), the others are drawn from the priors, and each measurement keeps its lowest
residual. Images of a centro-symmetric pupil without diversity have two equally good solutions
(:func:`optics.twin_modes`), monochromatic ones one per wavelength of piston: the fit returns one.

The other classical baseline, Gerchberg-Saxton, is :mod:`gs`.

Cramer-Rao bound (:func:`fisher`, :func:`crb`): the Fisher information of the modes for pixels
of mean ``mu = photons psf + background`` and variance ``mu + read_noise^2`` (Poisson plus
Gaussian read noise, in the usual Gaussian approximation), ``I = J^T diag(1/var) J`` with the
Jacobian ``J`` of the images by forward-mode autograd. The common piston is not observable
(``I`` is singular along it): the bound is that of the observable modes (the pseudo-inverse).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import UserError
from .optics import Optics, observable


def jacobian(optics: Optics, modes) -> torch.Tensor:
    """(B, C, npix, npix, n_modes) derivative of the images [flux share per nm] at modes (B, n_modes) [nm]."""
    modes = torch.as_tensor(np.asarray(modes, dtype=np.float64))
    n = optics.n_modes
    cols = []
    for k in range(n):
        tangent = torch.zeros_like(modes)
        tangent[:, k] = 1.0
        cols.append(torch.func.jvp(optics.psf, (modes,), (tangent,))[1])
    return torch.stack(cols, dim=-1)


def fisher(optics: Optics, modes, photons, read_noise_e: float = 1.0, background_e: float = 0.0,
           jac: torch.Tensor | None = None) -> np.ndarray:
    """(B, n_modes, n_modes) Fisher information [1/nm^2] of one measurement per row of ``modes``.

    ``photons`` per image (scalar or (B,)); ``jac``: a :func:`jacobian` already computed at these
    modes (it does not depend on the photon count).
    """
    modes = np.asarray(modes, dtype=np.float64)
    jac = jacobian(optics, modes) if jac is None else jac
    n = torch.as_tensor(np.resize(np.asarray(photons, dtype=np.float64), len(modes)))[:, None, None, None]
    psf = optics.psf(torch.as_tensor(modes))
    var = n * psf + background_e + read_noise_e ** 2
    j = (jac * n[..., None]).flatten(1, 3)  # (B, pixels, modes)
    return torch.einsum("bpi,bp,bpj->bij", j, 1.0 / var.flatten(1), j).numpy()


def crb(information: np.ndarray) -> np.ndarray:
    """(B, n_modes) Cramer-Rao standard deviations [nm] of the observable modes (common piston removed).

    The pseudo-inverse of the Fisher matrix, projected on the observable modes.
    """
    information = np.asarray(information, dtype=np.float64)
    n = information.shape[-1]
    p = np.eye(n)
    k = n // 3
    p[:k, :k] -= 1.0 / k  # removes the common piston
    cov = p @ np.linalg.pinv(information, rcond=1e-10, hermitian=True) @ p.T
    return np.sqrt(np.clip(np.diagonal(cov, axis1=-2, axis2=-1), 0, None))


@dataclass
class FitResult:
    """Least-squares estimates: ``modes``, ``std`` (N, n_modes) [nm], ``chi2`` (N,) per pixel."""

    modes: np.ndarray
    std: np.ndarray
    chi2: np.ndarray


class LsqFitter:
    """Phase-diversity least squares on the modes (see the module documentation).

    Parameters
    ----------
    optics : Optics
    priors : dict
        ``piston_nm``, ``tiptilt_nm``: the half-widths of the uniform draws of the extra starts.
    read_noise_e : float
        Read noise [e- RMS], in the weights and the uncertainties.
    starts : int
        Starting points per measurement (the first at zero).
    max_iter : int
        L-BFGS iterations per start.
    seed : int
        Seed of the random starts.
    batch : int
        Measurements fitted together (times ``starts`` problems per L-BFGS run).
    """

    def __init__(self, optics: Optics, priors: dict | None = None, read_noise_e: float = 1.0, starts: int = 8,
                 max_iter: int = 60, seed: int = 0, batch: int = 16):
        self.optics = optics
        self.priors = priors or {"piston_nm": 300.0, "tiptilt_nm": 150.0}
        self.read_noise_e = read_noise_e
        self.starts, self.max_iter, self.seed, self.batch = starts, max_iter, seed, batch

    @classmethod
    def from_meta(cls, meta: dict, **kwargs) -> "LsqFitter":
        """The fitter of a trained model's optics, priors and read noise."""
        noise = meta.get("noise") or {}
        return cls(Optics.from_dict(meta["optics"]), meta.get("priors"), noise.get("read_noise_e", 1.0), **kwargs)

    def check(self, images: np.ndarray, where) -> None:
        want = (self.optics.channels, self.optics.npix, self.optics.npix)
        if images.ndim != 4 or images.shape[1:] != want:
            raise UserError(f"{where}: images of shape {images.shape[1:]}, the optics make {want}")

    def _starts(self, n: int, rng) -> np.ndarray:
        k = self.optics.n_petals
        half = np.r_[np.full(k, self.priors["piston_nm"]), np.full(2 * k, self.priors["tiptilt_nm"])]
        x = rng.uniform(-1, 1, (n, self.starts, 3 * k)) * half
        x[:, 0] = 0.0
        return x

    def _chi2(self, modes, data, weights):
        """(P,) weighted squared residual per problem, flux and background of each channel solved linearly."""
        psf = self.optics.psf(modes)
        w = weights
        # Normal equations of min sum w (d - F p - b)^2 in (F, b), per problem and channel.
        sw, sp, sd = w.sum((-2, -1)), (w * psf).sum((-2, -1)), (w * data).sum((-2, -1))
        spp, spd = (w * psf * psf).sum((-2, -1)), (w * psf * data).sum((-2, -1))
        det = (spp * sw - sp * sp).clamp(min=1e-30)
        flux = (spd * sw - sp * sd) / det
        back = (spp * sd - sp * spd) / det
        resid = data - flux[..., None, None] * psf - back[..., None, None]
        return (w * resid ** 2).sum((-3, -2, -1))

    def fit(self, images: np.ndarray, progress: bool = False, with_std: bool = True) -> FitResult:
        """Fit images (N, C, npix, npix) [e-]; returns the best start of each measurement.

        ``with_std``: also the uncertainties (:meth:`uncertainty`, about 0.1 s per measurement);
        else NaN.
        """
        from tqdm import tqdm

        images = np.asarray(images, dtype=np.float64)
        self.check(images, "images")
        rng = np.random.default_rng(self.seed)
        starts = self._starts(len(images), rng)
        best = np.zeros((len(images), self.optics.n_modes))
        chi2 = np.zeros(len(images))
        n_pix = images[0].size
        scale = torch.tensor(100.0)  # nm per optimisation unit: the variables are of order one
        for lo in tqdm(range(0, len(images), self.batch), desc="fit", unit="batch", disable=not progress):
            d = torch.as_tensor(images[lo:lo + self.batch], dtype=torch.float32)
            b, s = len(d), self.starts
            data = d[:, None].expand(b, s, *d.shape[1:]).reshape(b * s, *d.shape[1:])
            weights = 1.0 / (data.clamp(min=0) + self.read_noise_e ** 2 + 1.0)
            x = torch.tensor(starts[lo:lo + b].reshape(b * s, -1) / 100.0, dtype=torch.float32, requires_grad=True)
            opt = torch.optim.LBFGS([x], lr=1.0, max_iter=self.max_iter, history_size=20,
                                    line_search_fn="strong_wolfe", tolerance_grad=1e-9, tolerance_change=1e-12)

            def closure():
                opt.zero_grad()
                loss = self._chi2(x * scale, data, weights).sum() / n_pix
                loss.backward()
                return loss

            opt.step(closure)
            with torch.no_grad():
                c = self._chi2(x * scale, data, weights).reshape(b, s)
                pick = c.argmin(1)
                modes = (x * scale).reshape(b, s, -1)[torch.arange(b), pick]
            best[lo:lo + b] = modes.double().numpy()
            chi2[lo:lo + b] = c[torch.arange(b), pick].numpy() / n_pix
        best = observable(best)
        std = self.uncertainty(images, best) if with_std else np.full_like(best, np.nan)
        return FitResult(best, std, chi2)

    def uncertainty(self, images: np.ndarray, modes: np.ndarray) -> np.ndarray:
        """(N, n_modes) standard deviations [nm]: the Cramer-Rao bound at the estimate and measured flux."""
        photons = images.sum(axis=(-2, -1)).mean(1)
        return crb(fisher(self.optics, modes, photons, self.read_noise_e))
