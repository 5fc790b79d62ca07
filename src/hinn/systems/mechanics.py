"""Physical systems: spring–mass, pendulum, driven oscillator, planar two- and three-body gravitation."""

from __future__ import annotations

import math
from typing import Tuple

import numpy as np
import torch

from .base import System


class SpringMass(System):
    r"""Mass m on a spring of stiffness k: :math:`H = p^2/2m + k q^2/2` (exact solution).

    Initial states: (q0, p0) uniform on an annulus, radius U(0.2, 1) in the (q, p√(1/(mk))) plane."""

    name, dim, default_h = "spring", 1, 0.1

    def __init__(self, m: float = 1.0, k: float = 1.0) -> None:
        self.m, self.k = float(m), float(k)

    def hamiltonian(self, t, p, q):
        return (p**2).sum(1) / (2 * self.m) + self.k * (q**2).sum(1) / 2

    def vector_field(self, t, p, q):
        return -self.k * q, p / self.m

    def sample_initial(self, n, rng):
        r = rng.uniform(0.2, 1.0, n)
        phi = rng.uniform(0, 2 * np.pi, n)
        return (r * np.sin(phi) * math.sqrt(self.m * self.k))[:, None], (r * np.cos(phi))[:, None]

    def exact(self, t, p0, q0):
        w = math.sqrt(self.k / self.m)
        c, s = np.cos(w * (t - t[0]))[None, :, None], np.sin(w * (t - t[0]))[None, :, None]
        p0, q0 = p0[:, None, :], q0[:, None, :]
        return p0 * c - self.m * w * q0 * s, q0 * c + p0 / (self.m * w) * s

    def config(self):
        return {"name": self.name, "m": self.m, "k": self.k}


class Pendulum(System):
    r"""Ideal pendulum: :math:`H = p^2/(2 m l^2) + m g l (1 - \cos q)`. Initial states below the
    separatrix: energy U(0.1, 1.5) m g l, random phase."""

    name, dim, default_h = "pendulum", 1, 0.1

    def __init__(self, m: float = 1.0, l: float = 1.0, g: float = 1.0) -> None:  # noqa: E741
        self.m, self.l, self.g = float(m), float(l), float(g)

    def hamiltonian(self, t, p, q):
        return (p**2).sum(1) / (2 * self.m * self.l**2) + self.m * self.g * self.l * (1 - torch.cos(q)).sum(1)

    def vector_field(self, t, p, q):
        return -self.m * self.g * self.l * torch.sin(q), p / (self.m * self.l**2)

    def sample_initial(self, n, rng):
        E = rng.uniform(0.1, 1.5, n) * self.m * self.g * self.l
        qmax = np.arccos(1 - E / (self.m * self.g * self.l))
        q = rng.uniform(-1, 1, n) * qmax
        p = np.sqrt(2 * self.m * self.l**2 * (E - self.m * self.g * self.l * (1 - np.cos(q))))
        p *= rng.choice([-1.0, 1.0], n)
        return p[:, None], q[:, None]

    def config(self):
        return {"name": self.name, "m": self.m, "l": self.l, "g": self.g}


class DrivenOscillator(System):
    r"""Harmonic oscillator driven by a periodic force (time-dependent):
    :math:`H(t, p, q) = p^2/2 + \omega^2 q^2/2 - F q \cos(\Omega t)` (exact solution, Ω ≠ ω)."""

    name, dim, time_dependent, default_h = "driven", 1, True, 0.1

    def __init__(self, omega: float = 1.0, force: float = 0.5, drive: float = 1.7) -> None:
        if abs(drive - omega) < 1e-6:
            raise ValueError("the drive frequency must differ from the natural frequency (no resonance)")
        self.omega, self.force, self.drive = float(omega), float(force), float(drive)

    def hamiltonian(self, t, p, q):
        return ((p**2).sum(1) + self.omega**2 * (q**2).sum(1)) / 2 - self.force * q.sum(1) * torch.cos(self.drive * t)

    def vector_field(self, t, p, q):
        return -(self.omega**2) * q + self.force * torch.cos(self.drive * t)[:, None], p

    def sample_initial(self, n, rng):
        r = rng.uniform(0.2, 1.0, n)
        phi = rng.uniform(0, 2 * np.pi, n)
        return (r * np.sin(phi) * self.omega)[:, None], (r * np.cos(phi))[:, None]

    def exact(self, t, p0, q0):
        w, F, W = self.omega, self.force, self.drive
        A = F / (w**2 - W**2)  # particular solution A cos(Ω t)
        t0 = t[0]
        # homogeneous part fitted to the initial state at t0
        qh0 = q0 - A * math.cos(W * t0)
        ph0 = p0 + A * W * math.sin(W * t0)
        tau = (t - t0)[None, :, None]
        c, s = np.cos(w * tau), np.sin(w * tau)
        tt = t[None, :, None]
        qh0, ph0 = qh0[:, None, :], ph0[:, None, :]
        q = qh0 * c + ph0 / w * s + A * np.cos(W * tt)
        p = ph0 * c - w * qh0 * s - A * W * np.sin(W * tt)
        return p, q

    def config(self):
        return {"name": self.name, "omega": self.omega, "force": self.force, "drive": self.drive}


class NBody(System):
    r"""Planar gravitational n-body problem. q = (x₁, y₁, …, x_n, y_n), p likewise (d = 2n):

    .. math:: H = \sum_i \frac{|p_i|^2}{2 m_i} - \sum_{i<j} \frac{G m_i m_j}{|r_i - r_j|}
    """

    default_h = 0.1

    def __init__(self, masses: Tuple[float, ...], G: float = 1.0) -> None:
        self.masses = tuple(float(m) for m in masses)
        self.G = float(G)
        self.n = len(self.masses)
        self.dim = 2 * self.n

    def hamiltonian(self, t, p, q):
        m = torch.tensor(self.masses, dtype=p.dtype, device=p.device)
        P = p.view(-1, self.n, 2)
        R = q.view(-1, self.n, 2)
        kin = ((P**2).sum(2) / (2 * m)).sum(1)
        pot = torch.zeros_like(kin)
        for i in range(self.n):
            for j in range(i + 1, self.n):
                pot = pot - self.G * m[i] * m[j] / (R[:, i] - R[:, j]).norm(dim=1)
        return kin + pot

    def vector_field(self, t, p, q):
        m = torch.tensor(self.masses, dtype=p.dtype, device=p.device)
        P = p.view(-1, self.n, 2)
        R = q.view(-1, self.n, 2)
        F = torch.zeros_like(R)
        for i in range(self.n):
            for j in range(i + 1, self.n):
                diff = R[:, j] - R[:, i]
                f = self.G * m[i] * m[j] * diff / (diff.norm(dim=1, keepdim=True) ** 3)
                F[:, i] += f
                F[:, j] -= f
        return F.reshape(p.shape), (P / m[:, None]).reshape(q.shape)

    def config(self):
        return {"name": self.name, "masses": list(self.masses), "G": self.G}


class TwoBody(NBody):
    """Two bodies; initial states: body 1 at radius U(0.5, 1.5) from the centre of mass at a random
    angle, body 2 opposite, near-circular velocities scaled by (1 + 0.05 N(0, 1)) (the HNN protocol)."""

    name = "two-body"

    def __init__(self, m1: float = 1.0, m2: float = 1.0, G: float = 1.0) -> None:
        super().__init__((m1, m2), G)

    def sample_initial(self, n, rng):
        m1, m2 = self.masses
        r = rng.uniform(0.5, 1.5, n)
        phi = rng.uniform(0, 2 * np.pi, n)
        u = np.stack([np.cos(phi), np.sin(phi)], 1)  # direction of body 1
        v = np.stack([-np.sin(phi), np.cos(phi)], 1)  # its tangent
        M = m1 + m2
        # separation s = r (1 + m1/m2) when body 1 is at r from the centre of mass
        s = r * M / m2
        omega = np.sqrt(self.G * M / s**3) * (1 + 0.05 * rng.standard_normal(n))
        r1 = u * (r * 1.0)[:, None]
        r2 = -u * (r * m1 / m2)[:, None]
        v1 = v * (omega * r)[:, None]
        v2 = -v * (omega * r * m1 / m2)[:, None]
        q = np.concatenate([r1, r2], 1)
        p = np.concatenate([m1 * v1, m2 * v2], 1)
        return p, q


class ThreeBody(NBody):
    """Three equal masses on a circle at 120° (radius U(0.9, 1.2)), circular velocities perturbed by up
    to ±20 % per component (the HNN protocol)."""

    name = "three-body"

    def __init__(self, m: float = 1.0, G: float = 1.0) -> None:
        super().__init__((m, m, m), G)

    def sample_initial(self, n, rng):
        m = self.masses[0]
        r = rng.uniform(0.9, 1.2, n)
        phi = rng.uniform(0, 2 * np.pi, n)
        qs, ps = [], []
        # circular speed of three equal masses on a circle of radius r: v² = G m / (√3 r)
        speed = np.sqrt(self.G * m / (math.sqrt(3) * r))
        for k in range(3):
            a = phi + 2 * np.pi * k / 3
            qs.append(np.stack([r * np.cos(a), r * np.sin(a)], 1))
            vel = np.stack([-np.sin(a), np.cos(a)], 1) * speed[:, None]
            vel *= 1 + rng.uniform(-0.2, 0.2, (n, 2))
            ps.append(m * vel)
        p = np.concatenate(ps, 1)
        return p, np.concatenate(qs, 1)


class NonSeparableToy(System):
    r"""A non-separable toy: :math:`H = \tfrac12 (q^2 + 1)(p^2 + 1)`. Closed orbits around the origin,
    on which explicit "symplectic" schemes are not symplectic (Tao 2016 uses it for that reason)."""

    name, dim, default_h = "toy-nonseparable", 1, 0.1

    def hamiltonian(self, t, p, q):
        return 0.5 * ((q**2 + 1) * (p**2 + 1)).sum(1)

    def vector_field(self, t, p, q):
        return -q * (p**2 + 1), p * (q**2 + 1)

    def sample_initial(self, n, rng):
        r = rng.uniform(0.2, 1.0, n)
        phi = rng.uniform(0, 2 * np.pi, n)
        return (r * np.cos(phi))[:, None], (r * np.sin(phi))[:, None]


class DoublePendulum(System):
    r"""Planar double pendulum, unit masses and lengths, gravity g: with Δ = q₁ − q₂,

    .. math::  H = \frac{p_1^2 + 2 p_2^2 - 2 p_1 p_2 \cos\Delta}{2 (1 + \sin^2\Delta)}
               - 2 g \cos q_1 - g \cos q_2,

    non-separable (the kinetic energy depends on q). Initial states: both angles U(−0.8, 0.8) rad,
    momenta U(−0.5, 0.5) — regular, mostly non-chaotic motion."""

    name, dim, default_h = "double-pendulum", 2, 0.05

    def __init__(self, g: float = 1.0) -> None:
        self.g = float(g)

    def hamiltonian(self, t, p, q):
        p1, p2, q1, q2 = p[:, 0], p[:, 1], q[:, 0], q[:, 1]
        dl = q1 - q2
        kin = (p1**2 + 2 * p2**2 - 2 * p1 * p2 * torch.cos(dl)) / (2 * (1 + torch.sin(dl) ** 2))
        return kin - 2 * self.g * torch.cos(q1) - self.g * torch.cos(q2)

    def sample_initial(self, n, rng):
        return rng.uniform(-0.5, 0.5, (n, 2)), rng.uniform(-0.8, 0.8, (n, 2))

    def config(self):
        return {"name": self.name, "g": self.g}
