"""Keras references for the converter tests, made once per session by Keras itself in a
subprocess (``python -m tests.convert.keras_reference``; see that module for why TensorFlow
stays out of the pytest process). tensorflow-cpu and tf-keras are in the dev extra: these
tests run in CI, they are never skipped."""
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from rfcr.tools import convert

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='session')
def keras_refs(tmp_path_factory):
    out = tmp_path_factory.mktemp('keras_refs')
    env = {**os.environ, 'TF_USE_LEGACY_KERAS': '1', 'TF_CPP_MIN_LOG_LEVEL': '2',
           'PYTHONPATH': os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')])}
    run = subprocess.run([sys.executable, '-m', 'tests.convert.keras_reference', str(out)],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    return SimpleNamespace(dir=out, mobilenet_v2=dict(np.load(out / 'mobilenet_v2.npz')),
                           yoloret=dict(np.load(out / 'yoloret.npz')),
                           yoloret_eb3=dict(np.load(out / 'yoloret_eb3.npz')))


@pytest.fixture
def convert_fails(capsys):
    """``convert_fails(argv, match, dst)``: rfcr-convert refuses ``argv`` with exit status 1
    and one ``rfcr-convert: error:`` line containing ``match``, and writes nothing (no
    ``dst``, no temporary file beside it). Returns the error line."""
    def check(argv, match, dst):
        with pytest.raises(SystemExit) as e:
            convert.main(argv)
        assert e.value.code == 1
        err = capsys.readouterr().err
        assert err.count('\n') == 1 and err.startswith('rfcr-convert: error: '), err
        assert match in err, err
        assert not os.path.exists(dst)
        assert [p for p in os.listdir(os.path.dirname(dst)) if p.endswith('.tmp')] == []
        return err
    return check
