"""The ``rfcr-*`` commands print none of the third-party deprecation warnings that would
precede their output (setuptools' on mmengine's import of pkg_resources), and every other
warning still."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = 'configs/yoloret/yoloret_mobilenetv2-0.75_rfcr_1xb4-320-3e_synthetic.py'
# What a command does: import its module, then load a config, whose mmdet:: bases make
# mmengine import pkg_resources; then a warning of our own, of the same category.
SCRIPT = f"""
import warnings
import {{module}}
from rfcr.utils.config import load_config
load_config({CONFIG!r})
warnings.warn('an rfcr UserWarning', UserWarning)
"""


def _stderr(module: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONWARNINGS'}
    done = subprocess.run([sys.executable, '-c', SCRIPT.format(module=module)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_commands_hide_pkg_resources_deprecation_only():
    # As a library, rfcr changes no filter: the warning is there to be hidden.
    library = _stderr('rfcr')
    assert 'pkg_resources is deprecated' in library and 'an rfcr UserWarning' in library
    command = _stderr('rfcr.tools.summary')  # what the rfcr-summary entry point imports
    assert 'pkg_resources' not in command
    assert 'UserWarning: an rfcr UserWarning' in command
