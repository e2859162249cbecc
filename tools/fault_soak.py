"""Fault soak: a multi-process CPU training that is preempted, loses a
worker, hits a full disk and meets non-finite losses, and must end where a
run without those faults ends.

Trains the quickstart MoKD-exact pair (random teacher, small generated
images, ``--nproc`` gloo processes under ``torchrun``) twice from the same
seed:

1. the reference: only the ``nonfinite`` faults (data faults: every run
   meets them at the same iterations, and the KD wrappers skip them);
2. the soak: every fault of the plan (``FaultInjectionHook``), at
   iterations drawn from ``--seed``. ``torchrun --max-restarts`` restarts
   the group after a killed worker, a failed checkpoint write or a
   preemption (``tools/train.py`` then resumes on its own); when torchrun
   gives up (exit 75 of a preemption with no restart left, or any other
   failure) this script relaunches it with ``--resume``, as a requeue
   script would.

It reports, per fault kind, how many were injected and survived, the
iterations trained again after each (the lost work), and the largest
difference of the final student weights to the reference's. Prints a
table and writes JSON (``--out``).

Example (about 10 minutes on 2 cores):
    python tools/fault_soak.py --work-dir work_dirs/fault_soak \\
        --out benchmarks/results/fault_soak.json
"""
import argparse
import json
import os
import os.path as osp
import random
import re
import signal
import socket
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))  # or mokd_det/.mim
PAIR = osp.join(ROOT, 'configs', 'quickstart',
                'mokd-exact_r18-r18half_retinanet_3e_shapes.py')
KINDS = ('preempt', 'kill', 'write_fail', 'nonfinite')
ITER_LINE = re.compile(r'Epoch\(train\)\s+\[(\d+)\]\[\s*(\d+)/(\d+)\]')
FIRED = re.compile(r'\[fault\] (\w+) at iteration (\d+)')


def plan_faults(kinds, each, total_iters, nproc, seed):
    """``[dict(kind, iter, rank)]``: ``each`` of every kind at distinct
    iterations in [2, total - 2], drawn from ``seed``."""
    rng = random.Random(seed)
    slots = rng.sample(range(2, total_iters - 1), len(kinds) * each)
    faults = []
    for i, kind in enumerate(k for k in kinds for _ in range(each)):
        rank = rng.randrange(nproc) if kind in ('preempt', 'kill') else 0
        faults.append(dict(kind=kind, iter=slots[i], rank=rank))
    return sorted(faults, key=lambda f: f['iter'])


def write_config(path, data_root, args, faults):
    from mmengine.config import Config
    cfg = Config.fromfile(PAIR)
    cfg.model.teacher = dict(config=cfg.model.teacher.config,
                             untrained=True)  # faults, not accuracy
    for split in ('val', 'test'):  # training only
        cfg[f'{split}_dataloader'] = cfg[f'{split}_cfg'] = None
        cfg[f'{split}_evaluator'] = None
    loader = cfg.train_dataloader
    loader.update(batch_size=args.batch, num_workers=1,
                  persistent_workers=True)
    loader.dataset.data_root = data_root
    for t in loader.dataset.pipeline:
        if t['type'] == 'Resize':
            t['scale'] = (args.size, args.size)
    cfg.train_cfg = dict(by_epoch=True, max_epochs=args.epochs)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1,
                                        max_keep_ckpts=2)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.default_hooks.pop('visualization', None)
    cfg.custom_hooks = [*cfg.get('custom_hooks', []),
                        dict(type='FaultInjectionHook', faults=faults)]
    cfg.randomness = dict(seed=args.seed)
    cfg.dump(path)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def launch(config, work_dir, args, resume, restarts):
    """One torchrun; returns (exit code, its output); the code is None
    when it ran past the budget."""
    torchrun = osp.join(osp.dirname(sys.executable), 'torchrun')
    cmd = [torchrun, '--nproc_per_node', str(args.nproc), '--max-restarts',
           str(restarts), '--rdzv-backend', 'c10d', '--rdzv-endpoint',
           f'127.0.0.1:{free_port()}', osp.join(ROOT, 'tools', 'train.py'),
           config, '--work-dir', work_dir, '--launcher', 'pytorch',
           '--skip-data-check'] + (['--resume'] if resume else [])
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1',
               TORCH_DISABLE_SHARE_RDZV_TCP_STORE='1')  # see dist_train.sh
    # its own session, so that a timeout ends the workers with torchrun
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=args.minutes * 60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        return None, output + '\n[soak] launch timed out'
    return proc.returncode, output


def lost_iterations(output, per_epoch):
    """``[(kind, fired at, resumed at, iterations trained again)]`` from a
    soak's logs: a fault's loss is the iterations done when it fired less
    the iteration the next restart (or launch) resumed from, read off the
    first iteration it logs (0 when it started over)."""
    out, last_done, pending, restarted = [], 0, [], False
    for line in output.splitlines():
        if '[train] torchrun restart' in line or \
                line.startswith('[soak] launch'):
            # what the stopped attempt had done (a preempted iteration
            # completes; a killed one does not)
            pending = [(kind, at, last_done) for kind, at, _ in pending]
            restarted = True
        m = FIRED.search(line)
        if m and m.group(1) != 'nonfinite':
            pending.append((m.group(1), int(m.group(2)), last_done))
        m = ITER_LINE.search(line)
        if m:
            done = (int(m.group(1)) - 1) * per_epoch + int(m.group(2))
            if pending and restarted:
                resumed = done - 1
                out += [(kind, at, resumed, max(before - resumed, 0))
                        for kind, at, before in pending]
                pending = []
            restarted = False
            last_done = done
    return out


def final_state(work_dir, epochs):
    """(the student's final weights, the iterations the run trained: its
    last checkpoint's count, so an epoch cut short shows)."""
    from mokd_det.checkpoint import safe_torch_load
    state = safe_torch_load(osp.join(work_dir,
                                     f'student_epoch_{epochs}.pth'), 'cpu')
    ckpt = safe_torch_load(osp.join(work_dir, f'epoch_{epochs}.pth'), 'cpu')
    return state.get('state_dict', state), ckpt['meta']['iter']


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--work-dir', default='work_dirs/fault_soak')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--nproc', type=int, default=2)
    p.add_argument('--epochs', type=int, default=6)
    p.add_argument('--iters-per-epoch', type=int, default=8)
    p.add_argument('--batch', type=int, default=2, help='per process')
    p.add_argument('--size', type=int, default=64, help='image size')
    p.add_argument('--kinds', nargs='+', choices=KINDS, default=list(KINDS))
    p.add_argument('--each', type=int, default=1, help='faults per kind')
    p.add_argument('--restarts', type=int, default=3,
                   help="torchrun's --max-restarts per launch")
    p.add_argument('--minutes', type=float, default=12,
                   help='budget for the whole soak; launches stop there')
    p.add_argument('--out', default=None, help='JSON of the results')
    args = p.parse_args(argv)
    start = time.time()
    os.makedirs(args.work_dir, exist_ok=True)
    data_root = osp.join(osp.abspath(args.work_dir), 'data') + '/'
    if not osp.isfile(osp.join(data_root, 'annotations',
                               'instances_train.json')):
        from mokd_det.datasets import ShapesConfig, generate_coco_detection
        generate_coco_detection(
            data_root, num_train=args.nproc * args.batch *
            args.iters_per_epoch, num_val=2, seed=args.seed,
            cfg=ShapesConfig(img_size=(args.size, args.size)),
            progress=False)
    total = args.epochs * args.iters_per_epoch
    faults = plan_faults(args.kinds, args.each, total, args.nproc, args.seed)
    print('[soak] plan: ' + ', '.join(
        f'{f["kind"]}@{f["iter"]} (rank {f["rank"]})' for f in faults),
        flush=True)
    runs = {}
    for name, plan in (('reference', [f for f in faults
                                      if f['kind'] == 'nonfinite']),
                       ('soak', faults)):
        config = osp.join(args.work_dir, f'{name}_config.py')
        write_config(config, data_root, args, plan)
        work = osp.join(args.work_dir, name)
        outputs, codes = [], []
        for attempt in range(len(faults) + 2):
            if time.time() - start > args.minutes * 60:
                break
            code, output = launch(config, work, args, resume=attempt > 0,
                                  restarts=0 if name == 'reference'
                                  else args.restarts)
            outputs.append(output)
            codes.append(code)
            print(f'[soak] {name} launch {attempt + 1}: exit {code}',
                  flush=True)
            if code == 0 or name == 'reference':
                break
        runs[name] = dict(codes=codes, work=work, output='\n'.join(
            f'[soak] launch {i + 1}\n{o}' for i, o in enumerate(outputs)))
        if codes[-1:] != [0]:
            sys.exit(f'[soak] the {name} run did not finish (exits {codes});'
                     f' its last output:\n' + outputs[-1][-4000:])
    ref, ref_iters = final_state(runs['reference']['work'], args.epochs)
    got, got_iters = final_state(runs['soak']['work'], args.epochs)
    diff = max(float((got[k].float() - v.float()).abs().max())
               for k, v in ref.items())
    output = runs['soak']['output']
    fired = [(m.group(1), int(m.group(2))) for m in FIRED.finditer(output)]
    lost = lost_iterations(output, args.iters_per_epoch)
    # a fault is survived when it fired and the run still ended on the
    # reference's weights, exactly, after as many iterations
    exact = diff == 0.0 and got_iters == ref_iters == total
    rows = []
    for kind in args.kinds:
        planned = [f for f in faults if f['kind'] == kind]
        injected = sum(f['iter'] in {at for k, at in fired if k == kind}
                       for f in planned)
        rows.append(dict(
            kind=kind, planned=len(planned), injected=injected,
            survived=injected if exact else 0,
            iterations_lost=[n for k, _, _, n in lost if k == kind]))
    result = dict(
        command=' '.join(['python', 'tools/fault_soak.py'] +
                         (argv if argv is not None else sys.argv[1:])),
        nproc=args.nproc, iterations=total, seed=args.seed, faults=faults,
        launches=len(runs['soak']['codes']), exits=runs['soak']['codes'],
        rows=rows, max_weight_diff=diff, iterations_trained=dict(
            reference=ref_iters, soak=got_iters),
        minutes=(time.time() - start) / 60)
    print('| fault | planned | injected | survived | iterations lost |')
    print('|---|---|---|---|---|')
    for r in rows:
        print(f'| {r["kind"]} | {r["planned"]} | {r["injected"]} | '
              f'{r["survived"]} | '
              f'{", ".join(map(str, r["iterations_lost"])) or "-"} |')
    print(f'[soak] {len(runs["soak"]["codes"])} launches (exits '
          f'{runs["soak"]["codes"]}); final student weights vs the '
          f'reference: max |diff| {diff:.3g}; iterations {got_iters} vs '
          f'{ref_iters} of {total}; {result["minutes"]:.1f} min')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == '__main__':
    main()
