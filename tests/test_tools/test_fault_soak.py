"""The fault soak (tools/fault_soak.py), short: 2 gloo processes under
torchrun, 8 iterations, one fault of each kind (a preemption, a killed
worker, a failed checkpoint write, a non-finite loss) at iterations drawn
from the seed; the run survives them all and ends on the reference run's
weights exactly. And the lost-iterations bookkeeping, by hand."""
import os.path as osp
import sys

from tests.helpers import REPO_ROOT

sys.path.insert(0, osp.join(REPO_ROOT, 'tools'))
from fault_soak import lost_iterations, main, plan_faults  # noqa: E402


def test_plan_is_seeded_and_inside_the_run():
    a = plan_faults(['preempt', 'kill', 'write_fail', 'nonfinite'], 2, 40,
                    2, seed=3)
    assert a == plan_faults(['preempt', 'kill', 'write_fail', 'nonfinite'],
                            2, 40, 2, seed=3)
    assert len(a) == 8 and len({f['iter'] for f in a}) == 8
    assert all(2 <= f['iter'] <= 38 for f in a)
    assert all(f['rank'] == 0 for f in a
               if f['kind'] in ('write_fail', 'nonfinite'))


def test_lost_iterations_by_hand():
    """A write failing after iteration 4 restarts from scratch (4 lost); a
    preempted iteration completes and is checkpointed (0 lost); a worker
    killed before iteration 5 resumes from the epoch checkpoint at 4 (1
    lost)."""
    log = '\n'.join([
        '[soak] launch 1', 'Epoch(train) [1][1/4]', 'Epoch(train) [1][2/4]',
        'Epoch(train) [1][3/4]', 'Epoch(train) [1][4/4]',
        '[fault] write_fail at iteration 2 (rank 0): failing',
        '[train] torchrun restart 1: resuming', 'Epoch(train) [1][1/4]',
        'Epoch(train) [1][2/4]',
        '[fault] preempt at iteration 2 (rank 1): sending SIGTERM',
        'Epoch(train) [1][3/4]', '[train] torchrun restart 2: resuming',
        'Epoch(train) [1][4/4]', 'Epoch(train) [2][1/4]',
        '[fault] nonfinite at iteration 5 (rank 0): the losses are NaN',
        '[fault] kill at iteration 5 (rank 1): sending SIGKILL',
        '[train] torchrun restart 3: resuming', 'Epoch(train) [2][1/4]'])
    assert lost_iterations(log, 4) == [('write_fail', 2, 0, 4),
                                       ('preempt', 2, 3, 0),
                                       ('kill', 5, 4, 1)]


def test_short_soak_survives_every_fault_exactly(tmp_path):
    result = main(['--work-dir', str(tmp_path), '--epochs', '2',
                   '--iters-per-epoch', '4', '--seed', '0', '--minutes', '8',
                   '--out', str(tmp_path / 'soak.json')])
    assert result['max_weight_diff'] == 0.0
    assert result['iterations_trained'] == dict(reference=8, soak=8)
    assert result['exits'][-1] == 0
    for row in result['rows']:
        assert row['planned'] == row['injected'] == row['survived'] == 1, row
    assert osp.isfile(tmp_path / 'soak.json')
