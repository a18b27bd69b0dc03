"""switch_to_deploy on every model rfcr-bench measures: folded outputs equal eval outputs
within 1e-4 x their largest magnitude, and no BN is left where a fold is exact; the
end2end group's model detects."""
import copy

import pytest
import torch

from rfcr.deploy import deploy_refusals, switch_to_deploy
from rfcr.tools import bench
from tests.deploy.test_fold import randomize


def _flat(outputs):
    return [outputs] if torch.is_tensor(outputs) else [t for o in outputs for t in _flat(o)]


SUITE_FILE = bench.REPO / 'benchmarks' / 'suite.py'


def _unfolded_candidates():
    """Every model of the repository's suite as built (the deploy groups and end2end fold
    these same configs and necks)."""
    suite = bench.load_suite(SUITE_FILE)
    candidates = [c for g in suite.groups if not g.name.endswith('deploy')
                  and g.name != 'end2end' for c in g.candidates]
    assert len(candidates) == 5 + 5 + 6 + 4 + 3  # ablation x2, detectors, necks, EB3
    return candidates


@pytest.mark.parametrize('cand', _unfolded_candidates(), ids=lambda c: c.name)
def test_folded_equals_eval(cand):
    torch.manual_seed(0)
    model = randomize(cand.build())
    inputs = cand.make_inputs(1, (96, 128))
    with torch.no_grad():
        expected = _flat(cand.call(model, inputs))
        folded = switch_to_deploy(copy.deepcopy(model))
        got = _flat(cand.call(folded, inputs))
    assert deploy_refusals(folded) == []
    assert len(got) == len(expected)
    scale = max(float(t.abs().max()) for t in expected)
    for e, g in zip(expected, got):
        assert g.shape == e.shape
        assert float((g - e).abs().max()) <= 1e-4 * scale


def test_end2end_rows_detect_as_trained_models_do():
    """The end2end group's two rows hold the same weights, and its model detects: every
    image gives boxes (max_per_img of them, NMS fed nms_pre candidates), not the same
    boxes for two images."""
    (group, ) = bench.load_suite(SUITE_FILE).select(['end2end']).groups
    model_only, end2end = (c.build() for c in group.candidates)
    (images, ) = group.candidates[1].make_inputs(2, (320, 320))
    assert images.dtype == torch.uint8 and images.shape == (2, 3, 320, 320)
    with torch.no_grad():
        x = end2end.preprocess(images)
        for a, b in zip(model_only(x, mode='tensor')[0], end2end.detector(x, mode='tensor')[0]):
            assert torch.equal(a, b)
        boxes, objectness, scores = end2end.decode(end2end.detector(x, mode='tensor')[0])
        num_dets, found, _, labels = end2end(images)
    passed = (scores > end2end.score_thr) & (objectness >= end2end.conf_thr)[..., None]
    assert (passed.flatten(1).sum(1) > end2end.nms_pre).all()
    assert num_dets.tolist() == [end2end.max_per_img] * 2
    assert not torch.equal(found[0], found[1]) and len(labels[0].unique()) > 1
