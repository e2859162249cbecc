"""Generate the COCO-format detection set (and/or the ImageNet-style
classification set) of rendered shapes.

Examples:
    python tools/generate_shapes.py data/shapes --num-train 256 --num-val 64
    python tools/generate_shapes.py data/shapes_cls --task cls
    python tools/generate_shapes.py data/hard --num-classes 10 \
        --img-size 320 320 --objects-per-image 4 10
"""
import argparse
import time

from mokd_det.datasets import (ShapesConfig, generate_coco_detection,
                               generate_imagenet_classification)


def parse_args():
    defaults = ShapesConfig()
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('out_dir', help='destination folder')
    p.add_argument('--task', choices=['det', 'cls'], default='det')
    p.add_argument('--num-train', type=int, default=None,
                   help='training images (default 256 det / 512 cls)')
    p.add_argument('--num-val', type=int, default=None,
                   help='validation images (default 64 det / 128 cls)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--num-classes', type=int, default=defaults.num_classes)
    p.add_argument('--img-size', type=int, nargs=2, default=None,
                   metavar=('H', 'W'),
                   help='image size (default 256 256 det / 64 64 cls)')
    p.add_argument('--objects-per-image', type=int, nargs=2,
                   default=defaults.objects_per_image, metavar=('MIN', 'MAX'))
    p.add_argument('--scale-mix', type=float, nargs=3,
                   default=defaults.scale_mix, metavar=('S', 'M', 'L'),
                   help='probabilities of small, medium, large objects')
    p.add_argument('--min-visible', type=float, default=defaults.min_visible)
    p.add_argument('--colour-jitter', type=int,
                   default=defaults.colour_jitter)
    p.add_argument('--clutter', type=int, nargs=2, default=defaults.clutter,
                   metavar=('MIN', 'MAX'))
    p.add_argument('--noise-std', type=float, default=defaults.noise_std)
    return p.parse_args()


def main():
    args = parse_args()
    is_det = args.task == 'det'
    img_size = args.img_size or ((256, 256) if is_det else (64, 64))
    cfg = ShapesConfig(
        num_classes=args.num_classes,
        img_size=tuple(img_size),
        objects_per_image=tuple(args.objects_per_image),
        scale_mix=tuple(args.scale_mix),
        min_visible=args.min_visible,
        colour_jitter=args.colour_jitter,
        clutter=tuple(args.clutter),
        noise_std=args.noise_std)
    start = time.time()
    if is_det:
        paths = generate_coco_detection(
            args.out_dir, num_train=args.num_train or 256,
            num_val=args.num_val or 64, seed=args.seed, cfg=cfg)
        print(f'wrote {", ".join(paths.values())}')
    else:
        names = generate_imagenet_classification(
            args.out_dir, num_train=args.num_train or 512,
            num_val=args.num_val or 128, seed=args.seed, cfg=cfg)
        print(f'wrote {len(names)} classes to {args.out_dir}')
    print(f'in {time.time() - start:.1f}s')


if __name__ == '__main__':
    main()
