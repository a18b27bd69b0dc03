"""Inference speed, explicitly: folding (:func:`switch_to_deploy`), the fused eager layers,
ONNX and OpenVINO export checked against PyTorch (:mod:`rfcr.deploy.export`), exported
files run (:mod:`rfcr.deploy.session`), runtime runners for ONNX Runtime, OpenVINO and
torch.compile (:mod:`rfcr.deploy.runtime`). Nothing here changes what ``rfcr.models``
computes.

Only the folding and the hook are imported here; the export, session and runtime modules
need the ``deploy`` extra (``onnx``, ``onnxruntime``, ``openvino``) when they run.
"""
from .bricks import DeployInvertedResidual, DeploySE
from .compose import DeployYOLOReTNeck
from .exported import ExportedDetector
from .fold import DEPLOY_FORMS, deploy_refusals, fold_with_report, switch_to_deploy
from .fused import ConvAct, FusedConv, fold_bn
from .hooks import SwitchToDeployHook
from .rfcr import DeployRFCR

__all__ = ['ConvAct', 'DEPLOY_FORMS', 'DeployInvertedResidual', 'DeployRFCR', 'DeploySE',
           'DeployYOLOReTNeck', 'ExportedDetector', 'FusedConv', 'SwitchToDeployHook',
           'deploy_refusals', 'fold_bn', 'fold_with_report', 'switch_to_deploy']
