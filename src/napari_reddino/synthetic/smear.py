"""Synthetic Wright-stained blood smears with ground truth, for tests, demos and benchmarks.

A smear is composed in optical-density space: each cell sprite (``synthetic.cells``) adds stain
thickness, the image is ``background * illumination * exp(-sum(thickness * absorbance))``, then
blurred and noised per :class:`SubjectStyle`. Truth is the instance label image (the top-most
cell owns overlaps), a per-cell table and the subject metadata. Deterministic per seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.measure import regionprops_table
from skimage.segmentation import relabel_sequential

from napari_reddino.synthetic.cells import DISTRACTOR_CLASSES, RBC_CLASSES, hypochromic, render
from napari_reddino.synthetic.style import SubjectStyle, make_subject_styles

__all__ = [
    "DEFAULT_CLASS_WEIGHTS",
    "DISTRACTOR_CLASSES",
    "RBC_CLASSES",
    "Smear",
    "SubjectStyle",
    "make_subject_styles",
    "synthetic_dataset",
    "synthetic_smear",
]

#: Relative frequency of each RBC morphology when none is given (a mixed, abnormal smear).
DEFAULT_CLASS_WEIGHTS = {"discocyte": 0.44} | {c: 0.07 for c in RBC_CLASSES[1:]}
WBC_PER_RBC = 1 / 120
PLATELETS_PER_RBC = 1 / 12
PARASITE_RATE = 0.08
CLUMP_FRACTION = 0.12  # share of cells that get a touching/overlapping neighbor
CHAIN_FRACTION = 0.015  # share of cells that start a short chain (clump) of overlapping cells


@dataclass
class Smear:
    """A synthetic smear and its truth."""

    image: np.ndarray  # (H, W, 3) uint8
    labels: np.ndarray  # (H, W) int32, 0 = background
    cells: pd.DataFrame  # label, class, subject, image, centroid_y, centroid_x, area, parasitized
    metadata: dict = field(default_factory=dict)  # subject, image, seed, style parameters


def _place(n: int, shape, spacing: float, rng) -> np.ndarray:
    """Blue-noise positions: dart throwing with a minimum distance, then clumps of neighbors."""
    height, width = shape
    candidates = rng.uniform((0, 0), (height, width), size=(max(4 * n, 16), 2))
    tree = cKDTree(candidates)
    blocked = np.zeros(len(candidates), bool)
    accepted = []
    for i in range(len(candidates)):
        if blocked[i]:
            continue
        accepted.append(i)
        if len(accepted) >= n:
            break
        blocked[tree.query_ball_point(candidates[i], spacing)] = True
    points = candidates[accepted]
    n_clumped = round(CLUMP_FRACTION * len(points))
    if n_clumped:
        seeds = points[rng.choice(len(points), n_clumped, replace=False)]
        angle = rng.uniform(0, 2 * np.pi, n_clumped)
        dist = spacing * rng.uniform(0.95, 1.12, n_clumped)
        extra = seeds + dist[:, None] * np.stack([np.sin(angle), np.cos(angle)], 1)
        inside = (extra >= 0).all(1) & (extra[:, 0] < height) & (extra[:, 1] < width)
        points = np.concatenate([points, extra[inside]])
    return np.concatenate([points, _chains(points, shape, spacing, rng)])


def _chains(points: np.ndarray, shape, spacing: float, rng) -> np.ndarray:
    """A few short rouleaux-like chains of 2-3 extra overlapping cells (the clumps of a smear)."""
    n_chains = int(CHAIN_FRACTION * len(points))
    if n_chains == 0:
        return np.empty((0, 2))
    starts = points[rng.choice(len(points), n_chains, replace=False)]
    links = []
    for start in starts:
        angle = rng.uniform(0, 2 * np.pi)
        step = spacing * rng.uniform(0.85, 0.95) * np.array([np.sin(angle), np.cos(angle)])
        links += [start + k * step for k in range(1, int(rng.integers(2, 4)))]
    links = np.asarray(links)
    inside = (links >= 0).all(1) & (links[:, 0] < shape[0]) & (links[:, 1] < shape[1])
    return links[inside]


def _choose_classes(n: int, class_weights: dict[str, float] | None, rng) -> np.ndarray:
    weights = DEFAULT_CLASS_WEIGHTS if class_weights is None else class_weights
    unknown = set(weights) - set(RBC_CLASSES) - set(DISTRACTOR_CLASSES)
    if unknown:
        raise ValueError(f"unknown classes {sorted(unknown)}; known: {RBC_CLASSES}")
    names = list(weights)
    p = np.asarray([weights[k] for k in names], float)
    if (p < 0).any() or p.sum() <= 0:
        raise ValueError("class_weights must be non-negative with a positive sum")
    return np.asarray(names)[rng.choice(len(names), n, p=p / p.sum())]


def _illumination(shape, style: SubjectStyle) -> np.ndarray:
    """Smooth brightness field: linear gradient along the style's angle plus a faint vignette."""
    height, width = shape
    y = np.linspace(-0.5, 0.5, height, dtype=np.float32)[:, None]
    x = np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :]
    ramp = np.sin(style.illumination_angle) * y + np.cos(style.illumination_angle) * x
    vignette = (x**2 + y**2) * np.float32(0.3 * style.illumination)
    return 1.0 - np.float32(style.illumination) * (ramp + 0.5) - vignette


def _texture(shape, rng, scale: float) -> np.ndarray:
    """Low-frequency multiplicative texture (uneven stain), made small and upsampled."""
    coarse = (max(2, int(shape[0] / scale)), max(2, int(shape[1] / scale)))
    noise = ndimage.gaussian_filter(rng.normal(0, 1, coarse).astype(np.float32), 1.0)
    zoomed = ndimage.zoom(noise, (shape[0] / coarse[0], shape[1] / coarse[1]), order=1)
    return 1.0 + 0.25 * zoomed[: shape[0], : shape[1]]


def _paste(target: np.ndarray, top: int, left: int, patch: np.ndarray, mode: str) -> None:
    """Add (or, for labels, assign where ``patch`` is set) a patch, clipped to the image."""
    height, width = target.shape[:2]
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + patch.shape[0], height), min(left + patch.shape[1], width)
    if y0 >= y1 or x0 >= x1:
        return
    sub = patch[y0 - top : y1 - top, x0 - left : x1 - left]
    if mode == "add":
        target[y0:y1, x0:x1] += sub
    else:
        region = target[y0:y1, x0:x1]
        region[sub > 0] = sub[sub > 0]


def synthetic_smear(
    shape=(1024, 1024),
    seed: int = 0,
    style: SubjectStyle | None = None,
    *,
    class_weights: dict[str, float] | None = None,
    parasites: bool = False,
    name: str | None = None,
) -> Smear:
    """One smear with instance truth, a cell table and metadata (deterministic per seed)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2 or min(shape) < 16:
        raise ValueError(f"shape must be (height, width) with both >= 16, got {shape}")
    style = SubjectStyle() if style is None else style
    name = name or f"{style.name}_seed{seed}"
    rng = np.random.default_rng(seed)
    radius = style.rbc_radius
    n_rbc = max(1, int(style.density * shape[0] * shape[1] / (np.pi * radius**2)))
    centers = _place(n_rbc, shape, spacing=1.9 * radius, rng=rng)
    kinds = list(_choose_classes(len(centers), class_weights, rng))
    extra = [("wbc", WBC_PER_RBC), ("platelet", PLATELETS_PER_RBC)]
    for kind, rate in extra:
        count = rng.poisson(rate * len(centers))
        centers = np.concatenate([centers, rng.uniform((0, 0), shape, size=(count, 2))])
        kinds += [kind] * count
    order = rng.permutation(len(kinds))
    # platelets are drawn last: they lie on top of the cells they touch
    order = order[np.argsort([kinds[i] == "platelet" for i in order], kind="stable")]

    rbc_od = np.zeros(shape, np.float32)
    nucleus_od = np.zeros(shape, np.float32)
    cyto_od = np.zeros(shape, np.float32)
    labels = np.zeros(shape, np.int32)
    records = []
    for label, i in enumerate(order, start=1):
        kind = kinds[i]
        cell_radius = radius * rng.uniform(0.9, 1.1)
        infected = bool(parasites and kind in RBC_CLASSES and rng.random() < PARASITE_RATE)
        top, left, sprite = render(kind, centers[i, 0], centers[i, 1], cell_radius,
                                   rng.uniform(0, 2 * np.pi), rng, parasite=infected)
        if kind in RBC_CLASSES:
            sprite = hypochromic(sprite, kind, style.hypochromia, rng)
        thickness = np.float32(rng.uniform(0.85, 1.15))
        for target, patch in ((rbc_od, sprite.rbc), (nucleus_od, sprite.nucleus),
                              (cyto_od, sprite.cytoplasm)):
            if patch is not None:
                _paste(target, top, left, patch * thickness, "add")
        _paste(labels, top, left, np.where(sprite.alpha >= 0.5, label, 0).astype(np.int32), "set")
        records.append((label, kind, infected))

    rbc_od *= _texture(shape, rng, scale=radius * 1.5)
    absorbance = (rbc_od[..., None] * style.rbc_absorbance()
                  + nucleus_od[..., None] * style.nucleus_absorbance()
                  + cyto_od[..., None] * style.cytoplasm_absorbance())
    del rbc_od, nucleus_od, cyto_od
    np.exp(-absorbance, out=absorbance)
    absorbance *= style.background_rgb()
    absorbance *= _illumination(shape, style)[..., None]
    rgb = absorbance
    for channel in range(3):
        ndimage.gaussian_filter(rgb[..., channel], style.blur, output=rgb[..., channel])
    rgb += rng.standard_normal((*shape, 1), dtype=np.float32) * np.float32(style.noise * 0.6)
    rgb += rng.standard_normal((*shape, 3), dtype=np.float32) * np.float32(style.noise * 0.5)
    image = (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
    del rgb, absorbance

    labels, forward, _ = relabel_sequential(labels)
    cells = _cell_table(labels, records, forward, style.name, name)
    metadata = {"subject": style.name, "image": name, "seed": seed, "shape": shape,
                "parasites": parasites, **style.as_dict()}
    return Smear(image=image, labels=labels.astype(np.int32), cells=cells, metadata=metadata)


def _cell_table(labels, records, forward, subject: str, image_name: str) -> pd.DataFrame:
    """Per-cell truth from the (relabeled) label image plus each object's class and infection."""
    props = regionprops_table(labels, properties=("label", "centroid", "area"))
    info = pd.DataFrame(records, columns=["old_label", "class", "parasitized"])
    info["label"] = forward[info["old_label"].to_numpy(dtype=np.int32, copy=True)]
    info = info[info["label"] > 0].drop(columns="old_label")
    table = pd.DataFrame({
        "label": props["label"].astype(np.int64),
        "centroid_y": props["centroid-0"],
        "centroid_x": props["centroid-1"],
        "area": props["area"].astype(float),
    }).merge(info, on="label", how="left")
    table.insert(2, "subject", subject)
    table.insert(3, "image", image_name)
    table["parasitized"] = table["parasitized"].astype(bool)
    return table[["label", "class", "subject", "image", "centroid_y", "centroid_x", "area",
                  "parasitized"]]


def synthetic_dataset(
    n_subjects: int = 3,
    images_per_subject: int = 2,
    shape=(768, 768),
    seed: int = 0,
    batch_strength: float = 1.0,
    **kw,
) -> list[Smear]:
    """Smears of several subjects whose styles differ by ``batch_strength`` (synthetic.style)."""
    if images_per_subject < 1:
        raise ValueError(f"images_per_subject must be >= 1, got {images_per_subject}")
    styles = make_subject_styles(n_subjects, seed=seed, batch_strength=batch_strength)
    seeds = np.random.SeedSequence(seed).spawn(n_subjects * images_per_subject)
    smears = []
    for s, style in enumerate(styles):
        for i in range(images_per_subject):
            child = int(seeds[s * images_per_subject + i].generate_state(1)[0])
            smears.append(synthetic_smear(shape, seed=child, style=style,
                                          name=f"{style.name}_img{i}", **kw))
    return smears
