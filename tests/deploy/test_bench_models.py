"""switch_to_deploy on every model rfcr-bench measures: folded outputs equal eval outputs
within 1e-4 x their largest magnitude, and no BN is left where a fold is exact."""
import copy

import pytest
import torch

from rfcr.deploy import deploy_refusals, switch_to_deploy
from rfcr.tools import bench
from tests.deploy.test_fold import randomize


def _flat(outputs):
    return [outputs] if torch.is_tensor(outputs) else [t for o in outputs for t in _flat(o)]


def _unfolded_candidates():
    """Every model of the default suite as built (the deploy groups fold these same
    configs and necks)."""
    suite = bench.load_suite(bench.DEFAULT_SUITE)
    candidates = [c for g in suite.groups if not g.name.endswith('deploy') for c in g.candidates]
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
