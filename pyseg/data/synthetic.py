"""Synthetic pets: procedurally drawn animal-like shapes with Oxford-Pets-style trimaps.

Every sample is a pure function of ``(seed, split, index, img_size)``: the same arguments
give the same pixels on any machine, so the set needs no download and no storage. Each
image shows one animal -- body, head, ears, tail, legs, eyes -- of one of two species:

* ``cat``: smaller, a round head with two upright pointed (triangular) ears, no snout,
  a long thin tail curling upwards;
* ``dog``: larger, a head with a long snout and two floppy ears hanging down beside the
  head, a short thick tail.

Pose (orientation, facing direction, head tilt, standing or lying), colors and fur textures
(solid, stripes, spots, two-tone) vary per sample. The background is a textured surface
(stripes, checks, blotches or smooth gradients) cluttered with geometric objects. Animal and
background colors come from the same palette, so color alone does not tell them apart: a
per-pixel (1x1 convolution) classifier cannot solve the task; shape and context can.

With ``cues="body"`` (a second generator; the default ``cues="shape"`` is the one above, and
its pictures do not change) the species is told by evidence on the animal itself, equally
salient for both: cats and dogs have the same size, and the fur carries a high-contrast
pattern over the whole animal, stripes across the body for cats and round spots for dogs
(placed at random but kept apart, so that they do not merge: the spots carry about as much
edge energy as the stripes), in two colors of clearly different brightness. The background
textures use neither pattern (no stripes, spots or wood grain; solid clutter), so no class
can be recognized by the absence of the other's features. On top of that (``decoys``,
default 1.0: every image) the background carries *decoys*: patches of both patterns, striped
and spotted, off the animal and equally often for both species, so stripe- or spot-like
texture alone tells nothing; only the pattern on the animal does, and a faithful heatmap of
either class lies on it. (Without decoys, networks with a large receptive field learned to
answer from stripe- or spot-like background clutter and their maps pointed there.)

Targets follow the Oxford-IIIT Pets trimap convention after the usual 1, 2, 3 -> 0, 1, 2
mapping: ``0`` foreground (the animal), ``1`` background, ``2`` the contour band of
``contour_width`` pixels straddling the animal's outline. With ``task="classification"``
the target is the species index (``0`` cat, ``1`` dog).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

SEGMENTATION_CLASSES = ("foreground", "background", "contour")
SPECIES = ("cat", "dog")
SPLITS = {"train": 0, "val": 1, "test": 2}
GENERATOR_VERSION = 1  # bump when the pictures change; part of the on-disk cache key
# ... and part of the random stream of every sample, so bumping it changes the "shape"
# pictures too: the "body" generator has its own version instead (cache key only).
BODY_GENERATOR_VERSION = 3  # 2: background decoys; 3: spaced dog spots
# The generators (see the module docstring): "shape", the original, and "body".
CUES = ("shape", "body")
DEFAULT_LENGTHS = {"train": 1024, "val": 128, "test": 128}

# Fur-like colors (RGB in [0, 1]); the background draws from them as well.
_FUR = np.array(
    [
        [0.93, 0.90, 0.84],  # cream / white
        [0.85, 0.62, 0.33],  # ginger
        [0.55, 0.36, 0.20],  # brown
        [0.30, 0.20, 0.13],  # dark brown
        [0.12, 0.11, 0.11],  # black
        [0.50, 0.50, 0.52],  # grey
        [0.72, 0.66, 0.55],  # fawn
        [0.80, 0.48, 0.20],  # orange
    ],
    dtype=np.float32,
)


# --------------------------------------------------------------------------- colors

def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6.0) % 6
    f = h * 6.0 - math.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.array(rgb, dtype=np.float32)


def _color(rng: np.random.Generator) -> np.ndarray:
    """A color from the shared palette: fur tones (jittered) half the time, any hue else."""
    if rng.random() < 0.5:
        c = _FUR[rng.integers(len(_FUR))] + rng.normal(0.0, 0.05, 3).astype(np.float32)
    else:
        c = _hsv_to_rgb(rng.random(), rng.uniform(0.1, 0.85), rng.uniform(0.15, 0.95))
    return np.clip(c, 0.0, 1.0)


# ------------------------------------------------------------------------ geometry

class _Canvas:
    """Pixel-center coordinates in units of the image side (0..1), plus shape rasterizers."""

    def __init__(self, size: int) -> None:
        self.size = size
        c = (np.arange(size, dtype=np.float32) + 0.5) / size
        self.y, self.x = np.meshgrid(c, c, indexing="ij")

    def ellipse(self, cx, cy, a, b, angle) -> np.ndarray:
        dx, dy = self.x - cx, self.y - cy
        ca, sa = math.cos(angle), math.sin(angle)
        u = dx * ca + dy * sa
        v = -dx * sa + dy * ca
        return (u / a) ** 2 + (v / b) ** 2 <= 1.0

    def polygon(self, pts) -> np.ndarray:
        """Convex polygon (any winding)."""
        pts = np.asarray(pts, dtype=np.float32)
        inside_pos = np.ones_like(self.x, dtype=bool)
        inside_neg = np.ones_like(self.x, dtype=bool)
        for i in range(len(pts)):
            (x0, y0), (x1, y1) = pts[i], pts[(i + 1) % len(pts)]
            cross = (x1 - x0) * (self.y - y0) - (y1 - y0) * (self.x - x0)
            inside_pos &= cross >= 0
            inside_neg &= cross <= 0
        return inside_pos | inside_neg

    def capsule(self, p0, p1, r0, r1=None) -> np.ndarray:
        """A thick segment whose radius goes linearly from ``r0`` to ``r1``."""
        r1 = r0 if r1 is None else r1
        (x0, y0), (x1, y1) = p0, p1
        dx, dy = x1 - x0, y1 - y0
        ll = dx * dx + dy * dy
        if ll < 1e-12:
            t = np.zeros_like(self.x)
        else:
            t = np.clip(((self.x - x0) * dx + (self.y - y0) * dy) / ll, 0.0, 1.0)
        px, py = x0 + t * dx, y0 + t * dy
        r = r0 + (r1 - r0) * t
        return (self.x - px) ** 2 + (self.y - py) ** 2 <= r * r

    def curve(self, p0, p1, p2, r0, r1, steps: int = 10) -> np.ndarray:
        """A thick quadratic Bezier curve, tapering from ``r0`` to ``r1``."""
        ts = np.linspace(0.0, 1.0, steps + 1)
        pts = [
            ((1 - t) ** 2 * p0[0] + 2 * (1 - t) * t * p1[0] + t * t * p2[0],
             (1 - t) ** 2 * p0[1] + 2 * (1 - t) * t * p1[1] + t * t * p2[1])
            for t in ts
        ]
        m = np.zeros_like(self.x, dtype=bool)
        for i in range(steps):
            ra = r0 + (r1 - r0) * ts[i]
            rb = r0 + (r1 - r0) * ts[i + 1]
            m |= self.capsule(pts[i], pts[i + 1], ra, rb)
        return m


def _rot(angle: float, x: float, y: float) -> tuple[float, float]:
    c, s = math.cos(angle), math.sin(angle)
    return x * c - y * s, x * s + y * c


# ------------------------------------------------------------------------ textures

def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Value noise: a random ``cells x cells`` grid upsampled bicubically, roughly in [-1, 1]."""
    grid = rng.standard_normal((cells, cells)).astype(np.float32)
    img = Image.fromarray(grid, mode="F").resize((size, size), Image.BICUBIC)
    return np.asarray(img, dtype=np.float32)


def _texture(rng: np.random.Generator, cv: _Canvas, kind: str) -> np.ndarray:
    """An ``(S, S, 3)`` texture of the given kind filling the whole canvas."""
    s = cv.size
    c1 = _color(rng)
    if kind == "solid":
        out = np.broadcast_to(c1, (s, s, 3)).copy()
    elif kind in ("stripes", "wood"):
        c2 = _color(rng) if kind == "stripes" else np.clip(c1 * rng.uniform(0.5, 0.8), 0, 1)
        ang = rng.uniform(0, math.pi)
        freq = rng.uniform(4, 12) if kind == "stripes" else rng.uniform(8, 20)
        phase = cv.x * math.cos(ang) + cv.y * math.sin(ang)
        if kind == "wood":
            phase = phase + 0.08 * _smooth_noise(rng, s, 4)
        w = 0.5 + 0.5 * np.sin(2 * math.pi * freq * phase + rng.uniform(0, 2 * math.pi))
        w = np.clip((w - 0.5) * rng.uniform(1.0, 4.0) + 0.5, 0, 1)[..., None]
        out = c1 * (1 - w) + c2 * w
    elif kind == "checks":
        c2 = _color(rng)
        n = rng.uniform(3, 9)
        ang = rng.uniform(0, math.pi / 2)
        u = cv.x * math.cos(ang) + cv.y * math.sin(ang)
        v = -cv.x * math.sin(ang) + cv.y * math.cos(ang)
        w = ((np.floor(u * n) + np.floor(v * n)) % 2)[..., None]
        out = c1 * (1 - w) + c2 * w
    elif kind in ("spots", "blotches"):
        c2 = _color(rng)
        cells = int(rng.integers(5, 10)) if kind == "spots" else int(rng.integers(3, 6))
        w = _smooth_noise(rng, s, cells)
        w = (w > rng.uniform(0.3, 0.9)).astype(np.float32)[..., None]
        out = c1 * (1 - w) + c2 * w
    elif kind == "gradient":
        c2 = _color(rng)
        ang = rng.uniform(0, 2 * math.pi)
        w = (cv.x * math.cos(ang) + cv.y * math.sin(ang))
        w = ((w - w.min()) / max(float(w.max() - w.min()), 1e-6))[..., None]
        out = c1 * (1 - w) + c2 * w
    else:  # pragma: no cover - internal
        raise ValueError(kind)
    # Low-frequency shading and fine grain on every texture.
    shade = 1.0 + rng.uniform(0.05, 0.2) * _smooth_noise(rng, s, int(rng.integers(2, 5)))
    return (out * shade[..., None]).astype(np.float32)


_FUR_TEXTURES = ("solid", "stripes", "spots", "gradient", "solid", "blotches")
_BG_TEXTURES = ("wood", "checks", "blotches", "gradient", "stripes", "solid")
# cues="body": backgrounds without anything stripe- or spot-like.
_BG_TEXTURES_BODY = ("checks", "blotches", "gradient", "solid")


def _luminance(c: np.ndarray) -> float:
    return float(0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2])


def _pattern_colors(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two palette colors whose brightness differs by at least 0.35 (same rule for both
    species: the patterns are equally visible)."""
    c1 = _color(rng)
    for _ in range(32):
        c2 = _color(rng)
        if abs(_luminance(c1) - _luminance(c2)) >= 0.35:
            return c1, c2
    return c1, np.clip(1.0 - c1, 0.0, 1.0).astype(np.float32)


# cues="body", dogs: the range of the spots' radii (fraction of the image side; each spot draws
# its own) and the least distance between two spot centres, in mean radii of the two. Spaced
# spots carry as much edge energy inside the animal as the cats' stripes (overlapping random
# spots merged into blobs and left some dogs nearly plain). Spots of one size, or on a
# jittered lattice, were learned less reliably by a small net at 48 px (RESULTS.md).
SPOT_RADIUS = (0.024, 0.056)
SPOT_SEPARATION = 2.3


def _spaced_spots(rng: np.random.Generator, cv: _Canvas, mask: np.ndarray,
                  radius: tuple[float, float] = SPOT_RADIUS, sep: float = SPOT_SEPARATION
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Round spots centred on pixels of ``mask``, each with a radius drawn from ``radius``,
    no two centres closer than ``sep`` times the mean of their radii: candidates are drawn
    at random and one too close to an accepted spot is rejected (random placement, no
    lattice), until the spots would cover ~60% of the mask or the candidates run out.
    Returns the spots' union (bool, whole canvas) and ``float[n, 3]``: (x, y, radius)."""
    w = np.zeros_like(mask)
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return w, np.zeros((0, 3), np.float32)
    r = 0.5 * (radius[0] + radius[1])
    n = int(np.clip(round(0.6 * float(mask.mean()) / (math.pi * r * r)), 4, 80))
    spots: list[tuple[float, float, float]] = []
    for i in rng.integers(len(xs), size=30 * n):
        x, y, ri = float(cv.x[ys[i], xs[i]]), float(cv.y[ys[i], xs[i]]), rng.uniform(*radius)
        if all((x - a) ** 2 + (y - b) ** 2 >= (sep * (ri + rb) / 2) ** 2 for a, b, rb in spots):
            spots.append((x, y, ri))
            w |= cv.ellipse(x, y, ri, ri, 0.0)
            if len(spots) == n:
                break
    return w, np.array(spots, np.float32).reshape(-1, 3)


def _species_fur(rng: np.random.Generator, cv: _Canvas, species: int, mask: np.ndarray,
                 tilt: float) -> np.ndarray:
    """cues="body": the species' fur over the whole canvas (it is painted through the
    animal's mask). Cat: stripes across the body axis, half of each period dark; dog: round
    spots kept apart (:func:`_spaced_spots`), covering ~40% of the animal."""
    c1, c2 = _pattern_colors(rng)
    if species == 0:
        along = cv.x * math.cos(tilt) + cv.y * math.sin(tilt)
        freq = rng.uniform(8.0, 11.0)  # periods per image side: ~6-7 px at 64 px
        w = (np.sin(2 * math.pi * freq * along + rng.uniform(0, 2 * math.pi)) > 0)
    else:
        w, _ = _spaced_spots(rng, cv, mask)
    w = w.astype(np.float32)[..., None]
    out = c1 * (1 - w) + c2 * w
    shade = 1.0 + rng.uniform(0.05, 0.15) * _smooth_noise(rng, cv.size, int(rng.integers(2, 5)))
    return (out * shade[..., None]).astype(np.float32)


def _draw_decoys(rng: np.random.Generator, cv: _Canvas, img: np.ndarray,
                 animal: np.ndarray) -> None:
    """cues="body": paint 1-2 striped and 1-2 spotted patches (the species' own fur
    patterns, :func:`_species_fur`) on the background of ``img``, in place, never within 2
    pixels of the ``animal`` mask. Both kinds in every image: the background tells no class."""
    keep_off = _dilate(animal, 2)
    for species in (0, 1):
        for _ in range(int(rng.integers(1, 3))):
            # A patch somewhere off the animal: centered on a background pixel.
            ys, xs = np.nonzero(~keep_off)
            if not len(xs):
                return
            i = int(rng.integers(len(xs)))
            r = rng.uniform(0.07, 0.13)
            patch = cv.ellipse(cv.x[ys[i], xs[i]], cv.y[ys[i], xs[i]], r,
                               r * rng.uniform(0.5, 1.0), rng.uniform(0, math.pi)) & ~keep_off
            fur = _species_fur(rng, cv, species, patch, rng.uniform(-math.pi, math.pi))
            img[patch] = fur[patch]


# ------------------------------------------------------------------------ the animal

def _draw_animal(rng: np.random.Generator, cv: _Canvas, species: int,
                 body_cues: bool = False) -> tuple[np.ndarray, list]:
    """Return the animal's mask and a list of ``(mask, texture_or_color)`` paint layers.
    ``body_cues``: both species the same size, the species' fur pattern on the animal."""
    dog = species == 1
    if body_cues:
        scale = rng.uniform(0.27, 0.34)
    else:
        scale = rng.uniform(0.30, 0.37) if dog else rng.uniform(0.24, 0.30)
    face = 1.0 if rng.random() < 0.5 else -1.0  # facing right / left
    tilt = rng.uniform(-0.45, 0.45)  # body rotation (radians)
    lying = rng.random() < 0.25
    cx = rng.uniform(0.5 - 0.12, 0.5 + 0.12)
    cy = rng.uniform(0.5 - 0.08, 0.5 + 0.12)

    a = scale  # body half-length
    if body_cues:
        b = scale * rng.uniform(0.45, 0.55)
    else:
        b = scale * (rng.uniform(0.42, 0.52) if dog else rng.uniform(0.45, 0.58))

    def at(x: float, y: float) -> tuple[float, float]:
        """Body-frame (x forward, y down) to image coordinates."""
        rx, ry = _rot(tilt, x * face, y)
        return cx + rx, cy + ry

    parts = []
    body = cv.ellipse(cx, cy, a, b, tilt)
    parts.append(body)

    # Legs (standing): four tapering capsules below the body; lying: short stubs forward.
    leg_len = scale * (rng.uniform(0.55, 0.8) if not lying else rng.uniform(0.15, 0.3))
    leg_r = scale * (0.12 if dog else 0.09)
    for lx in (-0.65, -0.4, 0.45, 0.7):
        lx = lx + rng.uniform(-0.08, 0.08)
        top = at(lx * a, 0.4 * b)
        if lying:
            bot = at(lx * a + leg_len * 1.5, 0.85 * b)
        else:
            bot = at(lx * a + rng.uniform(-0.15, 0.15) * leg_len, 0.6 * b + leg_len)
        parts.append(cv.capsule(top, bot, leg_r, leg_r * 0.85))

    # Head: at the front top of the body, on a neck.
    head_r = scale * (rng.uniform(0.42, 0.5) if dog else rng.uniform(0.5, 0.6))
    hx, hy = 0.95 * a, -0.85 * b - rng.uniform(0.0, 0.4) * head_r
    head_c = at(hx, hy)
    parts.append(cv.capsule(at(0.6 * a, -0.1 * b), head_c, head_r * 0.6))
    head_tilt = tilt + face * rng.uniform(-0.3, 0.3)
    parts.append(cv.ellipse(head_c[0], head_c[1], head_r, head_r * 0.9, head_tilt))

    def at_head(x: float, y: float) -> tuple[float, float]:
        rx, ry = _rot(head_tilt, x * face, y)
        return head_c[0] + rx, head_c[1] + ry

    if dog:
        # Snout: a long ellipse pointing forward; floppy ears hanging beside the head.
        sl = head_r * rng.uniform(0.75, 1.0)
        sc = at_head(head_r * 0.75 + sl * 0.45, head_r * 0.25)
        parts.append(cv.ellipse(sc[0], sc[1], sl * 0.65, head_r * 0.42, head_tilt))
        ear_mask = np.zeros_like(body)
        for ex in (-0.55, 0.1):
            top = at_head(ex * head_r, -0.6 * head_r)
            bot = at_head(ex * head_r - 0.25 * head_r, 0.6 * head_r + rng.uniform(0, 0.3) * head_r)
            ear_mask |= cv.capsule(top, bot, head_r * 0.22, head_r * 0.36)
        parts.append(ear_mask)
        tail_len, tail_r0, tail_r1 = scale * rng.uniform(0.45, 0.65), scale * 0.12, scale * 0.08
        tail_lift = rng.uniform(-0.6, 0.2)
    else:
        # Two upright pointed ears on top of the head.
        ear_mask = np.zeros_like(body)
        ear_h = head_r * rng.uniform(0.8, 1.05)
        for ex in (-0.55, 0.35):
            base_l = at_head((ex - 0.3) * head_r, -0.55 * head_r)
            base_r = at_head((ex + 0.3) * head_r, -0.7 * head_r)
            tip = at_head((ex + 0.05) * head_r, -0.6 * head_r - ear_h)
            ear_mask |= cv.polygon([base_l, base_r, tip])
        parts.append(ear_mask)
        tail_len, tail_r0, tail_r1 = scale * rng.uniform(0.9, 1.3), scale * 0.07, scale * 0.05
        tail_lift = rng.uniform(-1.6, -0.6)

    # Tail from the rear of the body, curving (upwards for cats).
    t0 = at(-0.92 * a, -0.2 * b)
    tdir = math.pi + tail_lift  # body frame angle (pointing backwards, lifted)
    t1 = at(-0.92 * a + math.cos(tdir) * tail_len * 0.6, -0.2 * b + math.sin(tdir) * tail_len * 0.3)
    t2 = at(-0.92 * a + math.cos(tdir) * tail_len, -0.2 * b + math.sin(tdir) * tail_len)
    parts.append(cv.curve(t0, t1, t2, tail_r0, tail_r1))

    mask = np.zeros_like(body)
    for p in parts:
        mask |= p

    # Paint: fur texture over the whole animal, a contrasting patch (ears or belly), eyes, nose.
    # With body cues the species' pattern covers the whole animal and nothing hides it.
    layers: list
    if body_cues:
        layers = [(mask, _species_fur(rng, cv, species, mask, tilt))]
    else:
        layers = [(mask, _texture(rng, cv, _FUR_TEXTURES[rng.integers(len(_FUR_TEXTURES))]))]
        if rng.random() < 0.5:
            layers.append((ear_mask, _color(rng)))
        if rng.random() < 0.4:
            belly = cv.ellipse(*at(0.0, 0.45 * b), a * 0.7, b * 0.35, tilt) & body
            layers.append((belly, _color(rng)))
    eye_r = head_r * (0.13 if dog else 0.16)
    eye_color = np.array([0.05, 0.05, 0.05], np.float32) if dog else _hsv_to_rgb(
        rng.uniform(0.12, 0.35), 0.8, 0.7)
    for ex in (0.35, 0.75):
        e = at_head(ex * head_r, -0.15 * head_r)
        layers.append((cv.ellipse(e[0], e[1], eye_r, eye_r * (1.0 if dog else 0.8), 0.0), eye_color))
    if dog:
        n = at_head(head_r * 0.75 + head_r * 0.85 * 0.85, head_r * 0.15)
        layers.append((cv.ellipse(n[0], n[1], head_r * 0.16, head_r * 0.12, 0.0),
                       np.array([0.06, 0.05, 0.05], np.float32)))
    return mask, layers


def _draw_background(rng: np.random.Generator, cv: _Canvas, body_cues: bool = False) -> np.ndarray:
    textures = _BG_TEXTURES_BODY if body_cues else _BG_TEXTURES
    img = _texture(rng, cv, textures[rng.integers(len(textures))])
    # Clutter: geometric objects with their own textures/colors, some partly off-canvas.
    for _ in range(int(rng.integers(3, 9))):
        kind = rng.integers(4)
        x, y = rng.uniform(-0.05, 1.05, 2)
        r = rng.uniform(0.04, 0.16)
        if kind == 0:
            m = cv.ellipse(x, y, r, r * rng.uniform(0.5, 1.0), rng.uniform(0, math.pi))
        elif kind == 1:
            ang = rng.uniform(0, math.pi)
            w, h = r, r * rng.uniform(0.3, 1.0)
            corners = [_rot(ang, sx * w, sy * h) for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
            m = cv.polygon([(x + u, y + v) for u, v in corners])
        elif kind == 2:
            ang = rng.uniform(0, 2 * math.pi)
            m = cv.capsule((x, y), (x + math.cos(ang) * r * 3, y + math.sin(ang) * r * 3),
                           rng.uniform(0.006, 0.02))
        else:
            pts = [(x + r * math.cos(t), y + r * math.sin(t))
                   for t in rng.uniform(0, 2 * math.pi) + np.array([0, 2.1, 4.2])]
            m = cv.polygon(pts)
        fill = _texture(rng, cv, "solid" if body_cues or rng.random() < 0.6 else "stripes")
        img[m] = fill[m]
    return img


def _dilate(m: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation by a (2r+1)-square: max over shifts, edges padded with False."""
    if r <= 0:
        return m.copy()
    h, w = m.shape
    p = np.pad(m, r)
    out = np.zeros_like(m)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            out |= p[dy:dy + h, dx:dx + w]
    return out


def _erode(m: np.ndarray, r: int) -> np.ndarray:
    return ~_dilate(~m, r)


def make_trimap(mask: np.ndarray, contour_width: int) -> np.ndarray:
    """Trimap (0 foreground, 1 background, 2 contour) from a binary animal mask.

    The contour band straddles the outline: ``ceil(w/2)`` pixels outside, ``floor(w/2)``
    inside, ``w = contour_width`` pixels in all (image borders do not count as outline).
    """
    outer = _dilate(mask, (contour_width + 1) // 2)
    # Erode with the border padded as foreground, so an animal cut by the frame has no
    # contour along the frame.
    r_in = contour_width // 2
    if r_in > 0:
        padded = np.pad(~mask, r_in, constant_values=False)
        h, w = mask.shape
        grown = np.zeros_like(mask)
        for dy in range(2 * r_in + 1):
            for dx in range(2 * r_in + 1):
                grown |= padded[dy:dy + h, dx:dx + w]
        inner = ~grown
    else:
        inner = mask.copy()
    tri = np.ones(mask.shape, dtype=np.uint8)
    tri[outer] = 2
    tri[inner] = 0
    return tri


def default_contour_width(img_size: int) -> int:
    """Contour band width used when none is given: 2 pixels up to 96 px, then ~2% of the side."""
    return max(2, round(img_size / 48))


def _check_cues(cues: str) -> None:
    if cues not in CUES:
        raise ValueError(f"cues must be one of {', '.join(map(repr, CUES))}, got {cues!r}")


def _check_decoys(decoys: float) -> float:
    decoys = float(decoys)
    if not 0.0 <= decoys <= 1.0:
        raise ValueError(f"decoys must be a share in [0, 1], got {decoys}")
    return decoys


def render(seed: int, split: str, index: int, img_size: int = 64,
           contour_width: int | None = None, cues: str = "shape",
           decoys: float = 1.0) -> dict[str, Any]:
    """Render one sample as numpy arrays.

    Args:
        seed, split, index: which sample (``split``: ``"train"``, ``"val"`` or ``"test"``).
        img_size: side in pixels (>= 16).
        contour_width: trimap contour band (default :func:`default_contour_width`).
        cues: ``"shape"`` (the original generator) or ``"body"`` (species told by equally
            salient fur patterns on the animal; see the module docstring).
        decoys: ``cues="body"`` only: the share of images whose background carries decoys
            (striped and spotted patches off the animal). Whether sample ``index`` has them
            is drawn from its own stream, so a sample differs between two ``decoys`` values
            only by its decoys (or their absence).

    Returns ``{"image": float32[S, S, 3] in [0, 1], "trimap": uint8[S, S] (0/1/2),
    "mask": bool[S, S], "species": int}``. Pure function of its arguments.

    Raises:
        ValueError: an unknown ``split`` or ``cues``, ``img_size`` below 16, ``decoys``
            outside [0, 1].

    >>> s = render(0, "train", 3, img_size=32, cues="body")
    >>> s["image"].shape, s["trimap"].shape, s["species"] in (0, 1)
    ((32, 32, 3), (32, 32), True)
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    if img_size < 16:
        raise ValueError(f"img_size must be >= 16, got {img_size}")
    _check_cues(cues)
    decoys = _check_decoys(decoys)
    body = cues == "body"
    key = [int(seed) & 0xFFFFFFFF, SPLITS[split], int(index), GENERATOR_VERSION]
    rng = np.random.default_rng(key + [CUES.index(cues)] if body else key)
    cv = _Canvas(img_size)
    species = int(rng.integers(2))
    img = _draw_background(rng, cv, body)
    mask, layers = _draw_animal(rng, cv, species, body)
    if body:
        # The decoys' own stream: the rest of the picture does not depend on them.
        drng = np.random.default_rng(key + [CUES.index(cues), BODY_GENERATOR_VERSION])
        if drng.random() < decoys:
            _draw_decoys(drng, cv, img, mask)
    for m, paint in layers:
        if paint.ndim == 1:
            img[m] = paint
        else:
            img[m] = paint[m]
    # Camera: a light blur (soft edges) and sensor noise.
    k = np.array([0.25, 0.5, 0.25], np.float32)
    pad = np.pad(img, ((1, 1), (1, 1), (0, 0)), mode="edge")
    img = k[0] * pad[:-2] + k[1] * pad[1:-1] + k[2] * pad[2:]
    img = k[0] * img[:, :-2] + k[1] * img[:, 1:-1] + k[2] * img[:, 2:]
    img = img + rng.normal(0.0, 0.02, img.shape).astype(np.float32)
    img = np.clip(img, 0.0, 1.0).astype(np.float32)
    cw = default_contour_width(img_size) if contour_width is None else int(contour_width)
    return {"image": img, "trimap": make_trimap(mask, cw), "mask": mask, "species": species}


class SyntheticPets(torch.utils.data.Dataset):
    """The synthetic pets dataset (see the module docstring).

    Args:
        split: ``"train"``, ``"val"`` or ``"test"`` (independent streams of samples).
        img_size: side of the square images in pixels.
        length: number of samples (default 1024 train, 128 val/test).
        seed: the dataset seed; same seed, same pictures.
        task: ``"segmentation"`` (target ``long[S, S]`` trimap) or ``"classification"``
            (target: species index, 0 cat, 1 dog).
        contour_width: contour band width in pixels (default :func:`default_contour_width`).
        cues: ``"shape"`` (default, the original pictures) or ``"body"``: the species told
            by equally salient fur patterns on the animal (see the module docstring).
        decoys: with ``cues="body"``, the share of images with decoys on the background
            (see :func:`render`; ignored by ``cues="shape"``).
        cache: keep rendered samples in memory (``True``), or also on disk in ``cache_dir``.
        cache_dir: directory for an ``.npz`` cache of the whole split (written atomically).
        transform: optional callable ``(image, target) -> (image, target)`` on tensors.

    Raises ``ValueError`` for an unknown ``split``, ``task`` or ``cues``, ``decoys`` outside
    [0, 1], a negative ``length`` or an ``img_size`` below 16 (when a sample is rendered).

    Example::

        >>> from pyseg.data import SyntheticPets
        >>> ds = SyntheticPets(split="val", img_size=32, length=2, seed=0)
        >>> image, trimap = ds[0]
        >>> len(ds), image.shape, trimap.shape, sorted(trimap.unique().tolist())
        (2, torch.Size([3, 32, 32]), torch.Size([32, 32]), [0, 1, 2])
        >>> torch.equal(image, SyntheticPets(split="val", img_size=32, length=2)[0][0])
        True
        >>> SyntheticPets(split="val", task="classification", length=2)[1][1] in (0, 1)
        True
    """

    def __init__(self, split: str = "train", img_size: int = 64, length: int | None = None,
                 seed: int = 0, task: str = "segmentation", contour_width: int | None = None,
                 cache: bool = True, cache_dir: str | os.PathLike | None = None,
                 transform: Callable | None = None, cues: str = "shape",
                 decoys: float = 1.0) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
        if task not in ("segmentation", "classification"):
            raise ValueError(f"task must be 'segmentation' or 'classification', got {task!r}")
        _check_cues(cues)
        self.decoys = _check_decoys(decoys)
        if length is None:
            length = DEFAULT_LENGTHS[split]
        if length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        self.split, self.img_size, self.length, self.seed = split, int(img_size), int(length), seed
        self.task, self.cues = task, cues
        self.contour_width = (default_contour_width(self.img_size) if contour_width is None
                              else int(contour_width))
        self.class_names = SEGMENTATION_CLASSES if task == "segmentation" else SPECIES
        self.transform = transform
        self._cache: dict[int, tuple[np.ndarray, np.ndarray, int]] | None = {} if cache else None
        if cache_dir is not None:
            self._load_or_build_disk_cache(Path(cache_dir))

    def _cache_key(self) -> str:
        key = f"v{GENERATOR_VERSION}-{self.seed}-{self.split}-{self.img_size}-{self.length}-{self.contour_width}"
        if self.cues != "shape":  # the original generator keeps its cache files
            key += f"-{self.cues}-v{BODY_GENERATOR_VERSION}-decoys{self.decoys}"
        return hashlib.sha1(key.encode()).hexdigest()[:16]

    def _load_or_build_disk_cache(self, cache_dir: Path) -> None:
        path = cache_dir / f"synthetic-pets-{self.split}-{self.img_size}px-{self._cache_key()}.npz"
        if path.exists():
            try:
                with np.load(path) as z:
                    images, trimaps, species = z["images"], z["trimaps"], z["species"]
                if len(images) == self.length:
                    self._cache = {i: (images[i], trimaps[i], int(species[i]))
                                   for i in range(self.length)}
                    return
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache is rebuilt below
        items = [self._render(i) for i in range(self.length)]
        self._cache = dict(enumerate(items))
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        with open(tmp, "wb") as f:
            np.savez(f, images=np.stack([t[0] for t in items]) if items else np.zeros((0,)),
                     trimaps=np.stack([t[1] for t in items]) if items else np.zeros((0,)),
                     species=np.array([t[2] for t in items], dtype=np.int64))
        os.replace(tmp, path)

    def _render(self, index: int) -> tuple[np.ndarray, np.ndarray, int]:
        s = render(self.seed, self.split, index, self.img_size, self.contour_width, self.cues,
                   self.decoys)
        return s["image"], s["trimap"], s["species"]

    def __len__(self) -> int:
        return self.length

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray, int]:
        """``(image float32[S, S, 3], trimap uint8[S, S], species)`` of sample ``index`` as
    numpy arrays; ``IndexError`` outside the dataset."""
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} samples")
        index %= max(self.length, 1)
        if self._cache is not None:
            item = self._cache.get(index)
            if item is None:
                item = self._cache[index] = self._render(index)
            return item
        return self._render(index)

    def species(self, index: int) -> int:
        """The classification label (0 cat, 1 dog) of sample ``index``."""
        return self.sample(index)[2]

    def __getitem__(self, index: int):
        image, trimap, species = self.sample(index)
        x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        y = (torch.from_numpy(trimap.astype(np.int64)) if self.task == "segmentation"
             else species)
        if self.transform is not None:
            x, y = self.transform(x, y)
        return x, y


def synthetic_pets(root: str | os.PathLike | None = None, split: str = "train",
                   img_size: int = 64, task: str = "segmentation", **kwargs: Any) -> SyntheticPets:
    """Dataset factory for the registry: ``root``, when given, is used as the on-disk cache
    (``cache_dir``); ``split``, ``img_size``, ``task`` and the keyword arguments ``kwargs``
    (``seed``, ``length``...) go to :class:`SyntheticPets`, which raises for bad values.

    Example::

        >>> from pyseg.data import synthetic_pets
        >>> ds = synthetic_pets(split="train", img_size=16, length=3, seed=1)
        >>> len(ds), ds.class_names
        (3, ('foreground', 'background', 'contour'))
    """
    return SyntheticPets(split=split, img_size=img_size, task=task,
                         cache_dir=kwargs.pop("cache_dir", root), **kwargs)
