"""Per-subject staining/optics style of synthetic smears (the batch effects between subjects).

Real smears from different patients, labs or days differ in stain hue and strength, illumination,
focus, noise, how densely cells are spread and the microscope magnification. A :class:`SubjectStyle`
holds those knobs for one subject; :func:`make_subject_styles` draws several subjects around one
reference style, ``batch_strength`` scaling how far apart they are (0 = all identical).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from skimage.color import hsv2rgb

#: Reference RBC radius in pixels at magnification 1 (Chula 1000x smears: ~25-30 px).
BASE_RBC_RADIUS = 20.0


@dataclass(frozen=True)
class SubjectStyle:
    """How one subject's smears look; all numbers are physical-ish and documented per field."""

    name: str = "subject_0"
    stain_hue: float = 0.9  # HSV hue of a unit-thickness RBC over white (pink-magenta)
    stain_saturation: float = 0.42  # HSV saturation of that color: stain strength
    stain_value: float = 0.80
    background_hue: float = 0.08  # plasma: pale beige (~0.08) .. lavender (~0.75)
    background_saturation: float = 0.07
    background_value: float = 0.93
    illumination: float = 0.10  # relative brightness drop across the field
    illumination_angle: float = 0.6  # radians, direction of that gradient
    blur: float = 0.8  # Gaussian sigma in pixels (focus)
    noise: float = 0.012  # per-pixel Gaussian noise, fraction of full scale
    density: float = 0.28  # fraction of the field covered by red cells
    magnification: float = 1.0  # scales cell size in pixels
    hypochromia: float = 0.0  # 0 normal .. 1 red cells keep only their rim (thalassemia)

    @property
    def rbc_radius(self) -> float:
        """Typical discocyte radius in pixels for this subject."""
        return BASE_RBC_RADIUS * self.magnification

    def rbc_absorbance(self) -> np.ndarray:
        """Per-channel absorbance (-ln transmission) of one unit of RBC thickness."""
        rgb = hsv2rgb(np.array([[[self.stain_hue % 1.0, self.stain_saturation,
                                  self.stain_value]]]))[0, 0]
        return -np.log(np.clip(rgb, 0.05, 1.0)).astype(np.float32)

    def nucleus_absorbance(self) -> np.ndarray:
        """Absorbance of nuclear stain (WBC nuclei, platelets, parasites): deep purple."""
        hue = (0.76 + 0.5 * (self.stain_hue - 0.9)) % 1.0
        rgb = hsv2rgb(np.array([[[hue, min(0.95, 0.55 + self.stain_saturation * 0.3), 0.62]]]))
        return -np.log(np.clip(rgb[0, 0], 0.05, 1.0)).astype(np.float32)

    def cytoplasm_absorbance(self) -> np.ndarray:
        """Absorbance of white-cell cytoplasm: faint lilac-blue."""
        rgb = hsv2rgb(np.array([[[0.72, 0.18, 0.92]]]))[0, 0]
        return -np.log(np.clip(rgb, 0.05, 1.0)).astype(np.float32)

    def background_rgb(self) -> np.ndarray:
        """Plasma/glass color in [0, 1]."""
        hsv = [self.background_hue % 1.0, self.background_saturation, self.background_value]
        return hsv2rgb(np.array([[hsv]]))[0, 0].astype(np.float32)

    def as_dict(self) -> dict:
        """Plain dict, for image metadata."""
        return asdict(self)


# How far each knob moves per unit of batch_strength (one standard deviation or half-range).
_SPREAD = {
    "stain_hue": 0.035,
    "stain_saturation": 0.10,
    "stain_value": 0.05,
    "background_hue": 0.09,
    "background_saturation": 0.03,
    "background_value": 0.025,
    "illumination": 0.08,
    "blur": 0.5,
    "noise": 0.008,
    "density": 0.08,
    "magnification": 0.18,
}
_LIMITS = {
    "stain_saturation": (0.22, 0.65),
    "stain_value": (0.65, 0.92),
    "background_hue": (-0.12, 0.13),  # lavender-pink .. beige, never green
    "background_saturation": (0.02, 0.14),
    "background_value": (0.86, 0.98),
    "illumination": (0.0, 0.3),
    "blur": (0.3, 2.0),
    "noise": (0.003, 0.04),
    "density": (0.12, 0.45),
    "magnification": (0.7, 1.4),
}


def make_subject_styles(n: int, seed: int = 0, batch_strength: float = 1.0) -> list[SubjectStyle]:
    """Draw ``n`` subject styles around the reference; ``batch_strength`` scales the differences.

    Subjects are spread evenly over [-1, 1] (then shuffled) on every knob so that even 2-3
    subjects are clearly apart at ``batch_strength=1``; 0 gives identical styles.
    """
    if n < 1:
        raise ValueError(f"need at least one subject, got n={n}")
    if batch_strength < 0:
        raise ValueError(f"batch_strength must be >= 0, got {batch_strength}")
    rng = np.random.default_rng(seed)
    reference = SubjectStyle()
    positions = np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1)
    offsets = {key: rng.permutation(positions) + rng.normal(0, 0.15, n)
               for key in _SPREAD}
    angles = rng.uniform(0, 2 * np.pi, n)
    styles = []
    for i in range(n):
        values = {}
        for key, spread in _SPREAD.items():
            value = getattr(reference, key) + batch_strength * spread * offsets[key][i]
            low, high = _LIMITS.get(key, (-np.inf, np.inf))
            values[key] = float(np.clip(value, low, high))
        angle = reference.illumination_angle if batch_strength == 0 else float(angles[i])
        styles.append(SubjectStyle(name=f"subject_{i}", illumination_angle=angle, **values))
    return styles
