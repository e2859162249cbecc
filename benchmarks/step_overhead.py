"""Training-step cost of every KD method against plain KD, in one process.

Times (after warm-up) the training step of the shipped configs of one
teacher/student pair, for: the student alone; plain KD (the pair's config
with a plain OptimWrapper: one backward of the summed loss); the floor
"plain KD + one extra student backward" (two backward passes, the distill
loss's with ``retain_graph``); DOT; MoKD exact, on the parameters and at
the shared features (``gradients='features'``, one backward through the
backbone); MoKD amortized, with its loss recomputation hook and without it
(``weight_signal='next'``); MKD (with its meta hook; its meta update every
``--mkd-interval`` steps, by default the config's (10 in the quickstart
leaf, 20 in the COCO ones) where ``--steps`` is a multiple of it and
otherwise once per round, so say which); the CWD and PKD
feature-loss baselines (plain SGD); and, on request, plain KD and MKD with
``train_step`` compiled as mmengine's ``compile=True`` does
(``kd-compiled``, ``mkd-compiled``: the warm-up includes the compilation).

One iteration is what mmengine's loop runs: the method hooks'
``before_train_iter``, ``model.train_step`` (preprocessing, forward, the
optim wrapper's update), the hooks' ``after_train_iter`` and the
``.item()`` of the logged losses (mmengine's RuntimeInfoHook does it every
iteration). Inputs are synthetic batches (random images and boxes) placed on
the device beforehand; teachers are random checkpoints of the configured
architectures (the cost does not depend on the weights).

Noise: all models stay resident and the methods are timed in ``--rounds``
rounds, each running every method for ``--steps`` steps in a rotated order;
a method's ratio is the median over rounds of its time divided by plain
KD's time in the same round.

Peak memory. CUDA: the peak allocated during a method's steps, less what
the other resident models hold. CPU (``--rss``; torch has no CPU allocator
statistics): each method alone in a fresh subprocess (``--alone``) that
builds it, runs the warm-up and ``--steps`` steps and reports its peak
resident set size *during the steps* (Linux's ``VmHWM``, reset after the
build through ``/proc/self/clear_refs``: the interpreter, torch, the
teacher and student, the method's state and its steps' activations; the
build's own transient peak, the same for every method, is left out), and
how far that peak rises above the resident size before the first step
(the method's state and activations).

Presets (``--preset``):

* ``cpu-smoke``: the quickstart pair (RetinaNet R18 -> half-width R18),
  2 images of 96x96, 2 steps; what CI runs.
* ``cpu``: the quickstart pair at its training size (8 images, 192x192).
* ``retinanet`` / ``faster-rcnn``: the COCO pairs (R101 -> R50) at batch 8,
  800x1216, on CUDA.

``--plan`` builds every method of a preset on the CPU and times nothing:
what ``benchmarks/gpu_suite.sh --dry-run`` checks before spending GPU time.

Examples:
    python benchmarks/step_overhead.py --preset cpu
    python benchmarks/step_overhead.py --preset retinanet --amp
    python benchmarks/step_overhead.py --preset retinanet --plan
"""
import argparse
import json
import os
import os.path as osp
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.logging import MessageHub, MMLogger
from mmengine.optim import AmpOptimWrapper, OptimWrapper, build_optim_wrapper
from mmengine.registry import HOOKS, OPTIM_WRAPPERS, init_default_scope
from mmengine.structures import InstanceData
from torch.profiler import ProfilerActivity, profile, record_function

from common import ROOT, markdown_table, no_pretrained, random_teacher
from mokd_det.loss_groups import DISTILL, TASK, get_loss_groups
from mokd_det.utils.config import amp_variant, enable_amp, load_config

METHODS = ('student', 'kd', 'kd+bwd', 'dot', 'mokd-exact',
           'mokd-exact-features', 'mokd-amortized', 'mokd-amortized-next',
           'mkd', 'cwd', 'pkd', 'kd-compiled', 'mkd-compiled')
#: the leaf config of each method (``kd+bwd`` is ``kd`` with the
#: two-backward wrapper below)
LEAF = {'kd+bwd': 'kd', 'mokd-exact-features': 'mokd-exact',
        'mokd-amortized-next': 'mokd-amortized', 'kd-compiled': 'kd',
        'mkd-compiled': 'mkd'}
#: the methods whose ``train_step`` is compiled as mmengine's
#: ``compile=True`` does (``torch.compile`` of the model's ``train_step``);
#: only the wrappers that support it (docs/methods.md). Not in the
#: default set: on the CPU, compiling takes minutes
COMPILED = ('kd-compiled', 'mkd-compiled')
#: what a table times unless ``--methods`` says otherwise
DEFAULT_METHODS = tuple(m for m in METHODS if m not in COMPILED)
#: the optim wrapper options of the methods that are a leaf's option
OPTIONS = {'mokd-exact-features': dict(gradients='features'),
           'mokd-amortized-next': dict(weight_signal='next')}
METHOD_HOOKS = ('MoKDAmortizedHook', 'MKDMetaHook')

PRESETS = {
    'cpu-smoke': dict(
        device='cpu', batch=2, size=(96, 96), warmup=1, steps=2, rounds=1,
        leaf='configs/quickstart/{}_r18-r18half_retinanet_3e_shapes.py',
        student='configs/quickstart/retinanet_r18-half_fpn_shapes.py'),
    'cpu': dict(
        device='cpu', batch=8, size=(192, 192), warmup=3, steps=20,
        rounds=3,
        leaf='configs/quickstart/{}_r18-r18half_retinanet_3e_shapes.py',
        student='configs/quickstart/retinanet_r18-half_fpn_shapes.py'),
    'retinanet': dict(
        device='cuda', batch=8, size=(800, 1216), warmup=5, steps=20,
        rounds=3,
        leaf='configs/retinanet/{}_r101-r50_retinanet_1x_coco.py',
        student='mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'),
    'faster-rcnn': dict(
        device='cuda', batch=8, size=(800, 1216), warmup=5, steps=20,
        rounds=3,
        leaf='configs/faster_rcnn/{}_r101-r50_faster-rcnn_1x_coco.py',
        student='mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'),
}


class TwoBackwardMixin:
    """Plain KD plus one extra student backward: the distill loss is
    backpropagated with ``retain_graph``, then the task loss, both into
    ``p.grad``; the floor of any method that needs the two gradients
    separately."""

    def update_params(self, loss, step_kwargs=None, zero_kwargs=None):
        groups = get_loss_groups(loss)
        loss = self.scale_loss(loss)
        factor = float(loss.detach() / sum(groups.values()).detach())
        self.backward(groups[DISTILL] * factor, retain_graph=True)
        self._inner_count -= 1  # one update, two backward passes
        self.backward(groups[TASK] * factor)
        if self.should_update():
            self.step(**(step_kwargs or {}))
            self.zero_grad(**(zero_kwargs or {}))


@OPTIM_WRAPPERS.register_module(force=True)
class AmpTwoBackwardOptimWrapper(TwoBackwardMixin, AmpOptimWrapper):
    pass


@OPTIM_WRAPPERS.register_module(force=True)
class TwoBackwardOptimWrapper(TwoBackwardMixin, OptimWrapper):
    amp_variant = 'AmpTwoBackwardOptimWrapper'


class Bench:
    """One method: its model, optim wrapper, hooks and timings."""

    def __init__(self, name, model, wrapper, hooks):
        self.name, self.model, self.wrapper = name, model, wrapper
        self.runner = type('Runner', (), {})()
        self.runner.model, self.runner.optim_wrapper = model, wrapper
        self.hooks = hooks
        self.it = 0
        self.times: List[float] = []
        self.peak: Optional[int] = None
        for hook in hooks:
            hook.before_run(self.runner)

    def run(self, batches, n: int) -> None:
        hub = MessageHub.get_current_instance()
        for _ in range(n):
            data = batches[self.it % len(batches)]
            for hook in self.hooks:
                hook.before_train_iter(self.runner, self.it, data)
            with record_function('bench.train_step'):
                outputs = self.model.train_step(data, self.wrapper)
            with record_function('bench.after_train_iter'):
                for hook in self.hooks:
                    hook.after_train_iter(self.runner, self.it, data,
                                          outputs)
            for key, value in outputs.items():  # as RuntimeInfoHook does
                hub.update_scalar(f'train/{key}', value)
            self.it += 1


def num_classes(model) -> int:
    """The class count of a detector (or a distiller's student)."""
    model = getattr(model, 'student', model)
    head = getattr(model, 'bbox_head', None) or model.roi_head.bbox_head
    return head.num_classes


def make_batches(n, batch, size, classes, device, seed=0) -> List[dict]:
    """``n`` synthetic detection batches as a dataloader yields them."""
    from mmdet.structures import DetDataSample
    gen = torch.Generator().manual_seed(seed)
    h, w = size
    out = []
    for _ in range(n):
        inputs, samples = [], []
        for _ in range(batch):
            inputs.append(torch.randint(0, 256, (3, h, w), generator=gen,
                                        dtype=torch.uint8).to(device))
            k = int(torch.randint(3, 11, (1, ), generator=gen))
            wh = torch.rand(k, 2, generator=gen) * 0.45 * min(h, w) + 8
            xy = torch.rand(k, 2, generator=gen) * (
                torch.tensor([w, h]) - wh)
            sample = DetDataSample(metainfo=dict(
                img_shape=(h, w), ori_shape=(h, w), scale_factor=(1., 1.)))
            sample.gt_instances = InstanceData(
                bboxes=torch.cat([xy, xy + wh], 1).to(device),
                labels=torch.randint(0, classes, (k, ),
                                     generator=gen).to(device))
            samples.append(sample)
        out.append(dict(inputs=inputs, data_samples=samples))
    return out


_PLAN_MODELS: Dict[str, torch.nn.Module] = {}


def build(method: str, preset: dict, args, tmpdir: str) -> Bench:
    from mmdet.registry import MODELS
    leaf = LEAF.get(method, method)
    if method == 'student':
        cfg = load_config(preset['student'])
        no_pretrained(cfg.model)
    else:
        cfg = load_config(preset['leaf'].format(leaf))
        no_pretrained(cfg.model.student)
        random_teacher(cfg, osp.join(tmpdir, 'teacher.pth'))
    # learning rate 0: the same kernels run (the cost does not depend on
    # it), but the weights stay at their finite initialisation. With the
    # configs' lr, the from-scratch student under a random teacher
    # diverged within the timed rounds on the H100 (R101 -> R50 at
    # 800x1216): NaN weights, the projection's Cayley solve refused them,
    # and guarded wrappers would have skipped steps (a cheaper iteration)
    cfg.optim_wrapper.optimizer.lr = 0.0
    if method == 'kd+bwd':
        cfg.optim_wrapper.type = 'TwoBackwardOptimWrapper'
    cfg.optim_wrapper.update(OPTIONS.get(method, {}))
    if method != 'student' and args.objectives:
        with_objectives(cfg, method, args.objectives)
    if leaf == 'mkd' and args.mkd_interval:
        cfg.optim_wrapper.interval = args.mkd_interval
    elif leaf == 'mkd' and args.steps % cfg.optim_wrapper.interval:
        cfg.optim_wrapper.interval = args.steps
    if args.amp:
        try:
            enable_amp(cfg)
        except RuntimeError:
            if not args.plan:  # no CUDA: the plan checks the mapping only
                raise
            print(f'plan: {method}: --amp maps to '
                  f'{amp_variant(cfg.optim_wrapper.type)}', flush=True)
            return None
    if args.plan:  # methods that share a model share its build
        key = repr(cfg.model)
        if key not in _PLAN_MODELS:
            _PLAN_MODELS[key] = MODELS.build(cfg.model)
        model = _PLAN_MODELS[key]
    else:
        model = MODELS.build(cfg.model)
        model.init_weights()
    model.to(args.device).train()
    if method in COMPILED:  # as mmengine's Runner._maybe_compile does
        model.train_step = torch.compile(model.train_step)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    hooks = [HOOKS.build(dict(h)) for h in cfg.get('custom_hooks', [])
             if h['type'] in METHOD_HOOKS]
    return Bench(method, model, wrapper, hooks)


def with_objectives(cfg, method: str, k: int) -> None:
    """``--objectives K``: the pair's distillation terms (FPN features and
    class logits), plus feature terms on single FPN levels (``neck:0``,
    ``neck:1``, ...) until there are K - 1, in every method's config (so
    that plain KD sums the same losses); MoKD balances the task and each
    term, K objectives (``groups=('task', 'distill.<term>', ...)``; K = 2
    keeps the default two groups, task and distill)."""
    terms = cfg.model.distill_losses
    template = terms['fpn']
    for level in range(k - 1 - len(terms)):
        terms[f'fpn{level}'] = dict(template, student=f'neck:{level}',
                                    teacher=f'neck:{level}')
    if len(terms) > k - 1:
        raise ValueError(f'--objectives {k}: the pair has {len(terms)} '
                         'distillation terms already')
    if method.startswith('mokd') and k > 2:
        cfg.optim_wrapper.groups = ('task', ) + tuple(
            f'distill.{name}' for name in terms)


def sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def measure(benches: Dict[str, Bench], batches, args) -> None:
    cuda = args.device.type == 'cuda'
    names = list(benches)
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            bench = benches[name]
            sync(args.device)
            if cuda:
                torch.cuda.reset_peak_memory_stats(args.device)
                resident = torch.cuda.memory_allocated(args.device)
            start = time.perf_counter()
            bench.run(batches, args.steps)
            sync(args.device)
            bench.times.append((time.perf_counter() - start) / args.steps)
            if cuda:
                peak = torch.cuda.max_memory_allocated(args.device)
                own = peak - (resident - bench.persistent)
                bench.peak = max(bench.peak or 0, own)


def proc_status_mib(key: str) -> float:
    """A size from ``/proc/self/status`` (``VmRSS``, ``VmHWM``), in MiB."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(key + ':'):
                return int(line.split()[1]) / 1024  # reported in kB
    raise RuntimeError(f'/proc/self/status has no {key} (Linux only)')


def reset_peak_rss() -> float:
    """Resets the peak resident set size (``VmHWM``) to the current one
    (Linux >= 4.0: ``5`` to ``/proc/self/clear_refs``); returns the current
    resident size in MiB."""
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
    return proc_status_mib('VmRSS')


def peak_rss(args) -> Dict[str, Tuple[float, float]]:
    """Each method's ``(peak RSS, rise above the resting size)`` in MiB,
    from its own subprocess (``--alone``)."""
    out = {}
    for method in args.methods:
        cmd = [sys.executable, osp.abspath(__file__), '--preset',
               args.preset, '--alone', '--methods', method, '--batch',
               str(args.batch), '--warmup', str(args.warmup), '--steps',
               str(args.steps), '--size', *map(str, args.size)] + (
                   ['--objectives', str(args.objectives)]
                   if args.objectives else []) + (
                   ['--mkd-interval', str(args.mkd_interval)]
                   if args.mkd_interval else [])
        printed = subprocess.run(cmd, check=True, capture_output=True,
                                 text=True).stdout
        fields = printed.split('RSS_MIB')[-1].split()
        out[method] = (float(fields[0]), float(fields[2]))
    return out


def report(benches: Dict[str, Bench], args, rss=None) -> dict:
    kd, floor = benches.get('kd'), benches.get('kd+bwd')
    results = {}
    for name, b in benches.items():
        row = dict(ms=1e3 * statistics.median(b.times))
        if rss:
            row['rss_mib'], row['rss_rise_mib'] = rss[name]
            row['rss_x_kd'] = rss[name][0] / rss['kd'][0]
        for ref_name, ref in (('x_kd', kd), ('x_floor', floor)):
            if ref is not None:
                row[ref_name] = statistics.median(
                    t / r for t, r in zip(b.times, ref.times))
        if b.peak is not None:
            row['peak_mib'] = b.peak / 2**20
            if kd is not None:
                row['mem_x_kd'] = b.peak / kd.peak
        results[name] = row

    def fmt(row, key, spec):
        return format(row[key], spec) if key in row else 'n/a'

    rows = [[name, fmt(r, 'ms', '.1f'), fmt(r, 'x_kd', '.3f'),
             fmt(r, 'x_floor', '.3f'), fmt(r, 'peak_mib', '.0f'),
             fmt(r, 'mem_x_kd', '.3f'), fmt(r, 'rss_mib', '.0f'),
             fmt(r, 'rss_x_kd', '.3f'), fmt(r, 'rss_rise_mib', '.0f')]
            for name, r in results.items()]
    print(markdown_table(['method', 'ms/step', 'x plain KD',
                          'x (KD + 1 bwd)', 'CUDA peak MiB', 'mem x KD',
                          'peak RSS MiB', 'RSS x KD', 'RSS rise MiB'], rows))
    return results


def profile_method(bench: Bench, batches, args) -> None:
    """torch.profiler over ``--steps`` steps of one method: the time per
    step of each labelled phase (``bench.*``, ``mokd_det.*``) and the top
    operators by self time."""
    cuda = args.device.type == 'cuda'
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA]
                                           if cuda else [])
    with profile(activities=activities) as prof:
        bench.run(batches, args.steps)
        sync(args.device)
    events = prof.key_averages()
    key = 'device_time_total' if cuda else 'cpu_time_total'
    rows = [[e.key, f'{getattr(e, key) / 1e3 / args.steps:.1f}',
             f'{e.count / args.steps:g}']
            for e in sorted(events, key=lambda e: e.key)
            if e.key.startswith(('bench.', 'mokd_det.'))]
    print(f'\nphases of {bench.name} ({"device" if cuda else "CPU"} ms '
          'per step, nested phases included in their parents):')
    print(markdown_table(['phase', 'ms/step', 'calls/step'], rows))
    sort = 'self_device_time_total' if cuda else 'self_cpu_time_total'
    print(events.table(sort_by=sort, row_limit=15))


def machine(device: torch.device) -> str:
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    return f'{platform.processor() or platform.machine()}, ' \
        f'{torch.get_num_threads()} threads'


#: assumed, not measured: seconds to build one method (teacher and student
#: on the CPU, moved to the GPU) and to start one table's process
BUILD_S, START_S = 5.0, 20.0


def estimate(tables: List[str], args) -> None:
    """Prints the device time the GPU suite's step tables would take: each
    method's recorded H100 ms per step (``benchmarks/results/gpu/``; the
    slowest recorded step where a method or table has no record) times its
    warm-up and timed steps, plus :data:`BUILD_S` per method and
    :data:`START_S` per table; against ``--budget``."""
    recorded = {}
    for table in tables:
        preset, amp = table.split(':')
        path = osp.join(ROOT, 'benchmarks', 'results', 'gpu',
                        f"step_{preset}{'_amp' if amp else ''}.json")
        if osp.isfile(path):
            with open(path) as f:
                recorded[table] = {m: r['ms'] for m, r in
                                   json.load(f)['results'].items()}
    slowest = max(ms for t in recorded.values() for ms in t.values())
    steps = args.warmup + args.rounds * args.steps
    total, rows = 0.0, []
    for table in tables:
        ms = [recorded.get(table, {}).get(m, slowest)
              for m in DEFAULT_METHODS]
        seconds = START_S + len(DEFAULT_METHODS) * BUILD_S + \
            steps * sum(ms) / 1e3
        total += seconds
        rows.append([table.replace(':', ' ').strip(),
                     str(len(DEFAULT_METHODS)),
                     str(steps), f'{seconds:.0f}'])
    print(markdown_table(['table', 'methods', 'steps each', 'est. s'],
                         rows))
    verdict = 'within' if total <= args.budget else 'OVER'
    print(f'\nplan: about {total:.0f} s of device time for the step '
          f'tables, {verdict} the {args.budget} s budget (recorded H100 '
          f'steps; {slowest:.0f} ms where none is recorded; {BUILD_S:.0f} s '
          f'per method build and {START_S:.0f} s per table assumed)')


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--preset', choices=sorted(PRESETS), default='cpu')
    p.add_argument('--amp', action='store_true',
                   help='fp16 autocast + dynamic loss scale (the AMP '
                   'variants of the wrappers)')
    p.add_argument('--methods', nargs='+', choices=METHODS,
                   default=list(DEFAULT_METHODS))
    for key in ('batch', 'warmup', 'steps', 'rounds'):
        p.add_argument(f'--{key}', type=int, default=None,
                       help='override the preset')
    p.add_argument('--objectives', type=int, default=None, metavar='K',
                   help='K objectives: extra per-level feature terms for '
                   'every method, and MoKD balancing each term (K >= 2; '
                   'default: the pair as shipped, MoKD on task and '
                   'distill)')
    p.add_argument('--size', type=int, nargs=2, default=None,
                   metavar=('H', 'W'), help='override the image size')
    p.add_argument('--mkd-interval', type=int, default=None, metavar='N',
                   help="MKD's meta update every N steps (--steps a "
                   "multiple of N). Default: its config's interval, or "
                   '--steps where that does not divide --steps')
    p.add_argument('--rss', action='store_true',
                   help='CPU: also measure each method\'s peak RSS, each '
                   'in its own subprocess')
    p.add_argument('--alone', action='store_true',
                   help='build only --methods (not plain KD beside them), '
                   'run the warm-up and --steps steps, print the peak RSS; '
                   'what --rss runs per method')
    p.add_argument('--estimate', nargs='+', metavar='PRESET:[--amp]',
                   help="print the GPU suite's device-time estimate for "
                   'these tables (with --rounds/--steps/--warmup and '
                   '--budget) and exit')
    p.add_argument('--budget', type=int, default=600,
                   help='seconds, for --estimate (default 600)')
    p.add_argument('--out', help='also write the results as JSON here')
    p.add_argument('--plan', action='store_true',
                   help='check the plan on any machine: build every '
                   "method's config, model and optim wrapper on the CPU "
                   '(with --amp: the wrapper mapping only), time nothing')
    p.add_argument('--profile', choices=METHODS, default=None,
                   help='profile this method (after the timings) with '
                   'torch.profiler')
    args = p.parse_args()
    preset = dict(PRESETS[args.preset])
    if args.size:
        preset['size'] = tuple(args.size)
    args.size = preset['size']
    for key in ('batch', 'warmup', 'steps', 'rounds'):
        if getattr(args, key) is None:
            setattr(args, key, preset[key])
    if args.mkd_interval and args.steps % args.mkd_interval:
        p.error(f'--mkd-interval {args.mkd_interval}: --steps '
                f'{args.steps} is not a multiple of it, so the timed steps '
                'would not hold whole meta intervals')
    args.device = torch.device(preset['device'])
    if args.plan:  # on any machine: the configs, models and wrappers
        args.device = torch.device('cpu')
    if args.device.type == 'cuda' and not torch.cuda.is_available():
        p.error(f'--preset {args.preset} needs a CUDA device')
    methods = list(dict.fromkeys(args.methods))
    if not args.alone:
        args.methods = ['kd'] + [m for m in methods if m != 'kd']
    if args.profile and args.profile not in args.methods:
        args.methods.append(args.profile)
    return args, preset


def main():
    args, preset = parse_args()
    if args.estimate:
        return estimate(args.estimate, args)
    os.chdir(ROOT)  # the configs name their teachers relative to the root
    MMLogger.get_instance('step_overhead', log_level='WARNING')
    warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
    init_default_scope('mmdet')
    torch.manual_seed(0)
    cuda = args.device.type == 'cuda'
    benches: Dict[str, Bench] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        for method in args.methods:
            held = torch.cuda.memory_allocated(args.device) if cuda else 0
            bench = build(method, preset, args, tmpdir)
            if args.plan:
                if bench is not None:
                    print(f'plan: {method}: {type(bench.model).__name__} '
                          f'with {type(bench.wrapper).__name__} builds',
                          flush=True)
                del bench
                continue
            if method == args.methods[0]:
                batches = make_batches(4, args.batch, preset['size'],
                                       num_classes(bench.model), args.device)
            if args.alone:
                before = reset_peak_rss()
            bench.run(batches, args.warmup)
            sync(args.device)
            # what this method holds between steps (weights, optimizer and
            # method state, the other models excluded)
            bench.persistent = (torch.cuda.memory_allocated(args.device) -
                                held) if cuda else 0
            benches[method] = bench
            print(f'built and warmed up: {method}', flush=True)
    if args.plan:
        return
    if args.alone:
        for bench in benches.values():
            bench.run(batches, args.steps)
        peak = proc_status_mib('VmHWM')
        print(f'RSS_MIB {peak:.1f} RISE_MIB {peak - before:.1f}')
        return
    measure(benches, batches, args)
    print(f'\n{args.preset}, {"AMP fp16" if args.amp else "fp32"}, batch '
          f'{args.batch} at {preset["size"][0]}x{preset["size"][1]}, '
          f'{args.rounds} rounds x {args.steps} steps after {args.warmup} '
          f'warm-up; {machine(args.device)}; torch {torch.__version__}\n')
    rss = peak_rss(args) if args.rss else {}
    results = report(benches, args, rss)
    if args.profile:
        profile_method(benches[args.profile], batches, args)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(preset=args.preset, amp=args.amp,
                           objectives=args.objectives,
                           mkd_interval=args.mkd_interval,
                           batch=args.batch, size=preset['size'],
                           steps=args.steps, rounds=args.rounds,
                           machine=machine(args.device),
                           torch=torch.__version__, results=results),
                      f, indent=1)


if __name__ == '__main__':
    main()
