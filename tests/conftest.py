import logging
import random
import sys

import numpy as np
import pytest
import torch
from mmengine.logging import MMLogger

import rfcr  # noqa: F401  (registers the modules)


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


class _CurrentStdout:
    """A stream that writes to whatever ``sys.stdout`` is now (pytest's capture of the
    running test; mmengine's loggers write to stdout), so that a logger made in one test
    never writes to a stream pytest closed after it."""

    def write(self, text):
        return sys.stdout.write(text)

    def flush(self):
        sys.stdout.flush()


def _point_loggers_at_current_stdout():
    for logger in list(MMLogger._instance_dict.values()) + [logging.getLogger('mmengine')]:
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler:
                handler.stream = _CurrentStdout()  # setStream would flush the old one


@pytest.fixture(autouse=True)
def _loggers_write_to_current_stdout():
    """mmengine's loggers live across tests, their stream handlers bound to the stream
    of the test (or fixture) that made them: before and after every test, point them at
    the running test's stdout."""
    _point_loggers_at_current_stdout()
    yield
    _point_loggers_at_current_stdout()


@pytest.fixture
def mmengine_messages():
    """The messages mmengine's current logger emits during the test, in order."""
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    yield messages
    logger.removeHandler(handler)


def randomize_bn_stats(model: torch.nn.Module) -> None:
    """Give every BN layer non-trivial statistics and affine parameters."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
