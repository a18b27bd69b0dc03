"""No traceback reaches a user: every ``rfcr-*`` command given a bad argument of each kind
it takes (a missing file, a directory, a wrong type, out of range, an empty or garbage file,
a config with a syntax error, a checkpoint of another model or holding NaN) ends in one
line and exit status 1 or 2 (rfcr.utils.cli):

- status 1: exactly one non-empty stderr line, ``prog: error: ...`` (or the line of a
  ``sys.exit('prog: ...')``);
- status 2, argparse's: its usage, then one ``prog: error: ...`` line (rfcr-predict: that
  line alone).

damaged Keras files for rfcr-convert are in tests/convert/test_damaged_files.py."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch

import rfcr_predict
from rfcr.datasets import synthetic
from rfcr.tools import bench, convert, export, quantize, summary, test, train
from rfcr.utils.config import build_model

ROOT = Path(__file__).resolve().parents[1]
SYN = str(ROOT / 'configs/yoloret/yoloret_mobilenetv2-0.75_rfcr_1xb4-320-3e_synthetic.py')
COCO = str(ROOT / 'configs/yoloret/yoloret_mobilenetv2-0.75_rfcr_2xb8-320-250e_coco.py')
EB3 = str(ROOT / 'configs/yoloret/yoloret_efficientnet-b3_rfcr_2xb8-416-250e_coco.py')
MAINS = {'rfcr-convert': convert.main, 'rfcr-export': export.main,
         'rfcr-quantize': quantize.main, 'rfcr-test': test.main, 'rfcr-train': train.main,
         'rfcr-summary': summary.main, 'rfcr-make-data': synthetic.main,
         'rfcr-predict': rfcr_predict.main, 'rfcr-bench': bench.main}


@pytest.fixture(scope='module')
def d(tmp_path_factory):
    """A folder of bad inputs, and a good checkpoint of the synthetic config's model."""
    d = tmp_path_factory.mktemp('bad')
    model = build_model(SYN)
    state_dict = model.state_dict()
    torch.save({'state_dict': state_dict, 'meta': {}}, d / 'ckpt.pth')
    data = (d / 'ckpt.pth').read_bytes()
    (d / 'truncated.pth').write_bytes(data[:len(data) // 2])
    (d / 'empty.pth').write_bytes(b'')
    (d / 'garbage.pth').write_bytes(b'garbage\x00\x01' * 10)
    torch.save([1, 2, 3], d / 'list.pth')
    torch.save(model.backbone.state_dict(), d / 'backbone.pth')  # a backbone checkpoint
    nan = {k: v.clone() for k, v in state_dict.items()}
    nan['backbone.conv1.conv.weight'].view(-1)[:3] = float('nan')
    nan['neck.0.fusion_weights'][0] = float('inf')
    torch.save({'state_dict': nan}, d / 'nan.pth')
    (d / 'syntax.py').write_text('model = dict(\n')
    (d / 'empty.py').write_text('')
    (d / 'garbage.onnx').write_bytes(b'garbage')
    (d / 'afile').write_text('a file')
    (d / 'adir').mkdir()
    # An end-to-end file's metadata on a graph no runtime loads (a file of another tool).
    meta = dict(rfcr_end2end='1', classes='["a"]', input_size='[64, 64]',
                letterbox='resize_pad', pad_value='[114, 114, 114]', channel_order='bgr')
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node('NoSuchOp', ['x'], ['y'])], 'g',
        [onnx.helper.make_tensor_value_info('x', onnx.TensorProto.UINT8, [1, 3, 64, 64])],
        [onnx.helper.make_tensor_value_info('y', onnx.TensorProto.FLOAT, [1])])
    broken = onnx.helper.make_model(graph)
    onnx.helper.set_model_props(broken, meta)
    onnx.save(broken, d / 'broken_end2end.onnx')
    no_classes = onnx.helper.make_model(graph)
    onnx.helper.set_model_props(no_classes, {k: v for k, v in meta.items() if k != 'classes'})
    onnx.save(no_classes, d / 'no_classes.onnx')
    (d / 'image.png').write_bytes(b'')  # never read: MODEL fails first
    return d


WORK = ['--work-dir', '{d}/work']
NO_DATA = ['--cfg-options', 'test_dataloader.dataset.data_root={d}/nodata/',
           'train_dataloader.dataset.data_root={d}/nodata/']
CASES = [  # (command, argv, exit status, fragment of the error line)
    # rfcr-convert (damaged .h5 files: tests/convert/test_damaged_files.py)
    ('rfcr-convert', ['keras-mobilenetv2', '{d}/nope.h5', '{d}/o.pth'], 1, 'no such file'),
    ('rfcr-convert', ['keras-mobilenetv2', '{d}/adir', '{d}/o.pth'], 1,
     'a directory, expected a Keras HDF5 file'),
    ('rfcr-convert', ['keras-mobilenetv2', '{d}/empty.pth', '{d}/o.pth'], 1,
     'is not an HDF5 file'),
    ('rfcr-convert', ['official-yoloret', '{d}/garbage.pth', '{d}/o.pth', '--config',
                      '{d}/syntax.py'], 1, "syntax.py: line 1: '(' was never closed"),
    ('rfcr-convert', ['official-yoloret', '{d}/garbage.pth', '{d}/o.pth', '--config',
                      '{d}/nope.py'], 1, 'config file not found'),
    ('rfcr-convert', ['official-yoloret', '{d}/garbage.pth', '{d}/o.pth', '--config',
                      '{d}/adir'], 1, 'adir (a directory)'),
    ('rfcr-convert', ['official-yoloret', '{d}/garbage.pth', '{d}/o.pth', '--config',
                      '{d}/empty.py'], 1, 'defines no model'),
    ('rfcr-convert', ['keras-mobilenetv2', '{d}/garbage.pth', '{d}/o.pth', '--cfg-options',
                      'a'], 2, "argument --cfg-options: expected key=value pairs, got 'a'"),
    ('rfcr-convert', [], 2, 'the following arguments are required'),
    # rfcr-export: every kind of bad checkpoint (rfcr.utils.config.load_weights, which
    # rfcr-quantize and rfcr-test share)
    ('rfcr-export', ['{d}/nope.py', '{d}/o.onnx'], 1, 'config file not found'),
    ('rfcr-export', ['{d}/syntax.py', '{d}/o.onnx'], 1, "line 1: '(' was never closed"),
    ('rfcr-export', ['{d}/empty.py', '{d}/o.onnx'], 1, 'defines no model'),
    ('rfcr-export', [SYN, '{d}/o.onnx', '--checkpoint', '{d}/nope.pth'], 1,
     "checkpoint='{d}/nope.pth': no such file"),
    ('rfcr-export', [SYN, '{d}/o.onnx', '--checkpoint', '{d}/adir'], 1,
     'a directory, expected a checkpoint file'),
    ('rfcr-export', [SYN, '{d}/o.onnx', '--checkpoint', '{d}/empty.pth'], 1,
     'is not a checkpoint that torch.load reads (EOFError: the file ends early)'),
    ('rfcr-export', [SYN, '{d}/o.onnx', '--checkpoint', '{d}/truncated.pth'], 1,
     'is not a checkpoint that torch.load reads (RuntimeError: PytorchStreamReader failed'),
    ('rfcr-export', [SYN, '{d}/o.onnx', '--checkpoint', '{d}/garbage.pth'], 1,
     'checkpoint refused by safe loading (torch.load weights_only=True): Unsupported operand'),
    ('rfcr-export', [SYN, '{d}/o.onnx', '--checkpoint', '{d}/list.pth'], 1,
     'holds a list, expected a state dict of tensors'),
    ('rfcr-export', [SYN, '{d}/o.onnx', '--checkpoint', '{d}/backbone.pth'], 1,
     'does not match the model of {syn}: missing (467): backbone.conv1.bn.bias'),
    ('rfcr-export', [COCO, '{d}/o.onnx', '--checkpoint', '{d}/ckpt.pth'], 1,
     'does not match the model of {coco}: shape mismatch (43): bbox_head.convs_pred.0.bias: '
     'checkpoint (33,) vs model (255,)'),
    ('rfcr-export', [EB3, '{d}/o.onnx', '--checkpoint', '{d}/ckpt.pth'], 1,
     'does not match the model of {eb3}: missing'),
    ('rfcr-export', [SYN, '{d}/o.onnx', '--checkpoint', '{d}/nan.pth'], 1,
     "checkpoint='{d}/nan.pth' holds non-finite values in 2 tensor(s), expected finite "
     'weights: backbone.conv1.conv.weight (3 NaN of 648 values); neck.0.fusion_weights '
     '(1 +inf of 4 values)'),
    ('rfcr-export', [SYN, '{d}/o.onnx', '--shape', 'x', '64'], 2,
     "argument --shape: invalid int value: 'x'"),
    ('rfcr-export', [SYN, '{d}/o.onnx', '--batch', '0'], 2, '--batch must be positive, got 0'),
    ('rfcr-export', [SYN, '{d}/o.onnx', '--format', 'openvino'], 2,
     '--format openvino writes a .xml file'),
    ('rfcr-export', [SYN, '{d}/o.onnx', '--neck', '7'], 1, '--neck 7, but'),
    ('rfcr-export', [SYN, '{d}/afile/o.onnx', '--shape', '64', '64'], 1, 'File exists'),
    ('rfcr-export', [SYN, '{d}/o.onnx', '--cfg-options', 'model.backbone.widen_factor=abc'],
     1, "widen_factor must be a positive number, got 'abc'"),
    # rfcr-quantize
    ('rfcr-quantize', ['{d}/nope.py', '{d}/ckpt.pth', '{d}/o.onnx'], 1,
     'config file not found'),
    ('rfcr-quantize', [SYN, '{d}/nope.pth', '{d}/o.onnx'], 1, 'nope.pth'),
    ('rfcr-quantize', [SYN, '{d}/nan.pth', '{d}/o.onnx'], 1,
     'holds non-finite values in 2 tensor(s)'),
    ('rfcr-quantize', [COCO, '{d}/ckpt.pth', '{d}/o.onnx'], 1, 'shape mismatch (43)'),
    ('rfcr-quantize', [SYN, '{d}/ckpt.pth', '{d}/o.onnx', '--calib', '0'], 2,
     "argument --calib: must be a positive int, got '0'"),
    ('rfcr-quantize', [SYN, '{d}/ckpt.pth', '{d}/o.onnx', '--runtime', 'ncnn'], 2,
     "'ncnn' does not quantize here"),
    ('rfcr-quantize', [SYN, '{d}/ckpt.pth', '{d}/o.xml'], 2,
     '--runtime onnxruntime writes a .onnx file'),
    ('rfcr-quantize', [SYN, '{d}/ckpt.pth', '{d}/nope/o.onnx'], 2, 'does not exist'),
    # rfcr-test
    ('rfcr-test', ['{d}/nope.py', '{d}/ckpt.pth'] + WORK, 1, 'config file not found'),
    ('rfcr-test', ['{d}/syntax.py', '{d}/ckpt.pth'] + WORK, 1, "line 1: '(' was never"),
    ('rfcr-test', ['{d}/empty.py', '{d}/ckpt.pth'] + WORK, 1,
     'defines no model, test_dataloader, test_cfg, test_evaluator, which rfcr-test needs'),
    ('rfcr-test', [SYN, '{d}/adir'] + WORK, 1, 'a directory, expected a checkpoint file'),
    ('rfcr-test', [SYN, '{d}/nan.pth'] + WORK, 1, 'holds non-finite values in 2 tensor(s)'),
    ('rfcr-test', [COCO, '{d}/ckpt.pth'] + WORK, 1, 'shape mismatch (43)'),
    ('rfcr-test', [SYN, '{d}/ckpt.pth'] + WORK + NO_DATA, 1,
     "No such file or directory: '{d}/nodata/annotations/instances_val.json'"),
    ('rfcr-test', [SYN, '{d}/garbage.onnx'] + WORK, 1,
     'InvalidProtobuf: [ONNXRuntimeError] : 7 : INVALID_PROTOBUF'),
    ('rfcr-test', [SYN, '{d}/nope.onnx'] + WORK, 2, "exported model '{d}/nope.onnx': no such"),
    ('rfcr-test', [SYN, '{d}/garbage.onnx', '--threads', 'abc'], 2,
     "argument --threads: invalid int value: 'abc'"),
    ('rfcr-test', [SYN, '{d}/garbage.onnx', '--threads', '0'], 2,
     '--threads must be a positive int, got 0'),
    ('rfcr-test', [SYN, '{d}/ckpt.pth', '--out', 'x.txt'], 2, '--out must be a .pkl'),
    ('rfcr-test', [SYN, '{d}/ckpt.pth', '--cfg-options', 'a'], 2, 'expected key=value pairs'),
    # rfcr-train
    ('rfcr-train', ['{d}/nope.py'] + WORK, 1, 'config file not found'),
    ('rfcr-train', ['{d}/syntax.py'] + WORK, 1, "line 1: '(' was never closed"),
    ('rfcr-train', ['{d}/empty.py'] + WORK, 1,
     'defines no model, train_dataloader, train_cfg, optim_wrapper, which rfcr-train needs'),
    ('rfcr-train', [SYN] + WORK + NO_DATA, 1, "No such file or directory: '{d}/nodata/"),
    ('rfcr-train', [SYN, '--cfg-options', 'a'], 2, 'expected key=value pairs'),
    # rfcr-summary
    ('rfcr-summary', ['{d}/nope.py'], 1, 'config file not found'),
    ('rfcr-summary', ['{d}/adir'], 1, 'adir (a directory)'),
    ('rfcr-summary', ['{d}/syntax.py'], 1, "line 1: '(' was never closed"),
    ('rfcr-summary', [SYN, '--input-size', 'x'], 2,
     "argument --input-size: input size must be N or HxW with positive ints, got 'x'"),
    ('rfcr-summary', [SYN, '--threads', '0'], 2, "--threads: must be a positive int, got '0'"),
    ('rfcr-summary', [SYN, '--runs', '-1'], 2, "--runs: must be an int >= 0, got '-1'"),
    ('rfcr-summary', [SYN, '--device', 'abc'], 2, "expected 'cpu' or 'cuda[:i]', got 'abc'"),
    ('rfcr-summary', [SYN, '--device', 'cuda:99'], 2, "got 'cuda:99', but this machine has"),
    ('rfcr-summary', [SYN, '--cfg-options', 'model.backbone.widen_factor=abc'], 1,
     "widen_factor must be a positive number, got 'abc'"),
    # rfcr-make-data
    ('rfcr-make-data', ['--out', '{d}/md', '--train', '0'], 2,
     "argument --train: must be a positive int, got '0'"),
    ('rfcr-make-data', ['--out', '{d}/md', '--val', 'abc'], 2,
     "argument --val: must be a positive int, got 'abc'"),
    ('rfcr-make-data', ['--out', '{d}/afile'], 2, "--out '{d}/afile' is a file"),
    ('rfcr-make-data', ['--out', '{d}/md', '--size', '10'], 1,
     'size must be an int >= 64, got 10'),
    ('rfcr-make-data', ['--out', '{d}/md', '--objects', '5', '2'], 1,
     'num_objects must be (min, max) ints with 1 <= min <= max, got (5, 2)'),
    # rfcr-predict (its InputError table: tests/test_predict.py)
    ('rfcr-predict', ['{d}/nope.onnx', '{d}/image.png'], 2, 'which does not exist'),
    ('rfcr-predict', ['{d}/adir', '{d}/image.png'], 2, 'expected an end-to-end'),
    ('rfcr-predict', ['{d}/garbage.onnx', '{d}/image.png'], 2, 'expected an ONNX file'),
    ('rfcr-predict', ['{d}/no_classes.onnx', '{d}/image.png'], 2,
     "whose rfcr metadata is not what rfcr-export --end2end writes (KeyError: 'classes')"),
    ('rfcr-predict', ['{d}/broken_end2end.onnx', '{d}/image.png'], 1,
     'NoSuchOp'),
    ('rfcr-predict', ['{d}/nope.onnx', '{d}/image.png', '--score-thr', '2'], 2,
     '--score-thr: got 2, expected a number in [0, 1]'),
    # rfcr-bench (more: tests/analysis/test_bench_cli.py, test_intervals.py)
    ('rfcr-bench', ['--suite', '{d}/syntax.py'], 1,
     "syntax.py': line 1: '(' was never closed, expected Python"),
    ('rfcr-bench', ['--suite', '{d}/empty.py'], 1, 'must define SUITE'),
    ('rfcr-bench', ['--suite', '{d}/nope.py'], 1, 'nope.py: no such file'),
    ('rfcr-bench', ['--configs', '{d}/nope.py'], 1, 'no such config file'),
    ('rfcr-bench', ['--configs', '{syn}', '{syn}', '--baseline', 'zzz'], 1,
     "--baseline must name one of the configs"),
    ('rfcr-bench', ['--models', '{d}/garbage.onnx'], 1, 'INVALID_PROTOBUF'),
    ('rfcr-bench', ['--configs', '{syn}', '--device', 'abc'], 2,
     "expected 'cpu' or 'cuda[:i]', got 'abc'"),
    ('rfcr-bench', ['--configs', '{syn}', '--warmup', '-1'], 2, 'must be an int >= 0'),
    ('rfcr-bench', ['--configs', '{syn}', '--threads', '0'], 2, 'must be a positive int'),
    ('rfcr-bench', ['--configs', '{syn}', '--cfg-options', 'a'], 2,
     "expected key=value pairs, got 'a'"),
    ('rfcr-bench', ['--configs', '{syn}', '--out-dir', '{d}/afile'], 1,
     'is a file, expected a folder'),
    ('rfcr-bench', ['--configs', '{syn}', '--precision', '0'], 2,
     'argument --precision: must be a number in (0, 1)'),
]


def _id(case) -> str:
    argv = ' '.join(case[1]).replace('{d}/', '')
    for name, path in (('SYN', SYN), ('COCO', COCO), ('EB3', EB3)):
        argv = argv.replace(path, name)
    return f'{case[0]} {argv}'


def _fill(text: str, d: Path) -> str:
    return text.format(d=d, syn=SYN, coco=COCO, eb3=EB3)


def run_main(command: str, argv: list, capsys) -> tuple[int, str]:
    """The exit status and stderr of ``command``'s ``main(argv)``, run in this process."""
    capsys.readouterr()
    try:
        status = MAINS[command](argv)
    except SystemExit as e:
        status = e.code
    err = capsys.readouterr().err
    if isinstance(status, str):  # sys.exit('message'): Python prints it, status 1
        status, err = 1, err + status + '\n'
    return status, err


@pytest.mark.parametrize('command, argv, status, fragment', CASES,
                         ids=[_id(c) for c in CASES])
def test_bad_input_gets_one_line(d, command, argv, status, fragment, capsys):
    got, err = run_main(command, [_fill(a, d) for a in argv], capsys)
    assert got == status, err
    assert 'Traceback' not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, 'nothing on stderr'
    prog = command + (f' {argv[0]}' if command == 'rfcr-convert' and status == 2 and argv
                      else '')
    if status == 1 or command == 'rfcr-predict':
        assert len(lines) == 1, err
    else:  # argparse: the usage, then the error
        assert lines[0].startswith('usage: ') and f'{prog}: error' not in '\n'.join(lines[:-1])
    assert lines[-1].startswith(f'{prog}: '), err
    assert _fill(fragment, d) in lines[-1], err
    assert not (d / 'o.pth').exists() and not (d / 'o.onnx').exists()
    assert not (d / 'md').exists()


def test_debug_shows_the_traceback(d, capsys):
    argv = ['keras-mobilenetv2', str(d / 'garbage.pth'), str(d / 'o.pth')]
    with pytest.raises(ValueError, match='is not an HDF5 file'):
        convert.main(argv + ['--debug'])
    with pytest.raises(Exception, match='NoSuchOp'):
        rfcr_predict.main([str(d / 'broken_end2end.onnx'), str(d / 'image.png'), '--debug'])


@pytest.mark.parametrize('command, argv, fragment', [
    ('rfcr-convert', ['keras-mobilenetv2', '{d}/garbage.pth', '{d}/o.pth'],
     'rfcr-convert: error: {d}/garbage.pth is not an HDF5 file'),
    ('rfcr-predict', ['{d}/broken_end2end.onnx', '{d}/image.png'], 'NoSuchOp'),
])
def test_console_script_prints_no_traceback(d, command, argv, fragment):
    """The installed console scripts themselves: one line on stderr, exit status 1."""
    script = shutil.which(command, path=os.path.dirname(sys.executable))
    assert script, f'{command} is not installed beside {sys.executable}'
    out = subprocess.run([script] + [_fill(a, d) for a in argv], capture_output=True,
                         text=True, timeout=300, cwd=d)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 1 and len(lines) == 1, out.stderr
    assert _fill(fragment, d) in lines[0] and 'Traceback' not in out.stderr


def test_a_backbone_checkpoint_with_nan_is_refused(tmp_path):
    """init_cfg=dict(type='Pretrained'): the backbone loader refuses non-finite weights too
    (rfcr.utils.checkpoint.load_state_dict, which every loader reads with)."""
    from mmdet.registry import MODELS
    backbone = dict(type='TruncatedMobileNetV2', widen_factor=0.75)
    state_dict = {k: v.clone() for k, v in MODELS.build(backbone).state_dict().items()}
    state_dict['conv1.conv.weight'].view(-1)[:2] = float('-inf')
    torch.save({'state_dict': state_dict}, tmp_path / 'nan.pth')
    pretrained = MODELS.build(dict(backbone, init_cfg=dict(
        type='Pretrained', checkpoint=str(tmp_path / 'nan.pth'))))
    with pytest.raises(ValueError, match=r"nan.pth' holds non-finite values in 1 tensor\(s\), "
                                         r'expected finite weights: conv1.conv.weight '
                                         r'\(2 -inf of'):
        pretrained.init_weights()
