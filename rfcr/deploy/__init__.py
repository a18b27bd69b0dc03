"""Deployment: inference folding (:func:`switch_to_deploy`), ONNX export checked with ONNX
Runtime (:mod:`rfcr.deploy.export`) and latency measurement (:mod:`rfcr.deploy.runtime`).

Only the folding is imported here; the export and runtime modules need the ``deploy``
extra (``onnx``, ``onnxruntime``).
"""
from ..models.layers.fused import ConvAct, FusedConv, fold_bn
from ..models.necks.rfcr import DeployRFCR
from .compose import DeployYOLOReTNeck
from .fold import DeployInvertedResidual, DeploySE, switch_to_deploy

__all__ = ['ConvAct', 'DeployInvertedResidual', 'DeployRFCR', 'DeploySE', 'DeployYOLOReTNeck',
           'FusedConv', 'fold_bn', 'switch_to_deploy']
