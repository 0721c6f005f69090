"""Batched NNLS solvers against scipy.optimize.nnls."""

import numpy as np
import pytest
import torch
from scipy.optimize import nnls as scipy_nnls

from astrolearn.redshift.nnls import SymPattern, nnls, nnls_packed_numba, numba_available


def random_problems(B=300, K=7, M=40, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(B, M, K))
    A[:, :, :3] = np.abs(A[:, :, :3]) + 2.0  # nearly collinear positive "templates"
    A[:, :, 5] = 0.0  # an unusable column (line outside the spectrum)
    f = rng.normal(size=(B, M)) + 0.3 * A[:, :, 0]
    G = np.einsum("bmk,bml->bkl", A, A)
    h = np.einsum("bmk,bm->bk", A, f)
    ref = np.array([scipy_nnls(A[i], f[i])[1] ** 2 for i in range(B)])
    return G, h, f, ref


def chi2(f, G, h, x):
    return np.einsum("bm,bm->b", f, f) - 2 * np.einsum("bk,bk->b", h, x) + np.einsum("bk,bkl,bl->b", x, G, x)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_torch_nnls_matches_scipy(dtype):
    G, h, f, ref = random_problems()
    x = nnls(torch.tensor(G, dtype=dtype), torch.tensor(h, dtype=dtype)).double().numpy()
    assert (x >= 0).all() and np.all(x[:, 5] == 0)
    tol = 1e-8 if dtype == torch.float64 else 1e-3
    assert np.abs(chi2(f, G, h, x) - ref).max() < tol * max(1.0, ref.max())


@pytest.mark.skipif(not numba_available(), reason="numba not installed")
def test_numba_nnls_matches_scipy_and_warm_start_is_exact():
    G, h, f, ref = random_problems()
    K = G.shape[-1]
    pat = SymPattern(K, [(i, j) for i in range(K) for j in range(i)])
    A = pat.pack(torch.tensor(G)).T.numpy()  # (B, R)
    x, red = nnls_packed_numba(A[:, None, :], h[:, None, :], pat)
    assert np.abs(np.einsum("bm,bm->b", f, f) - red[:, 0] - ref).max() < 1e-8
    assert np.abs(chi2(f, G, h, x[:, 0]) - ref).max() < 1e-8
    # the same problems as one sequence (warm starts) give the same answers
    x2, red2 = nnls_packed_numba(A[None], h[None], pat)
    assert np.abs(red2[0] - red[:, 0]).max() < 1e-8


def test_arrowhead_pattern_has_no_fill_in():
    # 3 uncoupled lines then 2 templates coupled to everything
    nz = [(t, j) for t in (3, 4) for j in range(5)]
    pat = SymPattern(5, nz)
    assert (1, 0) not in pat.index and (2, 1) not in pat.index
    assert pat.size == 5 + 3 * 2 + 1
    # a chain 0-1, 1-2 with 0 eliminated first fills in (2, 1) only if both are below 0
    pat = SymPattern(3, [(1, 0), (2, 0)])
    assert (2, 1) in pat.index
