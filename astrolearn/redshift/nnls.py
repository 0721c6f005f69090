"""Batched non-negative least squares on small normal equations (torch, CPU or GPU).

Each system is ``min_x x^T A x - 2 b^T x`` subject to ``x >= 0``, with A (K x K) symmetric
positive semi-definite and K small (line groups + continuum templates, <= ~25). Millions of
systems (one per spectrum and redshift) are solved together:

- The matrices are stored *packed*: one row of a (R, B) tensor per structurally non-zero
  entry (i >= j) of a :class:`SymPattern`, the batch along the last axis, so every arithmetic
  step is one vectorised operation over all systems. Emission-line groups whose windows do not
  overlap are uncoupled; ordering them before the continuum templates gives an "arrowhead"
  matrix whose Cholesky factor has no fill-in, and the factorisation skips the zeros.
- Active-set method (Lawson-Hanson with bulk removals): solve on the passive set P
  (initially every usable variable); drop from P all variables whose solution is <= 0 and
  re-solve; once feasible, check the KKT conditions (scaled gradient b - A x <= tol outside P),
  add the most violating variable and repeat. Only systems that changed are re-solved.
- Variables with a zero diagonal (a line outside the observed range at that redshift) are
  fixed at 0. Systems are Jacobi-scaled (unit diagonal) with a small relative ridge, so nearly
  collinear templates stay solvable in float32.
"""

from __future__ import annotations

import torch


class SymPattern:
    """Sparsity pattern of a symmetric K x K matrix and of its Cholesky factor.

    Parameters
    ----------
    K : int
        Matrix size.
    nonzero : iterable of (int, int)
        Structurally non-zero entries (either triangle); the diagonal is always included.

    Attributes
    ----------
    entries : list of (int, int)
        Lower-triangle entries (i >= j) of the factor pattern (input pattern + fill-in); row r
        of a packed tensor holds entry ``entries[r]``.
    index : dict
        (i, j) -> packed row, for i >= j.
    """

    def __init__(self, K: int, nonzero, order=None):
        self.K = int(K)
        nz = {(max(i, j), min(i, j)) for i, j in nonzero} | {(i, i) for i in range(K)}
        cols: list[set[int]] = [set() for _ in range(K)]  # rows i > j with L[i, j] != 0
        for i, j in nz:
            if i > j:
                cols[j].add(i)
        for j in range(K):  # symbolic factorisation: fill-in
            rows = sorted(cols[j])
            for a_idx, a in enumerate(rows):
                for b in rows[a_idx + 1:]:
                    cols[a].add(b)
        full = [(i, i) for i in range(K)] + sorted(
            ((i, j) for j in range(K) for i in cols[j]), key=lambda e: (e[1], e[0]))
        if order is not None:  # caller-chosen layout first (e.g. contiguous blocks), then the rest
            first = []
            for i, j in order:
                e = (max(i, j), min(i, j))
                if e not in first:
                    first.append(e)
            if not set(first) <= set(full):
                raise ValueError("order lists entries outside the pattern")
            seen = set(first)
            full = first + [e for e in full if e not in seen]
        self.entries = full
        self.index = {e: r for r, e in enumerate(self.entries)}
        self.lower = [sorted(cols[j]) for j in range(K)]  # column j: rows below the diagonal
        self.left = [sorted(j for j in range(i) if (i, j) in self.index) for i in range(K)]

    @property
    def size(self) -> int:
        """Number of packed rows R."""
        return len(self.entries)

    def pack(self, G: torch.Tensor) -> torch.Tensor:
        """Dense (B, K, K) -> packed (R, B)."""
        ii = torch.tensor([e[0] for e in self.entries], device=G.device)
        jj = torch.tensor([e[1] for e in self.entries], device=G.device)
        return G[:, ii, jj].T.contiguous()

    def matvec(self, A: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """A x for packed A (R, B) and x (K, B)."""
        out = torch.zeros_like(x)
        for r, (i, j) in enumerate(self.entries):
            out[i].addcmul_(A[r], x[j])
            if i != j:
                out[j].addcmul_(A[r], x[i])
        return out


def cholesky_solve(A: torch.Tensor, b: torch.Tensor, pat: SymPattern, tiny: float = 1e-30) -> torch.Tensor:
    """Solve A x = b for packed SPD matrices A (R, B) and right-hand sides b (K, B)."""
    K = pat.K
    L: dict[tuple[int, int], torch.Tensor] = {}
    inv = [None] * K
    for j in range(K):
        s = A[pat.index[(j, j)]].clone()
        for k in pat.left[j]:
            s.addcmul_(L[(j, k)], L[(j, k)], value=-1.0)
        inv[j] = torch.rsqrt(s.clamp_min_(tiny))
        for i in pat.lower[j]:
            r = A[pat.index[(i, j)]].clone()
            for k in pat.left[j]:
                if (i, k) in pat.index:
                    r.addcmul_(L[(i, k)], L[(j, k)], value=-1.0)
            L[(i, j)] = r.mul_(inv[j])
    y = [None] * K
    for i in range(K):
        r = b[i].clone()
        for k in pat.left[i]:
            r.addcmul_(L[(i, k)], y[k], value=-1.0)
        y[i] = r.mul_(inv[i])
    x = [None] * K
    for i in range(K - 1, -1, -1):
        r = y[i].clone()
        for k in pat.lower[i]:
            r.addcmul_(L[(k, i)], x[k], value=-1.0)
        x[i] = r.mul_(inv[i])
    return torch.stack(x)


def _solve_passive(A, b, P, pat: SymPattern, ridge: float) -> torch.Tensor:
    """Least squares restricted to the passive set P (K, B) (0/1 floats); others are 0."""
    Am = torch.empty_like(A)
    for r, (i, j) in enumerate(pat.entries):
        if i == j:
            # unit-diagonal scaled system: diag -> (1 + ridge) on P, 1 elsewhere
            Am[r] = A[r] * P[i] + ridge * P[i] + (1.0 - P[i])
        else:
            Am[r] = A[r] * P[i] * P[j]
    return cholesky_solve(Am, b * P, pat) * P


def nnls_packed(A: torch.Tensor, b: torch.Tensor, pat: SymPattern, max_iter: int | None = None,
                ridge: float | None = None, tol: float | None = None) -> torch.Tensor:
    """Solve packed NNLS problems.

    Parameters
    ----------
    A : Tensor, shape (R, B)
        Packed Gram matrices (``pat.entries``).
    b : Tensor, shape (K, B)
        Right-hand sides.
    pat : SymPattern
    max_iter : int, optional
        Maximum active-set steps (default 3 K + 5).
    ridge : float, optional
        Relative ridge on the unit diagonal (default 1e-6 in float32, 1e-12 in float64).
    tol : float, optional
        KKT tolerance relative to max |scaled b| (default 1e-5 / 1e-10).

    Returns
    -------
    Tensor, shape (K, B)
        Non-negative solutions.
    """
    K = pat.K
    f64 = A.dtype == torch.float64
    ridge = ridge if ridge is not None else (1e-12 if f64 else 1e-6)
    tol = tol if tol is not None else (1e-10 if f64 else 1e-5)
    max_iter = max_iter if max_iter is not None else 3 * K + 5
    diag_rows = [pat.index[(i, i)] for i in range(K)]
    d = A[diag_rows]
    dmax = d.amax(dim=0, keepdim=True).clamp_min(torch.finfo(A.dtype).tiny)
    usable = d > dmax * (1e-14 if f64 else 1e-10)
    s = torch.where(usable, torch.rsqrt(torch.where(usable, d, torch.ones_like(d))), torch.zeros_like(d))
    ii = torch.tensor([e[0] for e in pat.entries], device=A.device)
    jj = torch.tensor([e[1] for e in pat.entries], device=A.device)
    As = A * s[ii] * s[jj]
    bs = b * s
    thresh = tol * bs.abs().amax(dim=0).clamp_min(torch.finfo(A.dtype).tiny)
    P = usable.to(A.dtype)
    y = _solve_passive(As, bs, P, pat, ridge)
    active = torch.arange(A.shape[1], device=A.device)
    for _ in range(max_iter):
        if active.numel() == 0:
            break
        ya, Pa = y.index_select(1, active), P.index_select(1, active)
        neg = (Pa > 0) & (ya <= 0)
        has_neg = neg.any(dim=0)
        grad = bs.index_select(1, active) - pat.matvec(As.index_select(1, active), ya)
        viol = usable.index_select(1, active) & (Pa == 0) & (grad > thresh.index_select(0, active))
        add = ~has_neg & viol.any(dim=0)
        changed = has_neg | add
        if not bool(changed.any()):
            break
        newP = Pa * (~neg).to(Pa.dtype)
        # most violating variable (argmax over the small K axis, done elementwise)
        gv = torch.where(viol, grad, torch.full_like(grad, -torch.inf))
        best = gv[0].clone()
        arg = torch.zeros_like(best, dtype=torch.long)
        for k in range(1, K):
            better = gv[k] > best
            best = torch.where(better, gv[k], best)
            arg = torch.where(better, torch.full_like(arg, k), arg)
        onehot = (torch.arange(K, device=A.device)[:, None] == arg[None, :]) & add[None, :]
        newP = torch.where(onehot, torch.ones_like(newP), newP)
        cidx = torch.nonzero(changed).squeeze(1)
        sub = active.index_select(0, cidx)
        Psub = newP.index_select(1, cidx)
        P.index_copy_(1, sub, Psub)
        y.index_copy_(1, sub, _solve_passive(As.index_select(1, sub), bs.index_select(1, sub), Psub, pat, ridge))
        active = sub
    return y.clamp_min(0.0) * P * s


def nnls(G: torch.Tensor, h: torch.Tensor, **kwargs) -> torch.Tensor:
    """Dense convenience wrapper: G (B, K, K), h (B, K) -> x (B, K) >= 0."""
    K = G.shape[-1]
    pat = SymPattern(K, [(i, j) for i in range(K) for j in range(i)])
    return nnls_packed(pat.pack(G), h.T.contiguous(), pat, **kwargs).T


# ---------------------------------------------------------------------------------------------
# CPU kernel (numba): exact Lawson-Hanson per system, parallel over systems.
# ---------------------------------------------------------------------------------------------

_NUMBA_KERNEL = None


def numba_available() -> bool:
    """True when the compiled CPU kernel can be used (``numba`` importable)."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def nnls_packed_numba(A, b, pat: SymPattern, need_x: bool = True, max_iter: int | None = None,
                      ridge: float = 1e-10, tol: float = 1e-10):
    """CPU NNLS of packed systems with the compiled Lawson-Hanson kernel.

    Parameters
    ----------
    A : ndarray, shape (N, Z, R)
        Packed Gram matrices (``pat.entries``), float32 or float64, system-major: the Z
        systems of row n (consecutive redshifts of a spectrum) are solved in order, each
        warm-started from the passive set of the previous one (kept only when feasible, so
        results are exact). Use Z = 1 for independent systems.
    b : ndarray, shape (N, Z, K)
    pat : SymPattern
    need_x : bool
        Return the solutions (else only the chi2 reductions).
    max_iter : int, optional
        Maximum variables added per system (default 3 K + 5).
    ridge, tol : float
        Relative ridge and KKT tolerance of the Jacobi-scaled problem (float64 arithmetic).

    Returns
    -------
    x : ndarray, shape (N, Z, K), float64, or None
        Non-negative solutions.
    reduction : ndarray, shape (N, Z), float64
        ``2 b.x - x.A.x``: the chi2 of the fit is ``f.W.f - reduction``.
    """
    import numpy as np

    global _NUMBA_KERNEL
    if _NUMBA_KERNEL is None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from ._nnls_kernel import lawson_hanson_packed

        _NUMBA_KERNEL = lawson_hanson_packed
    A = np.ascontiguousarray(A)
    b = np.ascontiguousarray(b)
    if A.ndim == 2:
        A, b = A[:, None, :], b[:, None, :]
    N, Z, R = A.shape
    K = pat.K
    ri = np.array([e[0] for e in pat.entries], dtype=np.int64)
    rj = np.array([e[1] for e in pat.entries], dtype=np.int64)
    x = np.zeros((N, Z, K) if need_x else (1, 1, K))
    red = np.zeros((N, Z))
    _NUMBA_KERNEL(A, b, ri, rj, K, max_iter or 3 * K + 5, ridge, tol, x, red, need_x)
    return (x if need_x else None), red
