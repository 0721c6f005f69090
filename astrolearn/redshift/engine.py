"""Template-fitting redshift engine: chi2(z) of continuum templates + emission-line groups.

For each spectrum and each redshift z of a grid, the model is a non-negative linear
combination of

- the continuum templates (rest frame, convolved with the instrument line-spread function,
  sampled at lambda / (1 + z), times the mean IGM transmission blueward of Lyman alpha), and
- emission-line groups (pixel-integrated Gaussians of width sqrt(sigma_LSF^2 + sigma_v^2),
  skew-normal for Lyman alpha; lines of a group with fixed flux ratios; the group amplitude is
  the group's total flux),

fitted by weighted non-negative least squares; log L = -chi2 / 2.

Linear algebra (the costly part is N spectra x Z redshifts small NNLS problems):

- the continuum design matrices of a chunk of redshifts are shared by all spectra, so the
  continuum blocks of the normal equations, sum_m w_nm C_zmi C_zmj, are one GEMM
  ``W (N, M) @ [C_i C_j] (M, Z x pairs)``;
- each line group only touches the pixels of a short window (+- 5 sigma around its lines), so
  line blocks are gathered over S ~ 10-30 pixels instead of M;
- lines whose windows never overlap are uncoupled: ordering them before the continuum gives an
  arrowhead matrix (no Cholesky fill-in);
- NNLS: compiled Lawson-Hanson on CPU (numba) or vectorised active set (torch, any device),
  see :mod:`astrolearn.redshift.nnls`;
- ``stride``: chi2 is computed exactly on every ``stride``-th grid point, interpolated (cubic)
  in between, and recomputed exactly on every grid point around the best minima (two-pass
  scheme of Amazed / redrock). The default (``"auto"``) takes the largest stride with a spacing
  <= 0.6 sigma of the narrowest line in ln(1 + z) (6 for NISP, 2 for DESI): a line is then
  sampled within 0.3 sigma of its centre, where its chi2 dip has kept >= 97% of its depth.
  ``stride=1`` is exact everywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.special import ndtr, owens_t

from ..errors import UserError
from . import pdf as pdfmod
from .igm import LYMAN_ALPHA, igm_transmission
from .lines import ASYM_ALPHA, DEFAULT_GROUPS, LineGroup
from .nnls import SymPattern, nnls_packed, nnls_packed_numba, numba_available
from .templates import FWHM_SIGMA, ContinuumTemplates, load_templates

C_KMS = 299792.458
STATUS_OK = 0
STATUS_NO_DATA = 1
STATUS_NAMES = {STATUS_OK: "ok", STATUS_NO_DATA: "no_data"}
#: Automatic stride: coarse spacing <= this fraction of the narrowest line sigma (ln units).
STRIDE_SIGMA = 0.6
#: Second pass: candidates whose coarse log posterior is this far below the best are not refined.
REFINE_DLOGP = 12.0
#: Below this many spectra, normal equations are built per spectrum (no shared GEMM).
SMALL_BATCH = 8
#: Memory budget [bytes] for caching the prepared designs of the coarse redshift chunks.
CACHE_BYTES = 768 * 2**20


@dataclass
class _Complex:
    """Lines whose windows overlap at every redshift: (rest wavelength, group, ratio)."""

    lines: list[tuple[float, int, float]]

    @property
    def lo(self) -> float:
        return min(lam for lam, _, _ in self.lines)

    @property
    def hi(self) -> float:
        return max(lam for lam, _, _ in self.lines)

    @property
    def groups(self) -> list[int]:
        return sorted({g for _, g, _ in self.lines})


@dataclass
class Design:
    """Model pieces for a set of redshifts (shared by all spectra of a wavelength grid).

    Attributes
    ----------
    z : ndarray, shape (Z,)
    cont : Tensor, shape (Z, T, M + 1)
        Continuum templates at each pixel (pixel M: zero padding).
    windows : list of (groups, idx, prof, (za, zb))
        For each active line complex: global group indices (g,), pixel indices (zb - za, S)
        into the padded grid and profiles (zb - za, S, g) [1/Angstrom per unit flux] for the
        redshift rows za:zb where the complex is observed (zero elsewhere).
    groups : list of int
        Active line groups, in model order (model columns: groups, then templates).
    """

    z: np.ndarray
    cont: torch.Tensor
    windows: list = field(default_factory=list)
    groups: list = field(default_factory=list)


class SpectralModel:
    """Template + emission-line model on one observed wavelength grid.

    Parameters
    ----------
    wave : array_like, shape (M,)
        Observed vacuum wavelengths [Angstrom], non-decreasing.
    lsf_sigma : array_like, shape (M,) or float
        Gaussian line-spread-function sigma at each pixel [Angstrom].
    pixel_width : array_like, shape (M,), optional
        Pixel widths [Angstrom] (default: from the spacing of ``wave``).
    templates : ContinuumTemplates, optional
        Rest-frame continuum templates (default: the shipped kcorrect set).
    groups : sequence of LineGroup
        Emission-line groups (default :data:`~astrolearn.redshift.lines.DEFAULT_GROUPS`);
        empty for a continuum-only model.
    vdisp : float
        Line velocity dispersion [km/s] added in quadrature to the LSF.
    nsigma : float
        Line profiles are truncated at +- nsigma.
    dtype : torch.dtype
    device : str or torch.device
    """

    def __init__(self, wave, lsf_sigma, pixel_width=None, templates: ContinuumTemplates | None = None,
                 groups=DEFAULT_GROUPS, vdisp: float = 100.0, nsigma: float = 5.0,
                 dtype=torch.float32, device="cpu"):
        wave = np.asarray(wave, dtype=np.float64)
        if wave.ndim != 1 or wave.size < 2 or np.any(np.diff(wave) < 0) or not np.all(wave > 0):
            raise UserError("wavelengths must be a positive, non-decreasing 1-D array")
        self.wave = wave
        self.M = wave.size
        self.lsf_sigma = np.broadcast_to(np.asarray(lsf_sigma, dtype=np.float64), wave.shape).copy()
        if pixel_width is None:
            pixel_width = np.gradient(wave)
        self.pixel_width = np.asarray(pixel_width, dtype=np.float64)
        if np.any(self.pixel_width <= 0):
            raise UserError("pixel widths must be > 0 (duplicate wavelengths need explicit widths)")
        self.dtype = dtype
        self.device = torch.device(device)
        self.vdisp = float(vdisp)
        self.nsigma = float(nsigma)
        self.groups: list[LineGroup] = list(groups)
        tpl = templates if templates is not None else load_templates()
        self.sigma_ln_cont = float(np.median(self.lsf_sigma / wave))
        self.templates = tpl.smoothed(self.sigma_ln_cont)
        self.T = len(self.templates.names)
        self._tplT = torch.tensor(self.templates.flux, dtype=dtype, device=self.device)  # (T, L)
        flux = self.templates.flux
        slope = np.concatenate([np.diff(flux, axis=1), np.zeros((flux.shape[0], 1))], axis=1)
        # (2T, L): values then slopes, template-major: the gather at (Z x M) positions then
        # yields contiguous pixel rows, with no transposed copy (2x faster on 8000 pixels)
        self._tab = torch.tensor(np.concatenate([flux, slope]), dtype=dtype, device=self.device)
        self._ln0 = float(self.templates.loglam[0])
        self._dln = self.templates.dloglam
        self._lnwave = torch.tensor(np.log(wave), dtype=torch.float64, device=self.device)
        # padded pixel geometry (index M = dummy pixel of zero weight)
        half = self.pixel_width / 2
        self._lo = torch.tensor(np.append(wave - half, 0.0), dtype=torch.float64, device=self.device)
        self._hi = torch.tensor(np.append(wave + half, 1.0), dtype=torch.float64, device=self.device)
        self._pw = torch.tensor(np.append(self.pixel_width, 1.0), dtype=torch.float64, device=self.device)
        self.complexes = self._build_complexes()

    # -- geometry -------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """Names of all model columns (line groups, then templates)."""
        return [g.name for g in self.groups] + list(self.templates.names)

    def line_sigma(self, lam_obs, vdisp: float | None = None) -> np.ndarray:
        """Observed line sigma [Angstrom] at observed wavelengths: LSF (+) velocity dispersion.

        ``vdisp`` [km/s] defaults to the model's.
        """
        lam_obs = np.asarray(lam_obs, dtype=np.float64)
        lsf = np.interp(lam_obs, self.wave, self.lsf_sigma)
        return np.hypot(lsf, lam_obs * (self.vdisp if vdisp is None else vdisp) / C_KMS)

    def group_vdisp(self, g: int) -> float:
        """Velocity dispersion [km/s] of group ``g``: its own, else the model's."""
        v = self.groups[g].vdisp
        return self.vdisp if v is None else float(v)

    def min_line_sigma_ln(self) -> float:
        """Smallest line sigma in ln(wavelength) over the grid."""
        vmin = min((self.group_vdisp(g) for g in range(len(self.groups))), default=self.vdisp)
        return float(np.min(self.line_sigma(self.wave, vmin) / self.wave))

    def _build_complexes(self) -> list[_Complex]:
        entries = []
        for gi, g in enumerate(self.groups):
            ratios = np.asarray(g.ratios, dtype=np.float64)
            ratios = ratios / ratios.sum()
            for lam, r in zip(g.wavelengths, ratios):
                entries.append((float(lam), gi, float(r)))
        entries.sort()
        # window half-width of each group's lines in ln(wavelength), at its widest on the grid
        hw = [self.nsigma * float(np.max(self.line_sigma(self.wave, self.group_vdisp(g)) / self.wave))
              for g in range(len(self.groups))]
        out: list[_Complex] = []
        for e in entries:
            if out and math.log(e[0]) - math.log(out[-1].hi) < (max(hw[g] for g in out[-1].groups) + hw[e[1]]) * 1.05:
                out[-1].lines.append(e)
            else:
                out.append(_Complex([e]))
        return out

    # -- design ---------------------------------------------------------------------------
    def continuum(self, z) -> torch.Tensor:
        """Continuum templates at each pixel for redshifts z: Tensor (Z, T, M + 1).

        Linear interpolation of the LSF-smoothed rest-frame templates at lambda / (1 + z); 0
        outside the templates' coverage and at the padding pixel M. Pixels blueward of Lyman
        alpha are multiplied by the mean IGM transmission (:mod:`~astrolearn.redshift.igm`).
        """
        u = torch.tensor(np.log1p(np.asarray(z, dtype=np.float64)), dtype=torch.float64, device=self.device)
        pos = ((self._lnwave[None, :] - self._ln0) / self._dln - (u / self._dln)[:, None]).to(self.dtype)
        L = self._tab.shape[1]
        inside = ((pos >= 0) & (pos <= L - 1)).to(self.dtype)
        i0 = pos.floor().clamp_(0, L - 2)
        frac = (pos - i0).clamp_(0.0, 1.0) * inside
        T, Z = self.T, len(u)
        g = self._tab.index_select(1, i0.to(torch.long).reshape(-1)).view(2 * T, Z, self.M)  # value, slope
        out = torch.empty((Z, T, self.M + 1), dtype=self.dtype, device=self.device)
        out[:, :, self.M] = 0.0
        out[:, :, : self.M] = (torch.addcmul(g[:T], g[T:], frac) * inside).permute(1, 0, 2)
        z = np.asarray(z, dtype=np.float64).reshape(-1)
        absorbed = np.flatnonzero(LYMAN_ALPHA * (1.0 + z) > self.wave[0])
        if absorbed.size:
            igm = torch.tensor(igm_transmission(self.wave, z[absorbed]), dtype=self.dtype, device=self.device)
            rows = torch.as_tensor(absorbed, device=self.device)
            out[rows, :, : self.M] *= igm[:, None, :]
        return out

    def design(self, z, cont: torch.Tensor | None = None) -> Design:
        """Continuum and line windows for an array of redshifts (see :class:`Design`).

        ``cont`` (Z, T, M + 1) may be given when already computed (:meth:`continuum`).
        """
        z = np.atleast_1d(np.asarray(z, dtype=np.float64))
        cont = self.continuum(z) if cont is None else cont
        windows = []
        groups: list[int] = []
        onepz = 1.0 + z
        for cx in self.complexes:
            lo_c, hi_c = cx.lo * onepz, cx.hi * onepz
            vmax = max(self.group_vdisp(g) for g in cx.groups)
            lo = lo_c - self.nsigma * self.line_sigma(lo_c, vmax)
            hi = hi_c + self.nsigma * self.line_sigma(hi_c, vmax)
            i0 = np.searchsorted(self.wave, lo, side="left")
            i1 = np.searchsorted(self.wave, hi, side="right")
            n = i1 - i0
            act = np.flatnonzero(n > 0)
            if act.size == 0:
                continue
            za, zb = int(act[0]), int(act[-1]) + 1
            if zb - za != act.size:  # not contiguous (unordered redshifts): keep all rows
                za, zb = 0, len(z)
            i0, n, zs, opz = i0[za:zb], n[za:zb], z[za:zb], onepz[za:zb]
            S = int(n.max())
            ar = np.arange(S)
            idx = i0[:, None] + ar[None, :]
            valid = ar[None, :] < n[:, None]
            idx = np.where(valid, idx, self.M)
            idx_t = torch.tensor(idx, device=self.device)
            lo_e, hi_e, pw = self._lo[idx_t], self._hi[idx_t], self._pw[idx_t]
            valid_t = torch.tensor(valid, device=self.device, dtype=torch.float64)
            gl = cx.groups
            prof = torch.zeros((len(zs), S, len(gl)), dtype=torch.float64, device=self.device)
            for lam, g, r in cx.lines:
                mu = lam * opz
                sig = self.line_sigma(mu, self.group_vdisp(g))
                if self.groups[g].profile == "asym":
                    frac = torch.tensor(_skewnormal_cdf(hi_e.cpu().numpy(), mu, sig)
                                        - _skewnormal_cdf(lo_e.cpu().numpy(), mu, sig), device=self.device)
                else:
                    mu_t = torch.tensor(mu, dtype=torch.float64, device=self.device)[:, None]
                    sig_t = torch.tensor(sig, dtype=torch.float64, device=self.device)[:, None] * math.sqrt(2.0)
                    frac = 0.5 * (torch.erf((hi_e - mu_t) / sig_t) - torch.erf((lo_e - mu_t) / sig_t))
                prof[:, :, gl.index(g)] += r * frac / pw * valid_t
            windows.append((gl, idx_t, prof.to(self.dtype), (za, zb)))
            for g in gl:
                if g not in groups:
                    groups.append(g)
        return Design(z, cont, windows, groups)

    def matrix(self, z: float) -> tuple[np.ndarray, list[str]]:
        """Model matrix at one redshift: (M, K) array (all groups, then templates) and names.

        Column k is the model spectrum for a unit coefficient: 1 erg/s/cm2 of line flux for a
        group, the template itself for a continuum template.
        """
        d = self.design([z])
        ng = len(self.groups)
        A = np.zeros((self.M + 1, ng + self.T))
        A[:, ng:] = d.cont[0].double().cpu().numpy().T
        for gl, idx, prof, _ in d.windows:
            for a, g in enumerate(gl):
                np.add.at(A[:, g], idx[0].cpu().numpy(), prof[0, :, a].double().cpu().numpy())
        return A[: self.M], self.names

    # -- normal equations -------------------------------------------------------------------
    def prepare(self, d: Design, shared: bool = True) -> dict:
        """Spectrum-independent products of a design, reused for every batch of spectra.

        Also fixes the layout of the packed normal equations: model columns are the active
        line groups (in ``d.groups`` order) then the templates; packed rows start with the
        continuum block, then each line window's entries as one contiguous block (entries
        shared with an earlier window are accumulated separately). ``shared=False`` (pair mode)
        skips the continuum products used by the shared GEMM.
        """
        T, ng = self.T, len(d.groups)
        pos = {g: k for k, g in enumerate(d.groups)}
        C = d.cont  # (Z, T, M+1)
        tri = [(ng + i, ng + j) for i in range(T) for j in range(i + 1)]
        order = list(tri)
        wins = []
        seen_rows, seen_groups = set(tri), set()
        for gl, idx, prof, (za, zb) in d.windows:
            Cw = torch.gather(C[za:zb], 2, idx[:, None, :].expand(-1, T, -1))  # (Z, T, S)
            terms, keys = [], []
            for a in range(len(gl)):
                for c in range(a + 1):
                    terms.append(prof[:, :, a] * prof[:, :, c])
                    pa, pc = pos[gl[a]], pos[gl[c]]
                    keys.append((max(pa, pc), min(pa, pc)))
                for t in range(T):
                    terms.append(prof[:, :, a] * Cw[:, t])
                    keys.append((ng + t, pos[gl[a]]))
            new = [k not in seen_rows for k in keys]
            # new entries first (one contiguous block), then the ones to accumulate
            perm = [i for i in range(len(keys)) if new[i]] + [i for i in range(len(keys)) if not new[i]]
            keys = [keys[i] for i in perm]
            Q = torch.stack([terms[i] for i in perm], dim=1)  # (Z, q, S)
            nnew = sum(new)
            order.extend(keys[:nnew])
            seen_rows.update(keys)
            rows = [pos[g] for g in gl]
            gnew = [g not in seen_groups for g in gl]
            gperm = [i for i in range(len(gl)) if gnew[i]] + [i for i in range(len(gl)) if not gnew[i]]
            seen_groups.update(gl)
            profT = prof[:, :, gperm].permute(0, 2, 1).contiguous()
            wins.append({"idx": idx, "Q": Q, "profT": profT, "keys": keys, "nnew": nnew, "zs": (za, zb),
                         "rows": [rows[i] for i in gperm], "gnew": sum(gnew)})
        K = ng + T
        nonzero = set(order) | {(t, j) for t in range(ng, K) for j in range(K)}
        pat = SymPattern(K, nonzero, order=order)
        for w in wins:
            w["r0"] = pat.index[w["keys"][0]] if w["nnew"] else 0
            w["dup"] = [pat.index[k] for k in w["keys"][w["nnew"]:]]
            w["g0"] = w["rows"][0] if w["gnew"] else 0
            if any(pat.index[k] != w["r0"] + i for i, k in enumerate(w["keys"][: w["nnew"]])) or any(
                    w["rows"][i] != w["g0"] + i for i in range(w["gnew"])):
                raise AssertionError("non-contiguous window layout")
        prod = None
        if shared:
            prod = torch.stack([C[:, i - ng] * C[:, j - ng] for i, j in tri], dim=1)  # (Z, np, M+1)
        return {"d": d, "pat": pat, "tri": tri, "prod": prod, "wins": wins, "ng": ng,
                "filled": len(order) < pat.size}

    def normal_equations(self, prep: dict, W: torch.Tensor, WF: torch.Tensor, pairs=None):
        """Packed normal equations for all (spectrum, redshift) combinations or for pairs.

        Parameters
        ----------
        prep : dict
            :meth:`prepare` output.
        W, WF : Tensor, shape (N, M + 1)
            Inverse variances and ivar * flux (padded with a zero pixel).
        pairs : Tensor of long, shape (P,), optional
            Spectrum index of each redshift of the design (pair mode); default: every spectrum
            at every redshift of the design.

        Returns
        -------
        A : Tensor (N, Z, R)
            Packed Gram matrices (``pattern.entries``); (P, 1, R) in pair mode.
        b : Tensor (N, Z, K)
        pattern : SymPattern
        """
        d, pat, ng = prep["d"], prep["pat"], prep["ng"]
        T = self.T
        K = ng + T
        Z = len(d.z)
        C, prod = d.cont, prep["prod"]
        npair = len(prep["tri"])
        alloc = torch.zeros if prep["filled"] else torch.empty
        if pairs is None:
            N = W.shape[0]
            A = alloc((N, Z, pat.size), dtype=self.dtype, device=self.device)
            b = torch.empty((N, Z, K), dtype=self.dtype, device=self.device)
            A[:, :, :npair] = (W @ prod.reshape(Z * npair, -1).T).view(N, Z, npair)
            b[:, :, ng:] = (WF @ C.reshape(Z * T, -1).T).view(N, Z, T)
            WT, WFT = W.T.contiguous(), WF.T.contiguous()  # (M+1, N)
        else:
            N = len(pairs)
            A = alloc((N, 1, pat.size), dtype=self.dtype, device=self.device)
            b = torch.empty((N, 1, K), dtype=self.dtype, device=self.device)
            Wp, WFp = W[pairs], WF[pairs]
            GG = torch.bmm(C * Wp[:, None, :], C.transpose(1, 2))  # (P, T, T)
            A[:, 0, :npair] = torch.stack([GG[:, i - ng, j - ng] for i, j in prep["tri"]], dim=1)
            b[:, 0, ng:] = torch.einsum("ptm,pm->pt", C, WFp)
        for w in prep["wins"]:
            idx = w["idx"]
            za, zb = w["zs"]
            Zw, S = idx.shape
            nnew, gnew, r0, g0 = w["nnew"], w["gnew"], w["r0"], w["g0"]
            if pairs is None:
                Wg = WT[idx.reshape(-1)].view(Zw, S, N)
                WFg = WFT[idx.reshape(-1)].view(Zw, S, N)
                Rq = torch.bmm(w["Q"], Wg).permute(2, 0, 1)  # (N, Zw, q)
                hq = torch.bmm(w["profT"], WFg).permute(2, 0, 1)
            else:
                Wg = torch.gather(Wp[za:zb], 1, idx)
                WFg = torch.gather(WFp[za:zb], 1, idx)
                Rq = torch.einsum("pqs,ps->pq", w["Q"], Wg)[:, None, :]
                hq = torch.einsum("pgs,ps->pg", w["profT"], WFg)[:, None, :]
            sl = (slice(za, zb), slice(None)) if pairs is not None else (slice(None), slice(za, zb))
            if nnew:
                blk = A[:, :, r0 : r0 + nnew]
                _zero_outside(blk, za, zb, pairs is None)
                blk[sl] = Rq[:, :, :nnew]
            for i, r in enumerate(w["dup"]):
                A[sl + (r,)] += Rq[:, :, nnew + i]
            if gnew:
                blk = b[:, :, g0 : g0 + gnew]
                _zero_outside(blk, za, zb, pairs is None)
                blk[sl] = hq[:, :, :gnew]
            for i, r in enumerate(w["rows"][gnew:]):
                b[sl + (r,)] += hq[:, :, gnew + i]
        return A, b, pat


@dataclass
class EngineConfig:
    """Settings of the redshift engine (all have CLI equivalents).

    Attributes
    ----------
    grid : ZGrid
        Redshift grid (default z 0.01-3.0, step 1e-4 in ln(1 + z)).
    templates : list of str, optional
        Continuum templates to use (default: all shipped ones).
    template_file : str, optional
        Alternative template FITS file.
    lines : bool
        Fit emission-line groups.
    vdisp : float
        Line velocity dispersion [km/s].
    n_candidates : int
        Candidates kept per spectrum.
    peak_separation : float
        Minimum candidate separation in ln(1 + z).
    stride : int or "auto"
        Coarse-pass stride (1: exact chi2 on every grid point).
    refine_halfwidth : int
        Second pass: exact chi2 on +- this many coarse steps around each candidate.
    dtype : str
        ``"float32"`` or ``"float64"`` (normal equations; the NNLS runs in float64 on CPU).
    device : str
        ``"cpu"``, ``"cuda"``, ...
    solver : str
        ``"auto"`` (numba on CPU when available, else torch), ``"numba"`` or ``"torch"``.
    batch : int
        Spectra per normal-equation batch.
    zchunk : int
        Redshifts per design chunk.
    workers : int, optional
        CPU worker threads (default: the CPUs available, at most 8); each runs torch
        single-threaded (the engine sets torch to one thread on CPU) on its own redshift
        chunks, which avoids thread oversubscription.
    """

    grid: pdfmod.ZGrid = field(default_factory=pdfmod.ZGrid)
    templates: list | None = None
    template_file: str | None = None
    lines: bool = True
    vdisp: float = 100.0
    n_candidates: int = 5
    peak_separation: float = 0.01
    stride: int | str = "auto"
    refine_halfwidth: int = 2
    dtype: str = "float32"
    device: str = "cpu"
    solver: str = "auto"
    batch: int = 128
    zchunk: int = 512
    workers: int | None = None

    def to_dict(self) -> dict:
        """JSON-able description (stored with outputs; resuming requires an identical one)."""
        return {"grid": self.grid.meta(), "templates": self.templates, "template_file": self.template_file,
                "lines": self.lines, "vdisp": self.vdisp, "n_candidates": self.n_candidates,
                "peak_separation": self.peak_separation, "stride": self.stride,
                "refine_halfwidth": self.refine_halfwidth, "dtype": self.dtype}


@dataclass
class EngineResult:
    """Per-spectrum results of :meth:`RedshiftEngine.run`.

    Attributes
    ----------
    z, z_err, z_proba : ndarray (N,)
        Best redshift (highest redshift probability), its Dz and redshift probability.
    chi2_min : ndarray (N,)
        chi2 at ``z``.
    npix : ndarray (N,)
        Valid pixels.
    status : ndarray (N,) int8
        :data:`STATUS_NAMES`.
    log_pdf : ndarray (N, Z) float32
        Normalised log PDF on the grid.
    chi2 : ndarray (N, Z) float32
        chi2 on the grid (interpolated between coarse points when ``exact`` is False).
    exact : ndarray (N, Z) bool
        Grid points where chi2 was computed exactly.
    candidates : pdf.Candidates
    coeffs : ndarray (N, K)
        Best-fit coefficients at ``z`` (line fluxes in the input flux unit x Angstrom,
        template amplitudes in the input flux unit).
    coeff_names : list of str
    """

    z: np.ndarray
    z_err: np.ndarray
    z_proba: np.ndarray
    chi2_min: np.ndarray
    npix: np.ndarray
    status: np.ndarray
    log_pdf: np.ndarray
    chi2: np.ndarray
    exact: np.ndarray
    candidates: pdfmod.Candidates
    coeffs: np.ndarray
    coeff_names: list


class RedshiftEngine:
    """chi2(z) -> log PDF -> candidates for batches of spectra sharing a wavelength grid.

    Parameters
    ----------
    wave : array_like (M,)
        Observed vacuum wavelengths [Angstrom], non-decreasing.
    lsf_sigma : array_like (M,) or float
        LSF Gaussian sigma [Angstrom] per pixel.
    config : EngineConfig
    pixel_width : array_like (M,), optional
    log_prior : ndarray (Z,), optional
        log prior on the grid (default flat).
    """

    def __init__(self, wave, lsf_sigma, config: EngineConfig | None = None, pixel_width=None, log_prior=None):
        self.config = cfg = config or EngineConfig()
        if cfg.dtype not in ("float32", "float64"):
            raise UserError(f"dtype must be float32 or float64, not {cfg.dtype!r}")
        dtype = torch.float32 if cfg.dtype == "float32" else torch.float64
        try:
            device = torch.device(cfg.device)
            torch.zeros(1, device=device)
        except (RuntimeError, AssertionError) as exc:
            raise UserError(f"device {cfg.device!r} is not usable here ({exc})") from None
        tpl = load_templates(cfg.template_file, cfg.templates)
        groups = DEFAULT_GROUPS if cfg.lines else ()
        self.model = SpectralModel(wave, lsf_sigma, pixel_width, tpl, groups, cfg.vdisp, dtype=dtype, device=device)
        self.grid = cfg.grid
        self.z = cfg.grid.z
        self.log_prior = np.zeros_like(self.z) if log_prior is None else np.asarray(log_prior, dtype=np.float64)
        if self.log_prior.shape != self.z.shape:
            raise UserError("log prior does not match the redshift grid")
        solver = cfg.solver
        if solver == "auto":
            solver = "numba" if (device.type == "cpu" and numba_available()) else "torch"
        if solver == "numba" and not numba_available():
            raise UserError("solver 'numba' needs the numba package (pip install numba)")
        if solver not in ("numba", "torch"):
            raise UserError(f"unknown solver {solver!r} (auto, numba, torch)")
        self.solver = solver
        self.stride = self._stride(cfg.stride)
        self.workers = int(cfg.workers) if cfg.workers else default_workers()
        # keep the per-chunk continuum products (zchunk x pairs x pixels) within ~64 MB
        npairs = self.model.T * (self.model.T + 1) // 2
        self.zchunk = int(max(16, min(cfg.zchunk, 64 * 2**20 // (4 * npairs * (self.model.M + 1)))))
        import threading

        self._cache: dict = {}
        self._cache_bytes = 0
        self._cont_all = None
        self._lock = threading.Lock()

    def _stride(self, stride) -> int:
        if stride == "auto":
            sig = self.model.min_line_sigma_ln() if self.model.groups else self.model.sigma_ln_cont
            if self.grid.sampling == "log":
                step_ln = self.grid.step
            else:
                step_ln = self.grid.step / (1.0 + self.grid.zmax)
            return max(1, int(math.floor(STRIDE_SIGMA * sig / step_ln)))
        stride = int(stride)
        if stride < 1:
            raise UserError("stride must be >= 1")
        return stride

    # -- chi2 -------------------------------------------------------------------------------
    def _solve(self, A, b, pat, need_x: bool = False):
        """NNLS of system-major packed problems A (N, Z, R), b (N, Z, K).

        Returns x (N, Z, K) float64 numpy array (or None) and the chi2 reduction (N, Z).
        """
        if self.solver == "numba":
            return nnls_packed_numba(A.cpu().numpy(), b.cpu().numpy(), pat, need_x=need_x)
        N, Z, R = A.shape
        # float64 solve: float32 needs a ridge that biases near-collinear templates
        At = A.reshape(N * Z, R).T.to(torch.float64).contiguous()
        bt = b.reshape(N * Z, -1).T.to(torch.float64).contiguous()
        x = nnls_packed(At, bt, pat)
        red = 2 * (bt * x).sum(0) - (x * pat.matvec(At, x)).sum(0)
        red = red.double().cpu().numpy().reshape(N, Z)
        xs = x.T.double().cpu().numpy().reshape(N, Z, -1) if need_x else None
        return xs, red

    @staticmethod
    def _prepare(flux, ivar):
        flux = np.asarray(flux, dtype=np.float64)
        ivar = np.asarray(ivar, dtype=np.float64)
        good = (ivar > 0) & np.isfinite(ivar) & np.isfinite(flux)
        ivar = np.where(good, ivar, 0.0)
        flux = np.where(good, flux, 0.0)
        npix = good.sum(axis=1)
        scale = np.ones(len(flux))
        for i in range(len(flux)):
            if npix[i]:
                scale[i] = float(np.median(1.0 / np.sqrt(ivar[i, good[i]])))
        F = flux / scale[:, None]
        W = ivar * scale[:, None] ** 2
        ff = np.sum(W * F * F, axis=1)
        return F, W, ff, scale, npix

    def _padded(self, F, W):
        dt, dev = self.model.dtype, self.model.device
        Wt = torch.tensor(np.concatenate([W, np.zeros((len(W), 1))], axis=1), dtype=dt, device=dev)
        WFt = torch.tensor(np.concatenate([W * F, np.zeros((len(W), 1))], axis=1), dtype=dt, device=dev)
        return Wt, WFt

    def chi2_at(self, flux, ivar, z_index: np.ndarray) -> np.ndarray:
        """Exact chi2 of every spectrum at grid indices ``z_index`` (shared): (N, len)."""
        F, W, ff, _, _ = self._prepare(flux, ivar)
        return self._chi2_shared(F, W, ff, np.asarray(z_index))

    def _continuum(self, zi: np.ndarray) -> torch.Tensor:
        """Continuum design (len(zi), T, M + 1) at grid indices, from a full-grid cache if it fits."""
        if self._cont_all is None:
            with self._lock:
                if self._cont_all is None:
                    nbytes = self.z.size * self.model.T * (self.model.M + 1) * self.model._tplT.element_size()
                    if nbytes <= CACHE_BYTES // 3:
                        parts = [self.model.continuum(self.z[i : i + 1024]) for i in range(0, self.z.size, 1024)]
                        self._cont_all = torch.cat(parts)
                        self._cache_bytes += nbytes
                    else:
                        self._cont_all = False
        if self._cont_all is False:
            return self.model.continuum(self.z[zi])
        return self._cont_all[torch.as_tensor(zi, device=self.model.device)]

    def _prepared(self, sel: np.ndarray, shared: bool = True) -> dict:
        """Prepared design of grid indices ``sel``, cached across calls within a memory budget."""
        key = (int(sel[0]), int(sel[-1]), len(sel), shared)
        prep = self._cache.get(key)
        if prep is None:
            prep = self.model.prepare(self.model.design(self.z[sel], self._continuum(sel)), shared=shared)
            nbytes = sum(t.numel() * t.element_size() for t in (prep["d"].cont, prep["prod"]) if t is not None)
            with self._lock:
                if self._cache_bytes + nbytes <= CACHE_BYTES:
                    self._cache[key] = prep
                    self._cache_bytes += nbytes
        return prep

    def _map(self, fn, jobs):
        """Run ``fn`` over ``jobs`` on ``workers`` threads (torch single-threaded inside)."""
        workers = self.workers
        if workers <= 1 or len(jobs) <= 1 or self.model.device.type != "cpu":
            for job in jobs:
                fn(job)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers) as ex:
            for fut in [ex.submit(fn, job) for job in jobs]:
                fut.result()

    def _chi2_shared(self, F, W, ff, zi) -> np.ndarray:
        cfg = self.config
        N = len(F)
        out = np.empty((N, len(zi)))
        Wt_all, WFt_all = self._padded(F, W)

        # equal chunks, a multiple of the worker count (load balance)
        nchunks = -(-len(zi) // self.zchunk)
        nchunks = self.workers * -(-nchunks // self.workers) if len(zi) >= 64 * self.workers else nchunks
        zchunk = -(-len(zi) // nchunks)

        def chunk(c0):
            sel = zi[c0 : c0 + zchunk]
            if N < SMALL_BATCH:  # few spectra: per-spectrum products, no shared continuum GEMM
                prep = self._prepared(sel, shared=False)
                for n in range(N):
                    pairs = torch.full((len(sel),), n, dtype=torch.long, device=self.model.device)
                    A, b, pat = self.model.normal_equations(prep, Wt_all, WFt_all, pairs=pairs)
                    _, red = self._solve(A.view(1, len(sel), -1), b.view(1, len(sel), -1), pat)
                    out[n, c0 : c0 + len(sel)] = ff[n] - red[0]
                return
            prep = self._prepared(sel)
            for n0 in range(0, N, cfg.batch):
                Wt, WFt = Wt_all[n0 : n0 + cfg.batch], WFt_all[n0 : n0 + cfg.batch]
                A, b, pat = self.model.normal_equations(prep, Wt, WFt)
                _, red = self._solve(A, b, pat)
                nb = Wt.shape[0]
                out[n0 : n0 + nb, c0 : c0 + len(sel)] = ff[n0 : n0 + nb, None] - red

        with _torch_threads(1 if self.model.device.type == "cpu" else None):
            self._map(chunk, list(range(0, len(zi), zchunk)))
        return out

    def _fit_pairs(self, F, W, ff, spec, zi, chunk: int = 2048, need_x: bool = True):
        """Exact chi2 and coefficients for (spectrum, grid index) pairs."""
        K = len(self.model.names)
        chi2 = np.empty(len(spec))
        coeffs = np.zeros((len(spec), K))
        ng = len(self.model.groups)
        Wt, WFt = self._padded(F, W)
        spec_t = torch.as_tensor(np.asarray(spec), device=self.model.device)

        def job(p0):
            zsel = zi[p0 : p0 + chunk]
            d = self.model.design(self.z[zsel], self._continuum(zsel))
            A, b, pat = self.model.normal_equations(self.model.prepare(d, shared=False), Wt, WFt,
                                                    pairs=spec_t[p0 : p0 + chunk])
            x, red = self._solve(A, b, pat, need_x=need_x)
            n = red.shape[0]
            chi2[p0 : p0 + n] = ff[spec[p0 : p0 + n]] - red[:, 0]
            if need_x:
                cols = list(d.groups) + list(range(ng, ng + self.model.T))
                coeffs[p0 : p0 + n, cols] = x[:, 0, :]

        njobs = -(-len(spec) // chunk)
        njobs = self.workers * -(-njobs // self.workers) if len(spec) >= 256 * self.workers else njobs
        chunk = max(1, -(-len(spec) // max(njobs, 1)))
        with _torch_threads(1 if self.model.device.type == "cpu" else None):
            self._map(job, list(range(0, len(spec), chunk)))
        return chi2, coeffs

    def chi2_grid(self, flux, ivar):
        """chi2 on the full grid (two-pass when stride > 1).

        Returns
        -------
        chi2 : ndarray (N, Z) float64
        exact : ndarray (N, Z) bool
        """
        F, W, ff, _, _ = self._prepare(flux, ivar)
        return self._chi2_grid(F, W, ff)

    def _chi2_grid(self, F, W, ff):
        N, Z = len(F), self.z.size
        s = self.stride
        coarse = np.arange(0, Z, s)
        if coarse[-1] != Z - 1:
            coarse = np.append(coarse, Z - 1)
        cchi = self._chi2_shared(F, W, ff, coarse)
        exact = np.zeros((N, Z), dtype=bool)
        exact[:, coarse] = True
        if s == 1:
            return cchi, exact
        chi2 = _cubic_fill(cchi, s, Z)
        # second pass: exact chi2 around the best minima of the coarse log posterior
        clogpost = -0.5 * cchi + self.log_prior[coarse]
        cgrid = self.z[coarse]
        cpeaks = pdfmod.find_peaks(clogpost, cgrid, n=self.config.n_candidates,
                                   separation=self.config.peak_separation)
        logpost = -0.5 * chi2 + self.log_prior
        peaks = np.where(cpeaks >= 0, coarse[np.maximum(cpeaks, 0)], -1)
        hw = self.config.refine_halfwidth * s
        spec, zi = [], []
        for n in range(N):
            want = np.zeros(Z, dtype=bool)
            top = logpost[n, peaks[n, 0]] if peaks[n, 0] >= 0 else np.inf
            for j in peaks[n][peaks[n] >= 0]:
                if logpost[n, j] < top - REFINE_DLOGP:  # negligible candidate (p < 1e-5 of the best)
                    continue
                want[max(0, j - hw) : j + hw + 1] = True
            want &= ~exact[n]
            idx = np.flatnonzero(want)
            spec.append(np.full(idx.size, n))
            zi.append(idx)
        spec = np.concatenate(spec) if spec else np.zeros(0, int)
        zi = np.concatenate(zi) if zi else np.zeros(0, int)
        if spec.size:
            vals, _ = self._fit_pairs(F, W, ff, spec, zi, need_x=False)
            chi2[spec, zi] = vals
            exact[spec, zi] = True
        return chi2, exact

    # -- full run ---------------------------------------------------------------------------
    def run(self, flux, ivar) -> EngineResult:
        """Estimate redshifts of a batch.

        Parameters
        ----------
        flux, ivar : array_like, shape (N, M)
            Flux density and inverse variance on the model's wavelength grid (any flux unit;
            ivar in 1/unit^2). Pixels with ivar <= 0 or non-finite values are ignored.
        """
        flux = np.atleast_2d(flux)
        ivar = np.atleast_2d(ivar)
        if flux.shape != ivar.shape or flux.shape[1] != self.model.M:
            raise UserError(f"flux {flux.shape} / ivar {ivar.shape} do not match {self.model.M} wavelengths")
        N, Z = len(flux), self.z.size
        F, W, ff, scale, npix = self._prepare(flux, ivar)
        ok = npix > 0
        chi2 = np.full((N, Z), np.nan)
        exact = np.zeros((N, Z), dtype=bool)
        if ok.any():
            c, e = self._chi2_grid(F[ok], W[ok], ff[ok])
            chi2[ok], exact[ok] = c, e
        logpost = -0.5 * np.where(ok[:, None], chi2, 0.0) + self.log_prior
        log_pdf = pdfmod.normalise_log_pdf(logpost, self.z)
        cand = pdfmod.candidates(log_pdf[ok], self.grid, n=self.config.n_candidates,
                                 separation=self.config.peak_separation)
        if self.stride > 1 and ok.any():
            # a best peak falling on interpolated chi2: compute it exactly around it, once
            rows_ok = np.flatnonzero(ok)
            best = cand.index[:, 0]
            redo = [k for k in range(len(rows_ok)) if best[k] >= 0 and not exact[rows_ok[k], best[k]]]
            if redo:
                hw = self.config.refine_halfwidth * self.stride
                spec, zi = [], []
                for k in redo:
                    n, j = rows_ok[k], best[k]
                    idx = np.arange(max(0, j - hw), min(Z, j + hw + 1))
                    idx = idx[~exact[n, idx]]
                    spec.append(np.full(idx.size, n))
                    zi.append(idx)
                spec, zi = np.concatenate(spec), np.concatenate(zi)
                vals, _ = self._fit_pairs(F, W, ff, spec, zi, need_x=False)
                chi2[spec, zi] = vals
                exact[spec, zi] = True
                rows = rows_ok[redo]
                logpost[rows] = -0.5 * chi2[rows] + self.log_prior
                log_pdf[rows] = pdfmod.normalise_log_pdf(logpost[rows], self.z)
                cand = pdfmod.candidates(log_pdf[ok], self.grid, n=self.config.n_candidates,
                                         separation=self.config.peak_separation)
        C = self.config.n_candidates

        def expand(a, fill):
            out = np.full((N, C), fill, dtype=a.dtype)
            out[ok] = a
            return out

        cand = pdfmod.Candidates(expand(cand.z, np.nan), expand(cand.dz, np.nan), expand(cand.proba, np.nan),
                                 expand(cand.log_pdf, np.nan), expand(cand.index, -1))
        best = cand.index[:, 0]
        has = best >= 0
        K = len(self.model.names)
        coeffs = np.full((N, K), np.nan)
        chi2_min = np.full(N, np.nan)
        if has.any():
            rows = np.flatnonzero(has)
            # rows of the ok-subset used by _fit_pairs are indices into F/W
            c2, co = self._fit_pairs(F, W, ff, rows, best[rows])
            chi2_min[rows] = c2
            coeffs[rows] = co * scale[rows, None]
        status = np.where(ok, STATUS_OK, STATUS_NO_DATA).astype(np.int8)
        return EngineResult(
            z=cand.z[:, 0].copy(), z_err=cand.dz[:, 0].copy(), z_proba=cand.proba[:, 0].copy(),
            chi2_min=chi2_min, npix=npix, status=status, log_pdf=log_pdf.astype(np.float32),
            chi2=chi2.astype(np.float32), exact=exact, candidates=cand, coeffs=coeffs,
            coeff_names=self.model.names)


def _skewnormal_cdf(x: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """CDF at x (Z, S) of skew-normal lines at mu, scale sigma (Z,), shape ASYM_ALPHA."""
    u = (x - mu[:, None]) / sigma[:, None]
    return ndtr(u) - 2.0 * owens_t(u, ASYM_ALPHA)


def _cubic_fill(vals: np.ndarray, stride: int, size: int) -> np.ndarray:
    """Fill a grid of ``size`` points from values at nodes 0, stride, 2 stride, ... (+ size - 1).

    Uniform Catmull-Rom cubic between regular nodes (exact at the nodes, linear extrapolation
    of the neighbours at the ends); linear in a last, shorter interval. ``vals`` has shape
    (N, number of nodes).
    """
    s = stride
    nreg = (size - 1) // s + 1  # regular nodes 0, s, ..., (nreg - 1) s
    out = np.empty((vals.shape[0], size))
    v = vals[:, :nreg]
    out[:, : (nreg - 1) * s + 1 : s] = v
    if nreg >= 2:
        vp = np.concatenate([2 * v[:, :1] - v[:, 1:2], v, 2 * v[:, -1:] - v[:, -2:-1]], axis=1)
        p0, p1, p2, p3 = vp[:, :-3], vp[:, 1:-2], vp[:, 2:-1], vp[:, 3:]
        c1 = 0.5 * (p2 - p0)
        c2 = 0.5 * (2 * p0 - 5 * p1 + 4 * p2 - p3)
        c3 = 0.5 * (-p0 + 3 * p1 - 3 * p2 + p3)
        for r in range(1, s):
            t = r / s
            out[:, r : (nreg - 1) * s : s] = p1 + t * (c1 + t * (c2 + t * c3))
    last = (nreg - 1) * s
    if last < size - 1:  # irregular last interval: linear
        out[:, size - 1] = vals[:, -1]
        t = (np.arange(last + 1, size - 1) - last) / (size - 1 - last)
        out[:, last + 1 : size - 1] = v[:, -1:] * (1 - t) + vals[:, -1:] * t
    return out


class _torch_threads:
    """Context manager: temporarily set torch's intra-op threads (None: unchanged)."""

    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.old = torch.get_num_threads()
        if self.n is not None:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        if self.n is not None:
            torch.set_num_threads(self.old)


def default_workers() -> int:
    """Worker threads of the CPU engine: the CPUs this process may use (at most 8)."""
    import os

    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    return max(1, min(8, n))


def lsf_sigma_from_resolution(wave, resolution) -> np.ndarray:
    """Gaussian LSF sigma [Angstrom] for resolving power R = lambda / FWHM."""
    return np.asarray(wave, dtype=np.float64) / (float(resolution) * FWHM_SIGMA)


def _zero_outside(block, za: int, zb: int, redshift_axis_second: bool) -> None:
    """Zero a new block of the packed systems outside the redshift rows [za, zb)."""
    if redshift_axis_second:
        block[:, :za] = 0.0
        block[:, zb:] = 0.0
    else:
        block[:za] = 0.0
        block[zb:] = 0.0
