"""Export the student of a distiller checkpoint as a plain model checkpoint.

The result loads with the student's own config:
    python tools/export_student.py work_dirs/x/epoch_12.pth student.pth
    python tools/test.py STUDENT_CONFIG student.pth
"""
import argparse

import mokd_det  # noqa: F401  safe checkpoint loading
from mokd_det.distillers.export import (save_student_checkpoint,
                                        student_state_from_distiller_state)
from mokd_det.checkpoint import safe_torch_load


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('checkpoint', help='a distiller checkpoint (.pth)')
    p.add_argument('out', help='where to write the student checkpoint')
    args = p.parse_args()
    ckpt = safe_torch_load(args.checkpoint, map_location='cpu')
    state = student_state_from_distiller_state(ckpt['state_dict'])
    meta = dict(ckpt.get('meta', {}), exported_from=args.checkpoint)
    meta.pop('cfg', None)  # the distiller's config, not the student's
    save_student_checkpoint(state, args.out, meta)
    print(f'wrote {len(state)} student tensors to {args.out}')


if __name__ == '__main__':
    main()
