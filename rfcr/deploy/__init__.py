"""Inference speed, explicitly: folding (:func:`switch_to_deploy`) into plain modules,
ONNX and OpenVINO export (:mod:`rfcr.deploy.export`), exported files loaded
(:mod:`rfcr.deploy.session`), and the one table of runtimes, PyTorch eager, ONNX Runtime,
OpenVINO and torch.compile, with their runners and checks against PyTorch
(:mod:`rfcr.deploy.runtime`). Nothing here changes what ``rfcr.models`` computes.

Only the folding and the hook are imported here; the export, session and runtime modules
need the ``deploy`` extra (``onnx``, ``onnxruntime``, ``openvino``) when they run.
"""
from .bricks import DeployInvertedResidual, DeploySE
from .compose import DeployYOLOReTNeck
from .conv import ConvAct, fold_bn
from .exported import ExportedDetector
from .fold import DEPLOY_FORMS, deploy_refusals, fold_with_report, switch_to_deploy
from .hooks import SwitchToDeployHook
from .rfcr import DeployRFCR

__all__ = ['ConvAct', 'DEPLOY_FORMS', 'DeployInvertedResidual', 'DeployRFCR', 'DeploySE',
           'DeployYOLOReTNeck', 'ExportedDetector', 'SwitchToDeployHook',
           'deploy_refusals', 'fold_bn', 'fold_with_report', 'switch_to_deploy']
