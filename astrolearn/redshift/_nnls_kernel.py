"""Compiled CPU kernel (numba) of :func:`astrolearn.redshift.nnls.nnls_packed_numba`.

Exact Lawson-Hanson NNLS for each system of a packed batch, in float64, parallel over blocks
of systems (the caller runs several threads: the kernel releases the GIL). The passive-set Cholesky factor is updated incrementally when a variable
enters (O(p^2)) and rebuilt only when variables leave. Imported lazily: importing this module
compiles the kernel or loads it from numba's cache.
"""

import numba
import numpy as np


@numba.njit(cache=True, inline="always", error_model="numpy", fastmath=True)
def _gs(G, sc, a, c):
    return G[a, c] * sc[a] * sc[c]


@numba.njit(cache=True, inline="always", error_model="numpy", fastmath=True)
def _add_row(G, sc, idx, p, j, L, ridge):
    """Append variable j to the Cholesky factor of the passive set idx[:p]; False if dependent."""
    for a in range(p):
        s = _gs(G, sc, j, idx[a])
        for k in range(a):
            s -= L[a, k] * L[p, k]
        L[p, a] = s / L[a, a]
    d = 1.0 + ridge
    for k in range(p):
        d -= L[p, k] * L[p, k]
    if d <= 1e-9:
        return False
    L[p, p] = np.sqrt(d)
    idx[p] = j
    return True


@numba.njit(cache=True, inline="always", error_model="numpy", fastmath=True)
def _solve(L, hs, idx, p, y, out):
    for a in range(p):
        s = hs[idx[a]]
        for k in range(a):
            s -= L[a, k] * y[k]
        y[a] = s / L[a, a]
    for a in range(p - 1, -1, -1):
        s = y[a]
        for k in range(a + 1, p):
            s -= L[k, a] * out[k]
        out[a] = s / L[a, a]


@numba.njit(cache=True, error_model="numpy", fastmath=True)
def _lh_system(G, hs, sc, usable, x, w, P, L, y, sol, idx, tmp, K, max_iter, ridge, thr, p):
    """Lawson-Hanson from the feasible point x with passive set idx[:p] (factor in L)."""
    for it in range(max_iter):
        jbest = -1
        wbest = thr
        for k in range(K):
            if usable[k] and not P[k] and w[k] > wbest:
                wbest = w[k]
                jbest = k
        if jbest < 0:
            break
        if not _add_row(G, sc, idx, p, jbest, L, ridge):
            usable[jbest] = False  # numerically dependent on the passive set
            continue
        P[jbest] = True
        p += 1
        for inner in range(K + 1):
            _solve(L, hs, idx, p, y, sol)
            feasible = True
            for a in range(p):
                if sol[a] <= 0.0:
                    feasible = False
            if feasible:
                for a in range(p):
                    x[idx[a]] = sol[a]
                break
            alpha = 2.0
            amin = -1
            xmax = 0.0
            for a in range(p):
                k = idx[a]
                if x[k] > xmax:
                    xmax = x[k]
                if sol[a] <= 0.0:
                    t = x[k] / (x[k] - sol[a])
                    if t < alpha:
                        alpha = t
                        amin = a
            npn = 0
            for a in range(p):
                k = idx[a]
                x[k] += alpha * (sol[a] - x[k])
                # the blocking variable leaves exactly; others when they reach ~0
                if a == amin or x[k] <= 1e-12 * xmax:
                    x[k] = 0.0
                    P[k] = False
                else:
                    tmp[npn] = k
                    npn += 1
            p = 0  # rebuild the factor on the remaining passive set
            for a in range(npn):
                if _add_row(G, sc, idx, p, tmp[a], L, ridge):
                    p += 1
                else:
                    P[tmp[a]] = False
                    x[tmp[a]] = 0.0
            if p == 0:
                break
        _gradient(G, hs, sc, usable, P, x, idx, p, w, K)
    return p


@numba.njit(cache=True, inline="always", error_model="numpy", fastmath=True)
def _gradient(G, hs, sc, usable, P, x, idx, p, w, K):
    for k in range(K):
        if usable[k] and not P[k]:
            acc = hs[k]
            for a in range(p):
                acc -= _gs(G, sc, k, idx[a]) * x[idx[a]]
            w[k] = acc


@numba.njit(nogil=True, cache=True, error_model="numpy", fastmath=True)
def lawson_hanson_packed(Ap, bp, ri, rj, K, max_iter, ridge, tol, x_out, red_out, need_x):
    """Solve packed systems (see ``nnls_packed_numba``); writes ``x_out`` and ``red_out``.

    ``Ap`` (N, Z, R) and ``bp`` (N, Z, K): the Z systems of a row are solved in order, each
    starting from the passive set of the previous one (adjacent redshifts of a spectrum have
    nearly the same solution); the warm start is kept only when it is feasible, otherwise
    Lawson-Hanson starts from x = 0, so every result is exact.
    """
    N, Z, R = Ap.shape
    for n in range(N):
        G = np.zeros((K, K))
        hs = np.zeros(K)
        sc = np.zeros(K)
        x = np.zeros(K)
        w = np.zeros(K)
        L = np.zeros((K, K))
        y = np.zeros(K)
        sol = np.zeros(K)
        idx = np.zeros(K, np.int64)
        tmp = np.zeros(K, np.int64)
        prev = np.zeros(K, np.int64)
        P = np.zeros(K, np.bool_)
        usable = np.zeros(K, np.bool_)
        nprev = 0
        for z in range(Z):
            for r in range(R):  # entries outside the pattern stay 0 for every system
                v = Ap[n, z, r]
                G[ri[r], rj[r]] = v
                G[rj[r], ri[r]] = v
            dmax = 0.0
            for k in range(K):
                if G[k, k] > dmax:
                    dmax = G[k, k]
            hmax = 0.0
            for k in range(K):
                usable[k] = G[k, k] > dmax * 1e-14 and G[k, k] > 0.0
                sc[k] = 1.0 / np.sqrt(G[k, k]) if usable[k] else 0.0
                hs[k] = bp[n, z, k] * sc[k]
                if abs(hs[k]) > hmax:
                    hmax = abs(hs[k])
                x[k] = 0.0
                P[k] = False
            thr = tol * hmax
            # warm start: previous passive set, kept if its least-squares solution is feasible
            p = 0
            for a in range(nprev):
                k = prev[a]
                if usable[k] and _add_row(G, sc, idx, p, k, L, ridge):
                    p += 1
            if p > 0:
                _solve(L, hs, idx, p, y, sol)
                ok = True
                for a in range(p):
                    if sol[a] <= 0.0:
                        ok = False
                if ok:
                    for a in range(p):
                        x[idx[a]] = sol[a]
                        P[idx[a]] = True
                else:
                    p = 0
            for k in range(K):
                w[k] = hs[k]
            _gradient(G, hs, sc, usable, P, x, idx, p, w, K)
            p = _lh_system(G, hs, sc, usable, x, w, P, L, y, sol, idx, tmp, K, max_iter, ridge, thr, p)
            red = 0.0
            for a in range(p):
                ka = idx[a]
                acc = 0.0
                for c in range(p):
                    kc = idx[c]
                    acc += (1.0 if ka == kc else _gs(G, sc, ka, kc)) * x[kc]
                red += x[ka] * (2.0 * hs[ka] - acc)
            if need_x:
                for k in range(K):
                    x_out[n, z, k] = x[k] * sc[k] if P[k] else 0.0
            red_out[n, z] = red
            nprev = p
            for a in range(p):
                prev[a] = idx[a]
