"""Does MoKD's ``step_scale='kd'`` step have vanilla KD's length, from the
first iteration, with gradient clipping? And how is that length spread over
the parameters only one objective reaches?

Builds the quickstart pair (random teacher: lengths do not need a trained
one), copies the student's initial weights into a KD, a MoKD-exact and a
MoKD-amortized distiller, and runs the same few iterations on the same
batches with the preset's SGD (lr 0.01, momentum 0.9, weight decay 1e-4,
``clip_grad`` max_norm 35). Per iteration it records the length of the
gradient each wrapper hands its optimizer (after clipping) and its split
over the parameters both objectives reach (shared), the task alone reaches
and the distillation alone reaches; at the end, each student's largest
weight change. Writes ``benchmarks/results/step_length.json``.

    python benchmarks/step_length.py [--iters 4] [--batch 4]
"""
import argparse
import copy
import json
import os.path as osp
import sys

import torch

from common import ROOT, markdown_table

METHODS = {'kd': dict(type='KDOptimWrapper'),
           'mokd-exact': dict(type='MoKDOptimWrapper', mode='exact'),
           'mokd-exact-shared': dict(type='MoKDOptimWrapper', mode='exact',
                                     balance='shared'),
           'mokd-amortized': dict(type='MoKDOptimWrapper',
                                  mode='amortized')}


def build(cfg, method: str, student_state: dict):
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import MODELS
    torch.manual_seed(0)  # the projection neck's initialisation
    model = MODELS.build(copy.deepcopy(cfg.model))
    model.student.load_state_dict(student_state)
    wrapper = build_optim_wrapper(model, dict(
        METHODS[method], optimizer=dict(type='SGD', lr=0.01, momentum=0.9,
                                        weight_decay=1e-4),
        clip_grad=dict(max_norm=35, norm_type=2)))
    return model, wrapper


def reach(model, batch) -> dict:
    """Parameter name -> which objectives reach it ('shared', 'task',
    'distill')."""
    from mokd_det.loss_groups import get_loss_groups
    model.zero_grad()
    groups = get_loss_groups(model.parse_losses(model.loss(*batch))[0])
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    out = {}
    task = torch.autograd.grad(groups['task'], [p for _, p in params],
                               retain_graph=True, allow_unused=True)
    distill = torch.autograd.grad(groups['distill'], [p for _, p in params],
                                  allow_unused=True)
    for (n, _), t, d in zip(params, task, distill):
        if t is not None and d is not None:
            out[n] = 'shared'
        elif t is not None or d is not None:
            out[n] = 'task' if t is not None else 'distill'
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--iters', type=int, default=4)
    p.add_argument('--batch', type=int, default=4)
    p.add_argument('--out', default=osp.join(ROOT, 'benchmarks', 'results',
                                             'step_length.json'))
    args = p.parse_args(argv)
    from mmengine.registry import DefaultScope

    import mokd_det  # noqa: F401 (registries)
    from mokd_det.utils import load_config
    sys.path.insert(0, ROOT)
    from tests.helpers import det_samples
    cfg = load_config(osp.join(
        ROOT, 'configs/quickstart/mokd-exact_r18-r18half_retinanet_3e_'
        'shapes.py'))
    cfg.model.teacher = dict(config=cfg.model.teacher.config,
                             untrained=True)
    with DefaultScope.overwrite_default_scope('mmdet'):
        from mmengine.registry import MODELS
        torch.manual_seed(1)
        student = MODELS.build(copy.deepcopy(cfg.model.student))
        student.init_weights()
        state = copy.deepcopy(student.state_dict())
        batches = []
        for i in range(args.iters):
            images, samples = [], []
            for j in range(0, args.batch, 2):
                im, sa = det_samples(size=128, seed=100 * i + j)
                images += im
                samples += sa
            batches.append(dict(inputs=images, data_samples=samples))
        rows, out = [], {}
        for method in METHODS:
            model, wrapper = build(cfg, method, state)
            model.train()
            first = model.data_preprocessor(batches[0], training=True)
            kinds = reach(model, (first['inputs'], first['data_samples']))
            names = [n for n, q in model.named_parameters()
                     if q.requires_grad]
            params = dict(model.named_parameters())
            before = {n: params[n].detach().clone() for n in names}
            lengths = []
            for i, batch in enumerate(batches):
                data = model.data_preprocessor(batch, training=True)
                with wrapper.optim_context(model):
                    losses = model.loss(data['inputs'], data['data_samples'])
                loss, _ = model.parse_losses(losses)
                grads = {}
                step = wrapper.optimizer.step

                def record(*a, **k):  # the gradient the optimizer gets
                    for n in names:
                        g = params[n].grad
                        grads[n] = None if g is None else g.detach().clone()
                    return step(*a, **k)
                wrapper.optimizer.step = record
                wrapper.update_params(loss)
                wrapper.optimizer.step = step
                if method == 'mokd-amortized':  # the hook's recomputation
                    with torch.no_grad():
                        wrapper.update_weights(
                            wrapper.pending_losses(),
                            wrapper.pending_losses())
                split = {k: 0. for k in ('shared', 'task', 'distill')}
                for n, g in grads.items():
                    if g is not None and n in kinds:
                        split[kinds[n]] += float(g.double().pow(2).sum())
                lengths.append(dict(
                    total=sum(split.values())**0.5,
                    **{k: v**0.5 for k, v in split.items()}))
            change = {n: float((params[n].detach() - before[n]).abs().max())
                      for n in names}
            top = max(change, key=change.get)
            out[method] = dict(lengths=lengths, max_change=change[top],
                               max_change_param=top)
        for i in range(args.iters):
            rows.append([i + 1] + [
                '{total:.2f} ({shared:.2f} / {task:.2f} / {distill:.2f})'
                .format(**out[m]['lengths'][i]) for m in METHODS])
        rows.append(['max change'] + [
            f'{out[m]["max_change"]:.2e} ({out[m]["max_change_param"]})'
            for m in METHODS])
    table = markdown_table(['iteration'] + [
        f'{m}: |g| (shared / task / distill)' for m in METHODS], rows)
    print(table)
    with open(args.out, 'w') as f:
        json.dump(dict(command=' '.join(['python'] + sys.argv),
                       results=out, table=table), f, indent=1)


if __name__ == '__main__':
    main()
