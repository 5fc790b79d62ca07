"""Fit of the float32 tanh in csrc/hinn/activation.h: tanh(x) ≈ x P(u) / Q(u), u = x²/81, |x| <= 9.

Linearised least squares for the relative error (Loeb: weights 1/(tanh(x) Q_prev)), then Lawson
reweighting toward equal ripple; prints the coefficients and the error evaluated in float32.

    python benchmarks/fit_tanh.py
"""

import numpy as np

C, N_P, N_Q = 9.0, 7, 4  # clamp; P has 7 coefficients (x, x³, ..., x¹³), Q has 4 (1, x², x⁴, x⁶)


def fit(n=40000, iterations=80):
    x = (C / 2) * (1 - np.cos(np.linspace(0, np.pi, n)))[1:]  # Chebyshev-spaced on (0, C]
    y, u = np.tanh(x), (x / C) ** 2
    Xp = np.stack([x * u**k for k in range(N_P)], 1)
    Uq = np.stack([u**k for k in range(1, N_Q)], 1)
    q_prev, lawson, best = np.ones_like(x), np.ones_like(x), None
    for it in range(iterations):
        w = lawson / (y * q_prev)
        sol, *_ = np.linalg.lstsq(np.hstack([Xp, -(y[:, None] * Uq)]) * w[:, None], y * w, rcond=None)
        P, Q = sol[:N_P], np.concatenate([[1.0], sol[N_P:]])
        q_prev = 1 + Uq @ Q[1:]
        rel = (Xp @ P / q_prev - y) / y
        if best is None or np.abs(rel).max() < best[0]:
            best = (np.abs(rel).max(), P, Q)
        if it >= 15:
            lawson = lawson * np.abs(rel) ** 0.25
            lawson /= lawson.max()
    return best


def float32_error(P, Q):
    x = np.concatenate([np.linspace(-9.5, 9.5, 400001), np.logspace(-12, 0, 3000), -np.logspace(-12, 0, 3000)])
    x = x.astype(np.float32)
    xc = np.clip(x, np.float32(-C), np.float32(C))
    u = xc * xc * np.float32(1 / 81)
    p, q = np.float32(P[-1]), np.float32(Q[-1])
    for c in P[-2::-1]:
        p = p * u + np.float32(c)
    for c in Q[-2::-1]:
        q = q * u + np.float32(c)
    t = np.clip(xc * p / q, np.float32(-1), np.float32(1)).astype(np.float64)
    ref = np.tanh(x.astype(np.float64))
    nz = ref != 0
    return np.max(np.abs(t - ref)[nz] / np.abs(ref[nz]))


if __name__ == "__main__":
    err, P, Q = fit()
    print(f"relative error in exact arithmetic {err:.2e}; evaluated in float32 {float32_error(P, Q):.2e}")
    print("P:", ", ".join(f"{v:.9e}" for v in P))
    print("Q:", ", ".join(f"{v:.9e}" for v in Q))
