"""Batched LCF vs a per-spectrum lmfit loop (and Larch ``lincombo_fit`` when installed).

10 000 spectra mixed from the real Fe standards (../shared/data/xanes/FeLibNov2021.nor,
analytic edges when absent) with noise; two and four standards; weights >= 0 summing to 1.
The loops are timed on a subset and extrapolated per spectrum (said in the table); the
largest weight difference is taken over that subset.

    python benchmarks/bench_lcf.py [--n 10000] [--loop 200]
"""

from __future__ import annotations

import argparse
import time

import lmfit
import numpy as np

from operando.io.shared_data import find_shared_data
from operando.io.xas.text import read_xas_text
from operando.xanes.lcf import lcf


def _standards() -> tuple[np.ndarray, dict[str, np.ndarray], str]:
    d = find_shared_data()
    if d is not None and (d / "xanes" / "FeLibNov2021.nor").is_file():
        lib = read_xas_text(d / "xanes" / "FeLibNov2021.nor")
        names = ["LiFe(II)PO4", "Fe(III)PO4", "Magnetite", "Goethite"]
        return lib.energy, {n: lib.column(n) for n in names}, "FeLibNov2021.nor"
    e = np.linspace(7090, 7200, 400)
    out = {f"edge{k}": 0.5 + np.arctan((e - 7118 - 2 * k) / 1.5) / np.pi
           + 0.5 / (1 + ((e - 7126 - 2 * k) / 3) ** 2) for k in range(4)}
    return e, out, "analytic"


def _lmfit_one(y: np.ndarray, S: np.ndarray) -> np.ndarray:
    k = S.shape[1]
    p = lmfit.Parameters()
    for j in range(k):
        p.add(f"c{j}", value=1.0 / k, min=0.0, max=1.0)
    p[f"c{k - 1}"].expr = "1-" + "-".join(f"c{j}" for j in range(k - 1))

    def resid(pars: lmfit.Parameters) -> np.ndarray:
        w = np.array([pars[f"c{j}"].value for j in range(k)])
        return S @ w - y

    out = lmfit.minimize(resid, p)
    return np.array([out.params[f"c{j}"].value for j in range(k)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--loop", type=int, default=200, help="spectra timed in the loops")
    args = ap.parse_args()
    e, stds_all, source = _standards()
    win = (e >= 7100) & (e <= 7180)
    rng = np.random.default_rng(0)
    try:
        from larch import Group
        from larch.math import lincombo_fit
    except ImportError:
        lincombo_fit = None
    rows = []
    for k in (2, 4):
        names = list(stds_all)[:k]
        S_full = np.column_stack([stds_all[n] for n in names])
        w_true = rng.dirichlet(np.ones(k), args.n)
        Y = w_true @ S_full.T + rng.normal(0, 0.005, (args.n, e.size))
        std = {n: (e, stds_all[n]) for n in names}
        t = time.perf_counter()
        res = lcf(e, Y, std, emin=7100, emax=7180)
        t_batch = time.perf_counter() - t
        sub = np.linspace(0, args.n - 1, args.loop).astype(int)
        S = S_full[win]
        t = time.perf_counter()
        w_lm = np.array([_lmfit_one(Y[i, win], S) for i in sub])
        t_lm = (time.perf_counter() - t) / sub.size
        rows.append((k, "batched (numpy)", args.n, t_batch, t_batch / args.n, 1.0, "-"))
        rows.append((k, f"lmfit loop ({sub.size} timed)", sub.size, t_lm * args.n, t_lm,
                     t_lm * args.n / t_batch,
                     f"{np.max(np.abs(w_lm - res.weights[sub])):.1e}"))
        if lincombo_fit is not None:
            comps = [Group(energy=e, norm=stds_all[n], filename=n) for n in names]
            t = time.perf_counter()
            w_lx = []
            for i in sub:
                out = lincombo_fit(Group(energy=e, norm=Y[i]), comps, minvals=[0] * k,
                                   xmin=7100, xmax=7180)
                w_lx.append([out.weights[n] for n in names])
            t_lx = (time.perf_counter() - t) / sub.size
            rows.append((k, f"Larch lincombo_fit ({sub.size} timed)", sub.size, t_lx * args.n,
                         t_lx, t_lx * args.n / t_batch,
                         f"{np.max(np.abs(np.array(w_lx) - res.weights[sub])):.1e}"))
    print(f"LCF of {args.n} spectra, window 7100-7180 eV ({int(win.sum())} points), standards "
          f"from {source}; loop times extrapolated from the timed subset to {args.n} spectra")
    head = ("k", "method", "timed", "time for n (s)", "per spectrum (s)", "speed-up",
            "max |Δw| vs batched")
    print(f"{head[0]:>2} {head[1]:<34} {head[2]:>6} {head[3]:>15} {head[4]:>17} {head[5]:>9} "
          f"{head[6]:>20}")
    for k, m, nt, tn, ts, sp, dw in rows:
        print(f"{k:>2} {m:<34} {nt:>6} {tn:>15.3f} {ts:>17.2e} {sp:>8.0f}x {dw:>20}")


if __name__ == "__main__":
    main()
