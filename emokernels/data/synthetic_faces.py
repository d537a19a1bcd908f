"""A procedural facial-expression dataset shaped like the paper's RaFD subset.

Each identity has its own face shape, skin tone, hair and feature spacing; each of the eight
RaFD emotions is drawn through facial-action-like parameters (brows, eyelids, mouth shape and
openness, a smirk under lowered lids for contempt, nose wrinkles and a raised upper lip for
disgust), with per-sample intensity jitter. Camera angles (frontal, +-45 degrees) foreshorten
the face, three gaze directions move the pupils, and lighting, pose jitter and noise vary per
image. Everything is a deterministic function of the seed; splits are identity-disjoint.

The faces are cropped tight (brows to chin fill the frame) and the features are drawn large and
dark enough (lips darker than the skin, brows darker than the hair) that every expression is
readable at 48x48: the classes are unambiguous to a person, so a network's errors are its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image, ImageDraw

from .emotions import RAFD_CLASSES

ANGLES = (-45, 0, 45)
GAZES = ("left", "frontal", "right")

# Facial-action parameters per emotion; missing keys are 0 (neutral). eye_open and
# mouth_width are relative to 1.
_ACTIONS: dict[str, dict[str, float]] = {
    "angry": dict(brow_raise=-0.6, brow_inner=-0.9, eye_open=-0.25, mouth_curve=-0.25,
                  mouth_width=-0.15),
    "contemptuous": dict(corner_asym=1.0, mouth_curve=0.1, mouth_width=-0.1, eye_open=-0.1,
                         brow_raise=-0.1),
    "disgusted": dict(brow_raise=-0.3, brow_inner=-0.4, nose_wrinkle=1.0, upper_lip=0.9,
                      mouth_curve=-0.45, mouth_open=0.2, eye_open=-0.3),
    "fearful": dict(brow_raise=0.75, brow_inner=0.6, eye_open=0.5, mouth_open=0.5,
                    mouth_width=0.2, mouth_curve=-0.2),
    "happy": dict(mouth_curve=1.0, mouth_open=0.35, mouth_width=0.15, cheek_raise=0.7,
                  eye_open=-0.15),
    "neutral": {},
    "sad": dict(brow_inner=0.75, lid_droop=0.45, mouth_curve=-0.75, eye_open=-0.1),
    "surprised": dict(brow_raise=1.0, eye_open=0.6, mouth_open=0.9, mouth_round=1.0,
                      mouth_width=-0.25),
}


class SyntheticFaces(torch.utils.data.Dataset):
    """Rendered faces: ``identities x 8 emotions x gazes x angles`` images, split by identity.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"`` (identity-disjoint, 70/15/15 %), or
            ``"all"``.
        identities: number of identities (67, as the paper's RaFD subset).
        first_identity: the identities are ``first_identity .. first_identity + identities -
            1``: a set starting at or past another's end shares no face with it (an unlabelled
            set beside a labelled one).
        angles: camera yaw angles in degrees, from ``(-45, 0, 45)``.
        image_size: side of the square RGB image.
        seed: everything, from identities to noise, derives from it.
        transform: applied to the PIL image; default: to a float tensor ``[3, S, S]`` in [0, 1].
        cache: keep rendered images in memory (``3 * S * S`` bytes each) after first use.

    Items are ``(image, label)`` with labels indexing :attr:`classes` (RaFD order).
    """

    classes = RAFD_CLASSES

    def __init__(self, split: str = "train", identities: int = 67,
                 angles: tuple[int, ...] = ANGLES, image_size: int = 96, seed: int = 0,
                 transform: Callable | None = None, cache: bool = True,
                 first_identity: int = 0) -> None:
        if split not in ("train", "val", "test", "all"):
            raise ValueError(f"split must be train, val, test or all; got {split!r}")
        if identities < (1 if split == "all" else 3):
            raise ValueError(f"need at least {1 if split == 'all' else 3} identities for "
                             f"split={split!r}, got {identities}")
        if not set(angles) <= set(ANGLES):
            raise ValueError(f"angles must be among {ANGLES}, got {angles}")
        if first_identity < 0:
            raise ValueError(f"first_identity must be >= 0, got {first_identity}")
        self.split, self.image_size, self.seed = split, image_size, seed
        self.transform = transform
        order = np.random.default_rng(seed).permutation(identities)
        n_val = n_test = max(1, round(0.15 * identities))
        parts = {"test": order[:n_test], "val": order[n_test:n_test + n_val],
                 "train": order[n_test + n_val:], "all": order}
        self.identities = sorted(first_identity + int(i) for i in parts[split])
        self.samples = [(ident, label, gaze, angle) for ident in self.identities
                        for label in range(len(RAFD_CLASSES)) for gaze in GAZES for angle in angles]
        self._cache: dict[int, Image.Image] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def targets(self) -> list[int]:
        return [s[1] for s in self.samples]

    def __getitem__(self, index: int):
        ident, label, gaze, angle = self.samples[index]
        image = self._cache.get(index) if self._cache is not None else None
        if image is None:
            image = render_face(ident, RAFD_CLASSES[label], gaze, angle, self.image_size,
                                seed=(self.seed, ident, label, GAZES.index(gaze), angle + 90))
            if self._cache is not None:
                self._cache[index] = image
        if self.transform is not None:
            return self.transform(image), label
        array = np.asarray(image, dtype=np.float32) / 255.0
        return torch.from_numpy(array).permute(2, 0, 1).contiguous(), label


def _identity(ident: int) -> dict:
    rng = np.random.default_rng([7919, ident])
    skin = np.array([rng.uniform(90, 240), 0, 0])
    skin[1] = skin[0] * rng.uniform(0.7, 0.85)
    skin[2] = skin[0] * rng.uniform(0.55, 0.75)
    return dict(
        face_w=rng.uniform(0.30, 0.38), face_h=rng.uniform(0.40, 0.48),
        skin=tuple(int(c) for c in skin),
        hair=tuple(int(c) for c in rng.uniform(10, 120, 3) * rng.uniform(0.3, 1.6)),
        hair_volume=rng.uniform(0.02, 0.12), hair_fringe=rng.uniform(0.0, 0.5),
        eye_gap=rng.uniform(0.15, 0.19), eye_y=rng.uniform(-0.10, -0.05),
        eye_size=rng.uniform(0.06, 0.075), brow_thick=rng.uniform(0.022, 0.032),
        nose_len=rng.uniform(0.10, 0.14), mouth_y=rng.uniform(0.19, 0.23),
        mouth_w=rng.uniform(0.14, 0.17),
        # lips darker than the skin and reddish, so that the mouth's shape stands out
        lip=(int(rng.uniform(120, 190)), int(rng.uniform(25, 60)), int(rng.uniform(35, 70))),
        # idiosyncratic resting expression
        rest=dict(mouth_curve=rng.normal(0, 0.08), brow_raise=rng.normal(0, 0.08)),
    )


def render_face(ident: int, emotion: str, gaze: str, angle: int, size: int,
                seed=0) -> Image.Image:
    """One RGB face image, deterministic in its arguments."""
    rng = np.random.default_rng(np.random.SeedSequence(_seed_words(seed)))
    person = _identity(ident)
    intensity = rng.uniform(0.8, 1.2)
    act = {k: v * intensity for k, v in _ACTIONS[emotion].items()}
    for k, v in person["rest"].items():
        act[k] = act.get(k, 0.0) + v
    a = lambda name: act.get(name, 0.0)  # noqa: E731

    canvas = 2 * size  # draw large, downsample: antialiasing for free
    bg = rng.uniform(40, 220, 3)
    img = Image.new("RGB", (canvas, canvas), tuple(int(c) for c in bg))
    d = ImageDraw.Draw(img)
    yaw = math.radians(angle + rng.normal(0, 3))
    squeeze = math.cos(yaw)
    cx = canvas * (0.5 + rng.normal(0, 0.02)) + canvas * 0.06 * math.sin(yaw)
    # A tight crop, as face datasets are aligned: brows to chin fill the frame, so that the
    # expression, not the hair and the face outline, covers most pixels.
    scale = canvas * 1.35 * rng.uniform(0.95, 1.05)
    cy = canvas * (0.5 + rng.normal(0, 0.02)) - 0.06 * scale

    def pt(x: float, y: float, depth: float = 0.0) -> tuple[float, float]:
        # x, y in face units (frontal); depth moves a feature sideways under yaw
        return (cx + (x * squeeze + depth * math.sin(yaw)) * scale, cy + y * scale)

    def ellipse(x, y, rx, ry, fill, depth=0.0):
        px, py = pt(x, y, depth)
        d.ellipse([px - rx * squeeze * scale, py - ry * scale, px + rx * squeeze * scale,
                   py + ry * scale], fill=fill)

    fw, fh = person["face_w"], person["face_h"]
    hair = person["hair"]
    ellipse(0, -0.06, fw + person["hair_volume"], fh * 0.85 + person["hair_volume"], hair)
    ellipse(-fw * 1.02, 0.0, 0.035, 0.07, person["skin"], -0.05)
    ellipse(fw * 1.02, 0.0, 0.035, 0.07, person["skin"], 0.05)
    ellipse(0, 0.02, fw, fh, person["skin"])
    if person["hair_fringe"] > 0.15:
        ellipse(0, -fh * 0.82, fw * 0.9, fh * 0.25 * person["hair_fringe"] + 0.03, hair)

    shade = tuple(max(0, int(c * 0.55)) for c in person["skin"])
    brow = tuple(int(c * 0.45) for c in hair)  # dark on any skin
    gap, ey, es = person["eye_gap"], person["eye_y"], person["eye_size"]
    eye_h = es * max(0.15, 0.55 * (1 + a("eye_open")) - 0.25 * a("cheek_raise"))
    look = {"left": -1.0, "frontal": 0.0, "right": 1.0}[gaze]
    for side in (-1, 1):
        ex = side * gap
        ellipse(ex, ey, es, eye_h, (245, 245, 240), 0.08)
        ellipse(ex + look * es * 0.45, ey, es * 0.42, min(eye_h, es * 0.42), (40, 30, 25), 0.1)
        if a("lid_droop") > 0:
            px, py = pt(ex, ey - eye_h, 0.08)
            d.rectangle([px - es * scale, py - 2, px + es * scale,
                         py + 2 * eye_h * scale * a("lid_droop")], fill=person["skin"])
        # brows: outer and inner ends move with brow_raise, the inner end also with brow_inner
        by = ey - es * 1.9
        inner_y = by - 0.055 * a("brow_raise") - 0.05 * a("brow_inner")
        outer_y = by - 0.06 * a("brow_raise") + 0.015 * a("brow_inner")
        inner = pt(ex - side * es * 0.9, inner_y, 0.09)
        outer = pt(ex + side * es * 1.3, outer_y, 0.09)
        mid = pt(ex + side * es * 0.2, (inner_y + outer_y) / 2 - 0.012 * (1 + a("brow_raise")),
                 0.09)
        d.line([inner, mid, outer], fill=brow, width=max(1, int(person["brow_thick"] * scale)))

    nose_top, nose_tip = pt(0, ey + 0.02, 0.16), pt(0, ey + person["nose_len"], 0.2)
    d.line([nose_top, nose_tip], fill=shade, width=max(1, int(0.012 * scale)))
    for side in (-1, 1):
        ellipse(side * 0.025, ey + person["nose_len"], 0.012, 0.008, shade, 0.17)
    if a("nose_wrinkle") > 0.3:
        for i in range(3):
            y = ey + 0.025 + 0.014 * i
            d.line([pt(-0.03, y, 0.15), pt(0.03, y, 0.15)], fill=shade,
                   width=max(1, int(0.006 * scale * a("nose_wrinkle"))))

    # mouth: corners, upper and lower lip midpoints
    my = person["mouth_y"] - 0.02 * a("upper_lip")
    half = person["mouth_w"] * (1 + a("mouth_width")) * (1 - 0.35 * a("mouth_round"))
    curve = 0.08 * a("mouth_curve")
    # contempt: one corner pulled up and out (a smirk), with a crease beside it
    left_y = my - curve - 0.18 * a("corner_asym")
    left_x = -half * (1 + 0.35 * a("corner_asym"))
    right_y = my - curve
    opening = 0.12 * a("mouth_open") * (1 + 0.5 * a("mouth_round"))
    upper = my + 0.6 * curve - 0.02 * a("upper_lip")
    lower = my + 0.6 * curve + max(0.01, opening)
    outline = [pt(left_x, left_y, 0.12), pt(0, upper, 0.14), pt(half, right_y, 0.12),
               pt(0, lower + 0.012, 0.14)]
    d.polygon(outline, fill=person["lip"])
    if a("corner_asym") > 0.3:
        d.line([pt(left_x - 0.01, left_y + 0.04, 0.12), pt(left_x - 0.04, left_y - 0.06, 0.12)],
               fill=shade, width=max(1, int(0.025 * scale)))
    if opening > 0.01:
        d.polygon([pt(-half * 0.75, (left_y + upper) / 2 + 0.004, 0.12),
                   pt(0, upper + 0.01, 0.14), pt(half * 0.75, (right_y + upper) / 2 + 0.004, 0.12),
                   pt(0, lower, 0.14)], fill=(50, 20, 25))

    img = img.rotate(rng.normal(0, 6), resample=Image.BILINEAR, center=(cx, cy))
    img = img.resize((size, size), Image.BILINEAR)
    array = np.asarray(img, dtype=np.float32)
    light = np.linspace(-1, 1, size)[None, :, None] * rng.uniform(-0.35, 0.35)
    array = array * (1 + light) * rng.uniform(0.75, 1.2) + rng.normal(0, 6, array.shape)
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))


def _seed_words(seed) -> list[int]:
    parts = seed if isinstance(seed, tuple) else (seed,)
    return [int(p) & 0xFFFFFFFF for p in parts]
