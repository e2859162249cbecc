"""Generated COCO-format detection and ImageNet-style classification data.

The machines this project runs on reach no dataset or model hub, so tests,
demos and benchmarks train on data rendered here: coloured geometric objects
on textured backgrounds. Every image is a pure function of ``(seed, split,
index)``, so a data set is reproducible bit for bit and can be regenerated
anywhere.

What makes the detection task non-trivial (each a parameter):

* **classes that differ in shape and colour**, with colour jitter so that
  colour alone does not separate every pair (``colour_jitter``);
* **scales across COCO's area ranges** (small < 32^2 <= medium < 96^2 <=
  large), drawn with probabilities ``scale_mix``;
* **occlusion**: objects overlap; an object is placed only if every object
  keeps at least ``min_visible`` of its pixels, and the annotation is the box
  of the *visible* pixels;
* **clutter**: distractor strokes and blobs that belong to no class;
* **noise**: a smooth background gradient, texture and Gaussian pixel noise.

Every detection annotation also carries its object's **instance mask** (the
visible pixels, COCO's compressed RLE in ``segmentation``), so instance
segmentation students (Mask R-CNN) train and evaluate with COCO segm mAP on
the same images; the box is the mask's box and the area its pixel count.

The detection layout is COCO's (``annotations/instances_{train,val}.json``,
``train/``, ``val/``) and mmdet's ``CocoDataset``/``CocoMetric`` read it
unchanged. The classification layout is ImageNet's (``train/<class>/*.png``,
``val/<class>/*.png``, ``meta/{train,val}.txt``) and mmpretrain's
``ImageNet``/``CustomDataset`` read it unchanged.
"""
import json
import math
import os
import os.path as osp
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from tqdm import tqdm

# (name, shape, BGR base colour). Shapes repeat with different colours and
# colours repeat with different shapes, so neither cue alone is enough.
CLASSES: Tuple[Tuple[str, str, Tuple[int, int, int]], ...] = (
    ('red_circle', 'circle', (40, 40, 220)),
    ('green_square', 'square', (40, 190, 40)),
    ('blue_triangle', 'triangle', (220, 80, 30)),
    ('yellow_star', 'star', (30, 210, 230)),
    ('red_triangle', 'triangle', (40, 40, 220)),
    ('blue_circle', 'circle', (220, 80, 30)),
    ('magenta_cross', 'cross', (200, 40, 200)),
    ('green_hexagon', 'hexagon', (40, 190, 40)),
    ('cyan_ring', 'ring', (210, 200, 40)),
    ('yellow_diamond', 'diamond', (30, 210, 230)),
)
MAX_CLASSES = len(CLASSES)

# COCO's area ranges for small / medium / large objects, as side lengths.
_SIDE_RANGES = {'small': (12, 31), 'medium': (33, 95), 'large': (97, 180)}


@dataclass
class ShapesConfig:
    """Parameters of a generated data set.

    Args:
        num_classes: How many of :data:`CLASSES` to use (the first ones).
            Defaults to 6.
        img_size: ``(height, width)`` of every image. Defaults to (256, 256).
        objects_per_image: Inclusive range of annotated objects per detection
            image. Defaults to (2, 6).
        scale_mix: Probabilities of small, medium and large objects.
            Defaults to (0.3, 0.5, 0.2).
        min_visible: Fraction of its pixels every annotated object keeps
            visible after later objects are drawn over it. Defaults to 0.5.
        colour_jitter: Maximum per-channel colour perturbation. Defaults to 40.
        clutter: Number of distractor strokes and blobs per image, inclusive
            range. Defaults to (2, 6).
        noise_std: Standard deviation of Gaussian pixel noise. Defaults to 8.
    """
    num_classes: int = 6
    img_size: Tuple[int, int] = (256, 256)
    objects_per_image: Tuple[int, int] = (2, 6)
    scale_mix: Tuple[float, float, float] = (0.3, 0.5, 0.2)
    min_visible: float = 0.5
    colour_jitter: int = 40
    clutter: Tuple[int, int] = (2, 6)
    noise_std: float = 8.0
    _max_tries: int = field(default=30, repr=False)

    def __post_init__(self):
        if not 1 <= self.num_classes <= MAX_CLASSES:
            raise ValueError(f'num_classes must be in [1, {MAX_CLASSES}], '
                             f'got {self.num_classes}')
        if abs(sum(self.scale_mix) - 1) > 1e-6:
            raise ValueError(f'scale_mix must sum to 1, got {self.scale_mix}')

    @property
    def class_names(self) -> List[str]:
        return [c[0] for c in CLASSES[:self.num_classes]]


def _split_seed(seed: int, split: str, index: int) -> np.random.Generator:
    """An independent stream per image: order- and process-independent."""
    split_id = {'train': 0, 'val': 1, 'test': 2}[split]
    return np.random.default_rng([seed, split_id, index])


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth two-colour gradient with low-frequency texture."""
    c0, c1 = rng.uniform(60, 190, size=(2, 3))
    angle = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (xs * math.cos(angle) + ys * math.sin(angle))
    t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    img = c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]
    texture = cv2.resize(
        rng.normal(0, 12, size=(max(h // 16, 2), max(w // 16, 2), 3)),
        (w, h), interpolation=cv2.INTER_CUBIC)
    return img + texture


def _polygon(shape: str, cx: float, cy: float, r: float,
             rot: float) -> Optional[np.ndarray]:
    """Vertices of a polygonal shape of circumradius ``r``; None for round
    shapes."""
    if shape == 'square':
        angles, radii = np.arange(4) * math.pi / 2 + math.pi / 4, [r] * 4
    elif shape == 'triangle':
        angles, radii = np.arange(3) * 2 * math.pi / 3 - math.pi / 2, [r] * 3
    elif shape == 'hexagon':
        angles, radii = np.arange(6) * math.pi / 3, [r] * 6
    elif shape == 'diamond':
        angles = np.arange(4) * math.pi / 2
        radii = [r * 0.6, r, r * 0.6, r]
    elif shape == 'star':
        angles = np.arange(10) * math.pi / 5 - math.pi / 2
        radii = [r if i % 2 == 0 else r * 0.45 for i in range(10)]
    elif shape == 'cross':
        a, b = r, r * 0.35
        pts = np.array([(-b, -a), (b, -a), (b, -b), (a, -b), (a, b), (b, b),
                        (b, a), (-b, a), (-b, b), (-a, b), (-a, -b),
                        (-b, -b)], dtype=np.float64)
        c, s = math.cos(rot), math.sin(rot)
        pts = pts @ np.array([[c, s], [-s, c]])
        return (pts + (cx, cy)).round().astype(np.int32)
    else:
        return None
    angles = np.asarray(angles) + rot
    radii = np.asarray(radii)
    pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)],
                   axis=1)
    return pts.round().astype(np.int32)


def _draw_shape(mask: np.ndarray, shape: str, cx: float, cy: float, r: float,
                rot: float) -> None:
    """Rasterises one shape into a uint8 mask (in place)."""
    if shape == 'circle':
        cv2.circle(mask, (round(cx), round(cy)), round(r), 1, -1)
    elif shape == 'ring':
        cv2.circle(mask, (round(cx), round(cy)), round(r), 1, -1)
        cv2.circle(mask, (round(cx), round(cy)), round(r * 0.55), 0, -1)
    else:
        cv2.fillPoly(mask, [_polygon(shape, cx, cy, r, rot)], 1)


def _sample_side(rng: np.random.Generator, cfg: ShapesConfig,
                 max_side: int) -> int:
    scale = rng.choice(3, p=cfg.scale_mix)
    lo, hi = _SIDE_RANGES[('small', 'medium', 'large')[scale]]
    hi = min(hi, max_side)
    lo = min(lo, hi)
    return int(rng.integers(lo, hi + 1))


def _add_clutter(rng: np.random.Generator, img: np.ndarray,
                 cfg: ShapesConfig) -> None:
    """Distractor strokes and blobs in muted colours that belong to no
    class."""
    h, w = img.shape[:2]
    for _ in range(int(rng.integers(cfg.clutter[0], cfg.clutter[1] + 1))):
        grey = rng.uniform(70, 170)
        colour = tuple(float(grey + d) for d in rng.uniform(-20, 20, size=3))
        if rng.random() < 0.5:
            p0 = tuple(int(v) for v in rng.integers(0, (w, h)))
            p1 = tuple(int(v) for v in rng.integers(0, (w, h)))
            cv2.line(img, p0, p1, colour, int(rng.integers(1, 4)))
        else:
            center = tuple(int(v) for v in rng.integers(0, (w, h)))
            axes = tuple(int(v) for v in rng.integers(3, 14, size=2))
            cv2.ellipse(img, center, axes, float(rng.uniform(0, 180)), 0, 360,
                        colour, -1)


def _finish(rng: np.random.Generator, img: np.ndarray,
            cfg: ShapesConfig) -> np.ndarray:
    img = img + rng.normal(0, cfg.noise_std, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def render_detection_image(
        cfg: ShapesConfig, seed: int, split: str,
        index: int) -> Tuple[np.ndarray, List[Dict]]:
    """Renders one detection image.

    Returns:
        The BGR uint8 image and its annotations, each a dict with
        ``category_id`` (0-based), ``bbox`` (COCO ``[x, y, w, h]`` of the
        visible pixels), ``area`` (visible pixel count),
        ``segmentation`` (the visible pixels as COCO compressed RLE, counts
        as a string) and ``visible_fraction`` (visible over drawn pixels,
        >= ``min_visible``).
    """
    rng = _split_seed(seed, split, index)
    h, w = cfg.img_size
    img = _background(rng, h, w)
    _add_clutter(rng, img, cfg)
    # owner[y, x] = index of the object visible at that pixel, -1 for none
    owner = np.full((h, w), -1, dtype=np.int32)
    objects: List[Dict] = []
    target = int(rng.integers(cfg.objects_per_image[0],
                              cfg.objects_per_image[1] + 1))
    for _ in range(target * cfg._max_tries):
        if len(objects) == target:
            break
        label = int(rng.integers(cfg.num_classes))
        _, shape, base = CLASSES[label]
        side = _sample_side(rng, cfg, min(h, w) - 4)
        r = side / 2
        cx = rng.uniform(r, w - r)
        cy = rng.uniform(r, h - r)
        mask = np.zeros((h, w), dtype=np.uint8)
        _draw_shape(mask, shape, cx, cy, r, rng.uniform(0, 2 * math.pi))
        new = mask.astype(bool)
        if new.sum() < 16:
            continue
        # occlusion budget: every earlier object keeps min_visible
        trial = owner.copy()
        trial[new] = len(objects)
        if any((trial == i).sum() < cfg.min_visible * o['full_area']
               for i, o in enumerate(objects)):
            continue
        owner = trial
        colour = np.clip(
            np.asarray(base, np.float64) +
            rng.uniform(-cfg.colour_jitter, cfg.colour_jitter, size=3), 0, 255)
        shade = rng.uniform(0.85, 1.15)
        img[new] = colour * shade
        objects.append(dict(category_id=label, full_area=int(new.sum())))
    annotations = []
    for i, obj in enumerate(objects):
        visible = owner == i
        ys, xs = np.nonzero(visible)
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        rle = mask_utils.encode(np.asfortranarray(visible.astype(np.uint8)))
        annotations.append(
            dict(category_id=obj['category_id'],
                 bbox=[float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                 area=float(len(xs)),
                 segmentation=dict(size=[int(s) for s in rle['size']],
                                   counts=rle['counts'].decode('ascii')),
                 visible_fraction=len(xs) / obj['full_area']))
    return _finish(rng, img, cfg), annotations


def generate_coco_detection(out_dir: str,
                            num_train: int = 256,
                            num_val: int = 64,
                            seed: int = 0,
                            cfg: Optional[ShapesConfig] = None,
                            progress: bool = True,
                            workers: int = 0) -> Dict[str, str]:
    """Writes a COCO-format detection set.

    Layout: ``out_dir/{train,val}/*.png`` and
    ``out_dir/annotations/instances_{train,val}.json``; category ids start
    at 1 as in COCO.

    Args:
        out_dir: Destination folder (created).
        num_train: Training images. Defaults to 256.
        num_val: Validation images. Defaults to 64.
        seed: Seed of the whole set. Defaults to 0.
        cfg: Rendering parameters. Defaults to ``ShapesConfig()``.
        progress: Show a progress bar. Defaults to True.
        workers: Processes rendering in parallel (0: this one). Every image
            is seeded by its index, so the set is the same for any value.
            Defaults to 0.

    Returns:
        Paths of the two annotation files, keyed by split.
    """
    cfg = cfg or ShapesConfig()
    pool = ProcessPoolExecutor(workers) if workers > 0 else None
    categories = [
        dict(id=i + 1, name=name, supercategory='shape')
        for i, name in enumerate(cfg.class_names)
    ]
    os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
    paths = {}
    for split, count in (('train', num_train), ('val', num_val)):
        os.makedirs(osp.join(out_dir, split), exist_ok=True)
        images, annotations = [], []
        jobs = [(cfg, seed, split, index, osp.join(out_dir, split))
                for index in range(count)]
        rendered = pool.map(_write_detection_image, jobs, chunksize=16) \
            if pool is not None else map(_write_detection_image, jobs)
        for index, (file_name, anns) in enumerate(
                tqdm(rendered, total=count, desc=f'shapes {split}',
                     disable=not progress)):
            images.append(dict(id=index + 1, file_name=file_name,
                               height=cfg.img_size[0], width=cfg.img_size[1]))
            for ann in anns:
                annotations.append(
                    dict(id=len(annotations) + 1, image_id=index + 1,
                         category_id=ann['category_id'] + 1, bbox=ann['bbox'],
                         area=ann['area'], segmentation=ann['segmentation'],
                         iscrowd=0))
        path = osp.join(out_dir, 'annotations', f'instances_{split}.json')
        with open(path, 'w') as f:
            json.dump(dict(info=dict(description='mokd_det shapes', seed=seed),
                           images=images, annotations=annotations,
                           categories=categories), f)
        paths[split] = path
    if pool is not None:
        pool.shutdown()
    return paths


def _write_detection_image(job) -> Tuple[str, list]:
    """Renders and writes one detection image; returns its file name and
    annotations."""
    cfg, seed, split, index, folder = job
    img, anns = render_detection_image(cfg, seed, split, index)
    file_name = f'{index:06d}.png'
    cv2.imwrite(osp.join(folder, file_name), img)
    return file_name, anns


def render_classification_image(cfg: ShapesConfig, seed: int, split: str,
                                index: int) -> Tuple[np.ndarray, int]:
    """Renders one classification image: a single object of a random class,
    medium to large, over clutter. Returns the image and its 0-based label."""
    rng = _split_seed(seed, split, index)
    h, w = cfg.img_size
    img = _background(rng, h, w)
    _add_clutter(rng, img, cfg)
    label = int(rng.integers(cfg.num_classes))
    _, shape, base = CLASSES[label]
    side = rng.uniform(0.35, 0.8) * min(h, w)
    r = side / 2
    mask = np.zeros((h, w), dtype=np.uint8)
    _draw_shape(mask, shape, rng.uniform(r, w - r), rng.uniform(r, h - r), r,
                rng.uniform(0, 2 * math.pi))
    colour = np.clip(
        np.asarray(base, np.float64) +
        rng.uniform(-cfg.colour_jitter, cfg.colour_jitter, size=3), 0, 255)
    img[mask.astype(bool)] = colour
    return _finish(rng, img, cfg), label


def generate_imagenet_classification(out_dir: str,
                                     num_train: int = 512,
                                     num_val: int = 128,
                                     seed: int = 0,
                                     cfg: Optional[ShapesConfig] = None,
                                     progress: bool = True) -> List[str]:
    """Writes an ImageNet-style classification set.

    Layout: ``out_dir/{train,val}/<class>/<index>.png`` and
    ``out_dir/meta/{train,val}.txt`` (``<relative path> <label>`` per line).

    Args:
        out_dir: Destination folder (created).
        num_train: Training images. Defaults to 512.
        num_val: Validation images. Defaults to 128.
        seed: Seed of the whole set. Defaults to 0.
        cfg: Rendering parameters; ``img_size`` defaults to (64, 64) here.
        progress: Show a progress bar. Defaults to True.

    Returns:
        The class names, in label order.
    """
    cfg = cfg or ShapesConfig(img_size=(64, 64))
    names = cfg.class_names
    os.makedirs(osp.join(out_dir, 'meta'), exist_ok=True)
    for split, count in (('train', num_train), ('val', num_val)):
        for name in names:
            os.makedirs(osp.join(out_dir, split, name), exist_ok=True)
        lines = []
        for index in tqdm(range(count), desc=f'shapes-cls {split}',
                          disable=not progress):
            img, label = render_classification_image(cfg, seed, split, index)
            rel = f'{names[label]}/{index:06d}.png'
            cv2.imwrite(osp.join(out_dir, split, rel), img)
            lines.append(f'{rel} {label}\n')
        with open(osp.join(out_dir, 'meta', f'{split}.txt'), 'w') as f:
            f.writelines(lines)
    with open(osp.join(out_dir, 'meta', 'classes.txt'), 'w') as f:
        f.writelines(n + '\n' for n in names)
    return names
