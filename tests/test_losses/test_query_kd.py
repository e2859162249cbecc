"""QueryKDLoss: DETR queries paired by Hungarian matching, then Hinton KD of
the paired logits."""
import pytest
import torch

from mokd_det.losses import (LogitKDLoss, QueryKDLoss, match_queries,
                             match_query_batch)


def _boxes(n, generator):
    """``n`` well-separated normalised cxcywh boxes."""
    centres = (torch.arange(n, dtype=torch.float) + 0.5) / n
    cx = centres[torch.randperm(n, generator=generator)]
    cy = torch.rand(n, generator=generator) * 0.5 + 0.25
    wh = torch.full((n, 2), 0.5 / n)
    return torch.cat([cx[:, None], cy[:, None], wh], 1)


def test_matching_recovers_a_permutation_of_the_same_boxes():
    g = torch.Generator().manual_seed(0)
    t_boxes = _boxes(6, g)
    perm = torch.randperm(6, generator=g)
    s_boxes = t_boxes[perm] + 1e-3
    logits = torch.zeros(6, 3)
    s_idx, t_idx = match_queries(logits, s_boxes, logits, t_boxes,
                                 'sigmoid')
    # student row i shows teacher box perm[i]
    assert s_idx.tolist() == list(range(6))
    assert t_idx.tolist() == perm.tolist()


def test_matching_cost_by_hand():
    # two queries each; swapping costs less than keeping the order
    s_boxes = torch.tensor([[0.25, 0.5, 0.2, 0.2], [0.75, 0.5, 0.2, 0.2]])
    t_boxes = s_boxes.flip(0)
    s_logits = torch.tensor([[4.0, -4.0], [-4.0, 4.0]])
    t_logits = s_logits.flip(0)
    s_idx, t_idx = match_queries(s_logits, s_boxes, t_logits, t_boxes,
                                 'sigmoid')
    assert (s_idx.tolist(), t_idx.tolist()) == ([0, 1], [1, 0])
    # fewer student queries: each is matched, to its own box
    s_idx, t_idx = match_queries(s_logits[:1], s_boxes[:1], t_logits,
                                 t_boxes, 'sigmoid')
    assert (s_idx.tolist(), t_idx.tolist()) == ([0], [1])


def test_batched_matching_equals_each_image_matched_alone():
    """Three images, 7 student and 5 teacher queries: the batched costs and
    the one host copy give each image's own matching, in image order, and
    the loss gathers each layer's matched rows of the right image."""
    g = torch.Generator().manual_seed(3)
    s_cls, t_cls = torch.randn(2, 3, 7, 4, generator=g), \
        torch.randn(2, 3, 5, 4, generator=g)
    s_box = torch.rand(2, 3, 7, 4, generator=g) * 0.4 + 0.1
    t_box = torch.rand(2, 3, 5, 4, generator=g) * 0.4 + 0.1
    image, si, ti = match_query_batch(s_cls[-1], s_box[-1], t_cls[-1],
                                      t_box[-1], 'sigmoid')
    assert image.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    for b in range(3):
        rows, cols = match_queries(s_cls[-1, b], s_box[-1, b], t_cls[-1, b],
                                   t_box[-1, b], 'sigmoid')
        assert si[image == b].tolist() == rows.tolist()
        assert ti[image == b].tolist() == cols.tolist()
    loss = QueryKDLoss(temperature=2.0, activation='sigmoid', layers='all')
    plain = LogitKDLoss(temperature=2.0, activation='sigmoid')
    expected = plain(
        torch.cat([s_cls[layer, image, si] for layer in range(2)]),
        torch.cat([t_cls[layer, image, ti] for layer in range(2)]))
    torch.testing.assert_close(loss((s_cls, s_box), (t_cls, t_box)),
                               expected)


def test_batch_costs_equal_each_image_costs():
    """The costs of a batch in one computation (the GPU path) equal each
    image's computed alone (the CPU path of match_query_batch)."""
    from mokd_det.losses.query_kd import matching_costs
    g = torch.Generator().manual_seed(4)
    s_cls, t_cls = torch.randn(3, 7, 4, generator=g), \
        torch.randn(3, 5, 4, generator=g)
    s_box = torch.rand(3, 7, 4, generator=g) * 0.4 + 0.1
    t_box = torch.rand(3, 5, 4, generator=g) * 0.4 + 0.1
    batch = matching_costs(s_cls, s_box, t_cls, t_box, 'sigmoid')
    assert batch.shape == (3, 7, 5)
    for b in range(3):
        torch.testing.assert_close(
            batch[b], matching_costs(s_cls[b:b + 1], s_box[b:b + 1],
                                     t_cls[b:b + 1], t_box[b:b + 1],
                                     'sigmoid')[0])


def _head_output(cls, boxes, layers=2):
    """A DETR head's output: (layers, batch=1, queries, ...)."""
    return (cls[None, None].expand(layers, 1, -1, -1).clone(),
            boxes[None, None].expand(layers, 1, -1, -1).clone())


def test_loss_is_the_kd_of_the_matched_logits():
    g = torch.Generator().manual_seed(1)
    t_boxes, t_cls = _boxes(5, g), torch.randn(5, 4, generator=g)
    perm = torch.randperm(5, generator=g)
    s_cls = torch.randn(5, 4, generator=g)
    loss = QueryKDLoss(temperature=2.0, activation='sigmoid',
                       cls_weight=0.0)
    # the student's boxes are the teacher's, permuted: query i pairs with
    # teacher query perm[i]
    value = loss(_head_output(s_cls, t_boxes[perm]),
                 _head_output(t_cls, t_boxes))
    plain = LogitKDLoss(temperature=2.0, activation='sigmoid')
    assert torch.allclose(value, plain(s_cls, t_cls[perm]))
    # the same logits, permuted like the boxes: nothing to distil
    zero = loss(_head_output(t_cls[perm], t_boxes[perm]),
                _head_output(t_cls, t_boxes))
    assert zero.abs() < 1e-6


def test_denoising_queries_are_left_out_and_all_layers_distil():
    g = torch.Generator().manual_seed(2)
    t_boxes, t_cls = _boxes(4, g), torch.randn(4, 3, generator=g)
    # DINO in training: 3 denoising queries first, then 4 matching queries
    dn_boxes, dn_cls = _boxes(3, g), torch.randn(3, 3, generator=g) * 10
    s_cls = torch.randn(4, 3, generator=g)
    student = _head_output(torch.cat([dn_cls, s_cls]),
                           torch.cat([dn_boxes, t_boxes]))
    loss = QueryKDLoss(activation='sigmoid', num_queries=4,
                       teacher_num_queries=4)
    plain = LogitKDLoss(activation='sigmoid')
    assert torch.allclose(loss(student, _head_output(t_cls, t_boxes)),
                          plain(s_cls, t_cls))
    # layers='all': the first layer too, with the last layer's matching
    first = torch.randn(4, 3, generator=g)
    student[0][0, 0, 3:] = first
    every = QueryKDLoss(activation='sigmoid', num_queries=4, layers='all')
    expected = plain(torch.cat([first, s_cls]), torch.cat([t_cls, t_cls]))
    assert torch.allclose(every(student, _head_output(t_cls, t_boxes)),
                          expected)


def test_wrong_inputs_say_what_to_tap():
    loss = QueryKDLoss(activation='sigmoid')
    with pytest.raises(ValueError, match='must be a DETR head\'s whole '
                       'output.*e.g. "bbox_head"'):
        loss(torch.zeros(2, 1, 5, 3), torch.zeros(2, 1, 5, 3))
    with pytest.raises(ValueError, match="layers must be 'last' or 'all'"):
        QueryKDLoss(layers='first')


def test_non_finite_predictions_give_a_non_finite_loss_not_an_error():
    g = torch.Generator().manual_seed(3)
    t_boxes, t_cls = _boxes(4, g), torch.randn(4, 3, generator=g)
    s_cls = torch.randn(4, 3, generator=g)
    s_boxes = t_boxes.clone()
    s_boxes[1] = float('nan')
    value = QueryKDLoss(activation='sigmoid')(
        _head_output(s_cls, s_boxes), _head_output(t_cls, t_boxes))
    assert torch.isfinite(value)  # boxes are not distilled, logits are
    s_cls[2, 0] = float('nan')
    value = QueryKDLoss(activation='sigmoid')(
        _head_output(s_cls, s_boxes), _head_output(t_cls, t_boxes))
    assert not torch.isfinite(value)
