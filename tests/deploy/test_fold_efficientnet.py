"""switch_to_deploy on EfficientNets: mmdet's blocks (InvertedResidual with squeeze-excite,
and EdgeResidual, which the EdgeTPU archs use) fold exactly through their ConvModules, TF
"SAME" padding and drop-path included, and no BN is left."""
import copy

import pytest
import torch

from mmdet.models.backbones import EfficientNet
from rfcr.deploy import fold_with_report
from rfcr.models import TruncatedEfficientNet
from tests.conftest import randomize_bn_stats


@pytest.mark.parametrize('build', [
    lambda: TruncatedEfficientNet('b3', out_strides=(4, 8, 16, 32), drop_path_rate=0.2),
    lambda: EfficientNet('es', out_indices=(2, 3, 4, 6), drop_path_rate=0.2),  # EdgeResidual
], ids=['TruncatedEfficientNet-b3', 'EfficientNet-es'])
def test_folds_exactly(build):
    model = build()
    randomize_bn_stats(model)
    model.eval()
    x = torch.rand(1, 3, 97, 130)
    with torch.no_grad():
        expected = model(x)
        folded, refused = fold_with_report(copy.deepcopy(model))
        folded.eval()
        got = folded(x)
    assert refused == []
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert len(got) == len(expected) == 4  # four taps in both models
    for e, g in zip(expected, got):
        assert g.shape == e.shape
        assert float((g - e).abs().max()) <= 1e-4 * float(e.abs().max())
