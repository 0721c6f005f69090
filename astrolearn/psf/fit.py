"""Classical PSF fitting: weighted non-linear least squares of the PSFAO19 model.

The field's method (maoppy's ``psffit``): minimise ``sum w (flux x PSF(theta) + background -
data)²`` with inverse-variance weights ``w``, here batched on the PyTorch model with a
projected Levenberg-Marquardt solver. The free parameters are the 7 PSD parameters, the static
modes of the instrument (unless disabled), the sub-pixel shift, the flux and the background.
Scale parameters (r0, A, alpha, ratio) are fitted in log; all are kept inside wide bounds. The Jacobian is exact:
forward-mode differentiation for the PSD and shift, an analytic derivative for the static modes.
Fits start from the prior median (a user has no truth), the shift from the image centroid and
the flux/background from a linear least-squares solution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import UserError
from .instruments import Instrument
from .model import PSD_NAMES, PsfaoModel, r0_to_500nm, r0_to_wavelength
from .simulate import DEFAULT_PRIORS, prior_median

# Wide physical bounds at the image wavelength (maoppy's physical bounds, closed above). theta
# has none: the Moffat has period pi in it, so a bound would only stop the fit at an equivalent
# angle (and flag a good fit as at a bound); it is wrapped into [-pi, pi) at the end.
PSD_BOUNDS = {
    "r0": (1e-3, 100.0),
    "bck": (0.0, 10.0),
    "amp": (1e-6, 1e3),
    "alpha": (1e-5, 10.0),
    "ratio": (1e-2, 1e2),
    "theta": (-math.inf, math.inf),
    "beta": (1.01, 5.0),
}
#: Largest change of a log parameter per iteration (trust region). An unbounded early step can
#: throw r0 far up, where the uncorrected halo vanishes and its derivative with it: the fit then
#: stays on that plateau (seen on NIRC2 PSFs with static modes free, 5 of 8 without the limit).
MAX_LOG_STEP = 0.5
LOG_PARAMS = ("r0", "amp", "alpha", "ratio")  # scale parameters; C may reach its bound 0
#: Parameters a Gaussian prior (``PsfFitter.fit(prior=...)``) applies to. Not ratio/theta: the
#: network's ellipse is in another parametrisation, and the data constrain it well.
PRIOR_PARAMS = ("r0", "bck", "amp", "alpha", "beta")
#: chi2_red farther from 1 than this many times its scatter sqrt(2 / dof): the errors are scaled
#: by sqrt(chi2_red) (see ``error_scale``).
CHI2_TOLERANCE_SIGMA = 5.0


def output_names(instrument: Instrument, fit_static: bool) -> list[str]:
    """Columns of a fit/predict table, without the ``_err`` columns."""
    stat = instrument.static_names() if fit_static else []
    return list(PSD_NAMES) + stat + ["flux", "background", "dx", "dy"]


#: Status of a fit that stopped on the convergence criterion, inside the bounds.
CONVERGED = "converged"
#: Status of a fit stopped by ``max_iter`` before converging.
ITERATION_CAP = "iteration_cap"
#: Prefix of the status of a fit that ends with parameters on a bound: ``at_bound:beta`` or
#: ``at_bound:r0,beta``. It takes precedence over ``iteration_cap`` (``niter`` still tells).
AT_BOUND = "at_bound:"


@dataclass
class FitResult:
    """Fitted parameters in output units (see ``output_names``), their 1-sigma errors and status.

    ``status`` (N,): ``converged``, ``iteration_cap`` or ``at_bound:<param>[,<param>]`` (the
    parameters whose final value is on a bound of the fit: its value and error are then not
    the minimum of an unconstrained fit).
    """

    names: list[str]
    values: np.ndarray  # (N, P)
    errors: np.ndarray  # (N, P)
    chi2: np.ndarray  # (N,) reduced chi²
    err_scale: np.ndarray  # (N,) factor applied to the covariance's errors (see ``error_scale``)
    niter: np.ndarray  # (N,)
    models: np.ndarray  # (N, H, W) best-fit images
    status: np.ndarray  # (N,) str

    def table(self) -> dict[str, np.ndarray]:
        cols = {}
        for i, name in enumerate(self.names):
            cols[name] = self.values[:, i]
            cols[f"{name}_err"] = self.errors[:, i]
        cols["chi2_red"] = self.chi2
        cols["err_scale"] = self.err_scale
        cols["niter"] = self.niter
        cols["status"] = self.status
        return cols

    def warning(self) -> str | None:
        """One line on the fits that did not converge (see :func:`status_summary`), or None."""
        summary = status_summary(self.status)
        if summary["failed"] == 0:
            return None
        return f"{summary['failed']} of {summary['n']} fit(s) did not converge: {summary['text']}"


def fit_failed(status) -> np.ndarray:
    """Boolean mask of the fits whose status is not ``converged``."""
    return np.asarray(status).astype(str) != CONVERGED


def status_summary(status) -> dict:
    """Counts of fit statuses.

    Returns
    -------
    dict
        ``n``, ``failed`` (not converged), ``iteration_cap``, ``at_bound`` (fits with some
        parameter on a bound), ``by_parameter`` ({parameter: fits with it on a bound}) and
        ``text``, e.g. "1 at the iteration cap; 3 with a parameter at a bound of the fit (beta 2, r0 1)".
    """
    status = np.asarray(status).astype(str)
    bound = [s[len(AT_BOUND):].split(",") for s in status if s.startswith(AT_BOUND)]
    by_param: dict[str, int] = {}
    for params in bound:
        for p in params:
            by_param[p] = by_param.get(p, 0) + 1
    by_param = dict(sorted(by_param.items(), key=lambda kv: -kv[1]))
    cap = int((status == ITERATION_CAP).sum())
    parts = []
    if cap:
        parts.append(f"{cap} at the iteration cap")
    if bound:
        parts.append(f"{len(bound)} with a parameter at a bound of the fit ("
                     + ", ".join(f"{p} {k}" for p, k in by_param.items()) + ")")
    return {"n": len(status), "failed": int(fit_failed(status).sum()), "iteration_cap": cap,
            "at_bound": len(bound), "by_parameter": by_param, "text": "; ".join(parts) or "none"}


class PsfFitter:
    """Batched weighted least-squares fit of PSFAO19 (+ static modes) to images.

    Parameters
    ----------
    instrument : Instrument
        Instrument at the image wavelength.
    fit_static : bool
        Fit the static modes of the instrument's basis (if it has one).
    priors : dict
        Priors whose medians start the fit (defaults: the simulator's).
    max_iter : int
        Maximum Levenberg-Marquardt iterations.
    tol : float
        Convergence: relative decrease of the cost below ``tol`` on an accepted step.
    batch : int
        PSFs fitted together (memory grows with batch x number of parameters).
    """

    def __init__(self, instrument: Instrument, fit_static: bool = True, priors: dict | None = None,
                 max_iter: int = 100, batch: int = 8, tol: float = 1e-8, dtype=torch.float64, device=None):
        if not fit_static:
            instrument = instrument.without_static()
        self.instrument = instrument
        self.fit_static = fit_static and instrument.n_static > 0
        self.model = PsfaoModel(instrument, dtype=dtype, device=device)
        self.priors = priors or DEFAULT_PRIORS
        self.max_iter = max_iter
        self.tol = tol
        self.batch = batch
        self.dtype = dtype
        self.k_static = self.model.n_static if self.fit_static else 0
        self.names = output_names(instrument, self.fit_static)
        if self.k_static:
            from .pupils import even_modes

            even = torch.as_tensor(even_modes(instrument.static_basis, instrument.pupil_array))
            self.even = even.numpy()
            self.even_start = even.to(dtype) * 0.02 * instrument.wavelength_um * 1e3
        lam_nm = instrument.wavelength_um * 1e3
        lo = [PSD_BOUNDS[n][0] for n in PSD_NAMES] + [-lam_nm / 2] * self.k_static + [-np.inf, -np.inf] + [-20, -20]
        hi = [PSD_BOUNDS[n][1] for n in PSD_NAMES] + [lam_nm / 2] * self.k_static + [np.inf, np.inf] + [20, 20]
        self.is_log = torch.tensor([n in LOG_PARAMS for n in PSD_NAMES] + [False] * (self.k_static + 4))
        lo_t, hi_t = torch.tensor(lo, dtype=dtype), torch.tensor(hi, dtype=dtype)
        self._lo_nat, self._hi_nat = lo_t, hi_t
        self.z_lo = torch.where(self.is_log, lo_t.clamp(min=1e-300).log(), lo_t)
        self.z_hi = torch.where(self.is_log, hi_t.log(), hi_t)

    # Internal parameter vector z: [7 PSD (log where positive), K static nm, flux, bck, dx, dy].
    def _natural(self, z):
        return torch.where(self.is_log, z.exp(), z)

    def start(self, data: torch.Tensor, weights: torch.Tensor, initial: torch.Tensor | None = None) -> torch.Tensor:
        """Starting point: prior median (or ``initial``, (N, P) in output units), linear flux/background."""
        pri = self.priors
        lam = self.instrument.wavelength_m
        from .model import nm_rms_to_rad2

        psd0 = [
            r0_to_wavelength(prior_median(pri["r0_500nm"]), lam),
            prior_median(pri["bck"]),
            nm_rms_to_rad2(prior_median(pri["amp_nm"]), lam),
            prior_median(pri["alpha"]),
            prior_median(pri["ratio"]),
            prior_median(pri["theta"]),
            prior_median(pri["beta"]),
        ]
        n = data.shape[0]
        p = torch.tensor(psd0 + [0.0] * self.k_static + [1.0, 0.0, 0.0, 0.0], dtype=self.dtype).repeat(n, 1)
        dy, dx = _centroid(data, weights)
        p[:, -2], p[:, -1] = dx, dy
        # Even static modes have a zero derivative at 0 (their sign is invisible in focus): start
        # them slightly off zero so the fit can move them; results hold modulo their sign.
        if self.k_static:
            p[:, 7 : 7 + self.k_static] = self.even_start
        if initial is not None:
            p = initial.to(self.dtype).clone()
            p[:, 0] = r0_to_wavelength(p[:, 0], lam)
            if self.k_static:  # keep even modes off their zero-derivative point
                stat = p[:, 7 : 7 + self.k_static]
                small = (self.even_start != 0) & (stat.abs() < self.even_start.abs() / 4)
                stat[small] = (self.even_start / 4).expand_as(stat)[small]
            p = torch.maximum(torch.minimum(p, self._hi_nat), self._lo_nat)
        z = torch.where(self.is_log, p.clamp(min=1e-300).log(), p)
        flux, bck = _linear_flux_background(self._psf(z), data, weights)
        z[:, -4], z[:, -3] = flux, bck
        return z

    def _split(self, z):
        p = self._natural(z)
        k = self.k_static
        static = p[:, 7 : 7 + k] if k else None
        return p[:, :7], static, p[:, 7 + k], p[:, 8 + k], p[:, 9 + k], p[:, 10 + k]

    def _psf(self, z):
        psd, static, _, _, dx, dy = self._split(z)
        return self.model(psd, static=static, dx=dx, dy=dy)

    def _model_image(self, z):
        _, _, flux, bck, _, _ = self._split(z)
        return flux[:, None, None] * self._psf(z) + bck[:, None, None]

    def render(self, images: np.ndarray, weights: np.ndarray, table: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Model images of the parameters in ``table`` (e.g. a CNN's estimate), with their flux and background.

        ``table`` holds the output columns (``self.names``; flux and background are not read): the
        flux [e-] and background [e-/px] of each image are solved by weighted linear least squares
        for the PSF of its parameters, as at the start of a fit. Returns the models (N, H, W) [e-],
        the fluxes (N,) and the backgrounds (N,).
        """
        models, flux, background = [], [], []
        with torch.no_grad():
            for s in range(0, len(images), self.batch):
                d = torch.as_tensor(images[s : s + self.batch], dtype=self.dtype)
                w = torch.as_tensor(weights[s : s + self.batch], dtype=self.dtype)
                z = self.start(d, w, _table_columns(table, self.names, s, self.batch))
                models.append(self._model_image(z))
                flux.append(z[:, -4])
                background.append(z[:, -3])
        return tuple(torch.cat(v).numpy() for v in (models, flux, background))

    def _jacobian(self, z):
        """Model images (B, H, W) and their derivatives w.r.t. z (B, P, H, W)."""
        psd, static, flux, bck, dx, dy = self._split(z)
        b, k = z.shape[0], self.k_static
        if k:
            otf_s, d_otf_s = self.model.static_otf_and_derivatives(static)
        else:
            otf_s = self.model.otf_static0[None].expand(b, -1, -1)
        psf, dpsf = self.model.psf_and_derivatives(psd, dx, dy, otf_s)
        # Chain rule for the parameters fitted in log.
        dpsf[:, :7] *= torch.where(self.is_log[:7], psd, torch.ones_like(psd))[:, :, None, None]
        cols = [dpsf[:, :7]]
        if k:
            otf_rest = self.model.otf(psd, dx=dx, dy=dy, otf_static=torch.ones_like(otf_s))
            cols.append(self.model.otf_to_psf(otf_rest[:, None] * d_otf_s))
        f = flux[:, None, None, None]
        jac = torch.cat([f * torch.cat(cols, dim=1), psf[:, None], torch.ones_like(psf)[:, None], f * dpsf[:, 7:9]], dim=1)
        return flux[:, None, None] * psf + bck[:, None, None], jac

    def _prior(self, prior: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(values, errors) (N, 2, P) in output units -> prior centre and inverse variance in z."""
        given, err = prior[:, 0].to(self.dtype), prior[:, 1].to(self.dtype)
        rel = torch.where(self.is_log, err / given.abs().clamp(min=1e-300), err)  # relative: r0's 500 nm is fine
        value = given.clone()
        value[:, 0] = r0_to_wavelength(value[:, 0], self.instrument.wavelength_m)
        value = torch.maximum(torch.minimum(value, self._hi_nat), self._lo_nat)
        z0 = torch.where(self.is_log, value.clamp(min=1e-300).log(), value)
        used = torch.tensor([n in PRIOR_PARAMS for n in self.names])
        ok = used & torch.isfinite(rel) & (rel > 0)
        return torch.where(ok, z0, 0.0), torch.where(ok, 1.0 / rel.clamp(min=1e-30) ** 2, 0.0)

    def _fit_batch(self, data, weights, initial=None, prior=None):
        sw = weights.sqrt()
        z = self.start(data, weights, initial)
        n, npar = z.shape
        z0, ivar = self._prior(prior) if prior is not None else (torch.zeros_like(z), torch.zeros_like(z))
        chi2 = lambda m, i=slice(None): ((sw[i] * (m - data[i])) ** 2).sum(dim=(1, 2))  # noqa: E731
        cost = lambda zz, i=slice(None): chi2(self._model_image(zz), i) + (ivar[i] * (zz - z0[i]) ** 2).sum(1)  # noqa: E731
        lam = torch.full((n,), 1e-3, dtype=self.dtype)
        cur = cost(z)
        first = cur.clone()
        active = torch.ones(n, dtype=torch.bool)
        niter = torch.zeros(n, dtype=torch.long)
        calm = torch.zeros(n, dtype=torch.long)
        for _ in range(self.max_iter):
            idx = active.nonzero().flatten()
            if len(idx) == 0:
                break
            model, jac = self._jacobian(z[idx])
            jw = (jac * sw[idx, None]).flatten(2)  # (b, P, M)
            r = (sw[idx] * (model - data[idx])).flatten(1)
            hess = jw @ jw.transpose(1, 2) + torch.diag_embed(ivar[idx])
            grad = (jw @ r[:, :, None])[..., 0] + ivar[idx] * (z[idx] - z0[idx])
            # Active set: parameters on a bound that the gradient pushes outwards stay fixed.
            zi = z[idx]
            fixed = ((zi <= self.z_lo) & (grad > 0)) | ((zi >= self.z_hi) & (grad < 0))
            free = (~fixed).to(self.dtype)
            hess = hess * free[:, :, None] * free[:, None, :] + torch.diag_embed(1.0 - free)
            grad = grad * free
            # Floor the damping so that a parameter with no gradient (an even static mode at 0)
            # gets a zero step instead of an ill-conditioned one.
            diag = torch.diagonal(hess, dim1=1, dim2=2)
            diag = torch.maximum(diag, 1e-9 * diag.amax(dim=1, keepdim=True)).clamp(min=1e-30)
            pending = torch.ones(len(idx), dtype=torch.bool)
            for _try in range(30):
                a = hess + torch.diag_embed(lam[idx, None] * diag)
                step = -torch.linalg.solve(a + 1e-12 * torch.diag_embed(diag), grad)
                big = (step.abs() * self.is_log).amax(dim=1, keepdim=True)
                step = step * (MAX_LOG_STEP / big.clamp(min=MAX_LOG_STEP))
                z_try = torch.maximum(torch.minimum(z[idx] + step, self.z_hi), self.z_lo)
                c_try = cost(z_try, idx)
                better = pending & (c_try < cur[idx])
                rel = (cur[idx] - c_try) / cur[idx].clamp(min=1e-300)
                z[idx[better]] = z_try[better]
                # Converged after 3 successive accepted steps with a negligible decrease (one
                # alone can be a heavily damped step in a flat valley).
                small = better & (rel < self.tol)
                calm[idx[better & ~small]] = 0
                calm[idx[small]] += 1
                # A noiseless image fitted to round-off keeps decreasing in relative terms.
                exact = better & (c_try < 1e-20 * first[idx])
                done_now = (small & (calm[idx] >= 3)) | exact
                cur[idx[better]] = c_try[better]
                lam[idx[better]] = (lam[idx[better]] / 3).clamp(min=1e-9)
                lam[idx[pending & ~better]] *= 2
                active[idx[done_now]] = False
                pending &= ~better
                if not pending.any():
                    break
            # No decrease even with heavy damping: at a minimum within numerical precision.
            active &= lam < 1e10
            niter[idx] += 1
        model, jac = self._jacobian(z)
        jw = (jac * sw[:, None]).flatten(2)
        cov = _covariance(jw @ jw.transpose(1, 2) + torch.diag_embed(ivar))
        dof = ((weights > 0).sum(dim=(1, 2)) - npar).clamp(min=1)
        chi2_red = chi2(model) / dof
        scale = error_scale(chi2_red, dof)
        z_err = torch.diagonal(cov, dim1=1, dim2=2).clamp(min=0).sqrt() * scale[:, None]
        p = self._natural(z)
        p_err = torch.where(self.is_log, p * z_err, z_err)
        return p, p_err, chi2_red, scale, niter, model, self._status(z, active)

    def _status(self, z: torch.Tensor, capped: torch.Tensor) -> list[str]:
        """Status of each fit (see ``FitResult``) from its final ``z`` and whether ``max_iter`` stopped it."""
        # The solver clamps onto the bounds exactly; the margin only absorbs round-off (flux and
        # background are unbounded: no margin, never on a bound).
        span = self.z_hi - self.z_lo
        margin = torch.where(torch.isfinite(span), 1e-6 * span, 0.0)
        # C = 0 is where the model's domain ends (a PSD level cannot be negative), not a limit of
        # the fit: a fit there is a constrained minimum, converged.
        domain_edge = torch.tensor([n == "bck" for n in self.names])
        on_bound = ((z <= self.z_lo + margin) & ~domain_edge) | (z >= self.z_hi - margin)
        out = []
        for row, cap in zip(on_bound.tolist(), capped.tolist()):
            bound = [n for n, b in zip(self.names, row) if b]  # z has the order of the output columns
            out.append(AT_BOUND + ",".join(bound) if bound else ITERATION_CAP if cap else CONVERGED)
        return out

    def fit(self, images: np.ndarray, weights: np.ndarray, progress: bool = False,
            initial: dict | None = None, prior: dict | None = None) -> FitResult:
        """Fit N images (N, H, W) with weights (N, H, W) (inverse variances; 0 = ignore).

        ``initial``: optional starting values, a table with the output columns (e.g. a CNN's
        estimate: the hybrid method); by default the fit starts from the prior median.

        ``prior``: optional table with the output columns and their ``_err`` (e.g. the CNN's
        estimate and predicted uncertainty): a Gaussian prior on the parameters of
        ``PRIOR_PARAMS`` (in log for the scale parameters) added to chi². Where the data constrain
        a parameter it hardly moves the fit; where they do not (r0 when the seeing halo is under
        the read noise), it keeps the fit from running off along the flat direction.
        """
        from tqdm import tqdm

        n = len(images)
        npix = self.instrument.npix
        if images.shape[1:] != (npix, npix):
            raise UserError(f"images are {images.shape[1:]}, the instrument model is {npix}x{npix}")
        out = [[] for _ in range(7)]
        with tqdm(total=n, unit="PSF", desc="fit", disable=not progress) as bar:
            for s in range(0, n, self.batch):
                d = torch.as_tensor(images[s : s + self.batch], dtype=self.dtype)
                w = torch.as_tensor(weights[s : s + self.batch], dtype=self.dtype)
                init = None if initial is None else _table_columns(initial, self.names, s, self.batch)
                pri = None if prior is None else torch.stack(
                    [_table_columns(prior, self.names, s, self.batch),
                     _table_columns(prior, [f"{c}_err" for c in self.names], s, self.batch)], dim=1)
                for acc, value in zip(out, self._fit_batch(d, w, init, pri)):
                    acc.append(value.detach() if torch.is_tensor(value) else np.asarray(value))
                bar.update(len(d))
        status = np.concatenate(out.pop())
        p, p_err, chi2, err_scale, niter, models = (torch.cat(v).numpy() for v in out)
        # Report r0 at 500 nm (the convention of seeing monitors and of the simulator).
        scale = r0_to_500nm(1.0, self.instrument.wavelength_m)
        p[:, 0] *= scale
        p_err[:, 0] *= scale
        theta = PSD_NAMES.index("theta")
        p[:, theta] = (p[:, theta] + math.pi) % (2 * math.pi) - math.pi
        return FitResult(self.names, p, p_err, chi2, err_scale, niter, models, status)


def error_scale(chi2_red, dof):
    """Factor applied to the errors of the covariance: 1 or sqrt(chi2_red).

    The covariance (J^T W J)^-1 gives absolute errors when the weights are the inverse noise
    variances and the model describes the data: chi2_red is then 1 within its statistical
    scatter sqrt(2 / dof). Outside ``CHI2_TOLERANCE_SIGMA`` times that scatter the noise model or
    the PSF model does not describe the data (a frame not in photo-electrons, a wrong gain,
    uniform weights, a PSF the model misses), and the covariance is scaled by chi2_red, i.e. the
    noise level is taken from the residuals (scipy's ``curve_fit`` with ``absolute_sigma=False``).
    With a prior (``fit(prior=...)``) its share of the covariance is scaled alike.

    Parameters
    ----------
    chi2_red : torch.Tensor
        (N,) reduced chi² of the fits.
    dof : torch.Tensor
        (N,) degrees of freedom (valid pixels - fitted parameters).
    """
    consistent = (chi2_red - 1).abs() <= CHI2_TOLERANCE_SIGMA * (2.0 / dof) ** 0.5
    return torch.where(consistent, torch.ones_like(chi2_red), chi2_red.sqrt())


def _covariance(hess: torch.Tensor) -> torch.Tensor:
    """Pseudo-inverse of Gauss-Newton Hessians (B, P, P), scaled to unit diagonal first.

    The parameters' scales differ by many orders of magnitude (the flux in e-, ln r0): unscaled,
    the pseudo-inverse's cut-off on small singular values removes the flux direction (flux_err
    came out 1e-12 of the flux). A parameter without any derivative keeps a zero row (error 0).
    """
    d = torch.diagonal(hess, dim1=1, dim2=2)
    d = torch.where(d > 0, d.clamp(min=1e-300).rsqrt(), torch.zeros_like(d))
    return d[:, :, None] * torch.linalg.pinv(hess * d[:, :, None] * d[:, None, :]) * d[:, None, :]


def _table_columns(table: dict, names, start: int, batch: int) -> torch.Tensor:
    return torch.as_tensor(np.stack([np.asarray(table[c][start : start + batch], dtype=float) for c in names], axis=1))


def _centroid(data, weights):
    """Centre of light in a 7x7 box around the brightest pixel, relative to pixel npix//2."""
    n, h, w = data.shape
    flat = torch.where(weights > 0, data, torch.full_like(data, -torch.inf)).flatten(1).argmax(dim=1)
    iy, ix = flat // w, flat % w
    yy, xx = torch.meshgrid(torch.arange(h, dtype=data.dtype), torch.arange(w, dtype=data.dtype), indexing="ij")
    box = ((yy[None] - iy[:, None, None]).abs() <= 3) & ((xx[None] - ix[:, None, None]).abs() <= 3)
    mass = (data.clamp(min=0) * box * (weights > 0)).sum(dim=(1, 2)).clamp(min=1e-30)
    cy = (data.clamp(min=0) * box * (weights > 0) * yy).sum(dim=(1, 2)) / mass
    cx = (data.clamp(min=0) * box * (weights > 0) * xx).sum(dim=(1, 2)) / mass
    return cy - h // 2, cx - w // 2


def _linear_flux_background(psf, data, weights):
    """Weighted linear least-squares flux and background for fixed PSFs (maoppy's lsq_flux_bck)."""
    ws = weights.sum(dim=(1, 2))
    mws = (psf * weights).sum(dim=(1, 2))
    mwds = (psf * weights * data).sum(dim=(1, 2))
    m2ws = (psf**2 * weights).sum(dim=(1, 2))
    wds = (weights * data).sum(dim=(1, 2))
    delta = mws**2 - ws * m2ws
    return (mws * wds - ws * mwds) / delta, (-m2ws * wds + mws * mwds) / delta
