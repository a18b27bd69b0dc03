"""``rfcr-predict``: run an end-to-end detector file (``rfcr-export --end2end``) on images with
numpy, OpenCV and one runtime alone (ONNX Runtime, OpenVINO, MNN or LiteRT): no torch,
mmdet or rfcr.

    rfcr-predict MODEL IMAGE_OR_DIR... [--out-dir D] [--score-thr T]
                 [--runtime onnxruntime|openvino|mnn|litert] [--coco-json FILE]
                 [--coco-ann ANN.json]

MODEL: ``.onnx`` (ONNX Runtime, OpenVINO), ``.xml`` (OpenVINO), ``.mnn`` (MNN), ``.tflite``
(LiteRT); the metadata is in an ONNX file, else in ``MODEL.json`` beside it.

Each image is resized and padded to the graph's input as the model's config does (the
file's metadata: mmdet's keep-ratio ``Resize`` padded bottom-right, or rfcr's centred
``Letterbox``), run (decoding and NMS are in the graph), and its boxes are mapped back to
the image and clipped to it. Written: ``D/<stem>.json`` (boxes x1 y1 x2 y2, scores,
labels, class names), ``D/<name>`` with the boxes drawn and, with ``--coco-json``, the
detections of all images as a COCO results list (image and category ids from
``--coco-ann``'s file names and category names, else the image's index and the label).
Bad input gets one line on stderr and exit code 2, before anything is written; any other
error one line and exit code 1 (``--debug``: its traceback).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

END2END_KEY = 'rfcr_end2end'  # rfcr.deploy.end2end's marker of an end-to-end graph
SUFFIXES = {'onnxruntime': ('.onnx', ), 'openvino': ('.onnx', '.xml'), 'mnn': ('.mnn', ),
            'litert': ('.tflite', )}  # the files each runtime runs
IMAGE_SUFFIXES = ('.bmp', '.jpeg', '.jpg', '.png', '.tif', '.tiff', '.webp')


class InputError(Exception):
    """Bad input: its message is the one line printed, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        raise InputError(message)


def letterbox(image: np.ndarray, size: Sequence[int], rule: str, pad_value: Sequence[float]
              ) -> tuple[np.ndarray, tuple[float, float], tuple[int, int]]:
    """``image`` (h, w, 3) uint8 resized (bilinear) keeping its aspect ratio to fit
    ``size`` (H, W), padded to it. ``rule``: ``'resize_pad'``, mmdet's ``Resize(keep_ratio=
    True)`` (mmcv's rounding, ``int(side * scale + 0.5)``), padded bottom-right;
    ``'centred'``, rfcr's ``Letterbox`` (truncated sizes, resized in float, centred).
    Returns the (H, W, 3) input, the scale (x, y) and the offset (left, top)."""
    h, w = image.shape[:2]
    out_h, out_w = size
    ratio = min(out_w / w, out_h / h)
    if rule == 'centred':
        new_w, new_h = int(w * ratio), int(h * ratio)
        resized = cv2.resize(image.astype(np.float32), (new_w, new_h),
                             interpolation=cv2.INTER_LINEAR)
        resized = np.clip(np.rint(resized), 0, 255).astype(np.uint8)
        top, left = (out_h - new_h) // 2, (out_w - new_w) // 2
    else:
        new_w, new_h = int(w * ratio + 0.5), int(h * ratio + 0.5)
        resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        top = left = 0
    out = np.empty((out_h, out_w, 3), np.uint8)
    out[:] = np.clip(np.rint(pad_value), 0, 255).astype(np.uint8)
    out[top:top + new_h, left:left + new_w] = resized
    return out, (new_w / w, new_h / h), (left, top)


def _varint(data: memoryview, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _fields(data: memoryview):
    """The (field number, value) pairs of a serialized protobuf message, in order."""
    i = 0
    while i < len(data):
        tag, i = _varint(data, i)
        wire = tag & 7
        if wire == 0:
            value, i = _varint(data, i)
        elif wire in (1, 5):  # fixed 64 / 32 bits
            size = 8 if wire == 1 else 4
            value, i = data[i:i + size], i + size
        elif wire == 2:  # length-delimited
            size, i = _varint(data, i)
            value, i = data[i:i + size], i + size
        else:
            raise ValueError(f'protobuf wire type {wire}')
        if i > len(data):
            raise ValueError('truncated protobuf message')
        yield tag >> 3, value


def onnx_metadata(path: str) -> dict[str, str]:
    """The ``metadata_props`` of the ONNX file at ``path`` (``ModelProto`` field 14, entries
    of key 1 and value 2), read without the onnx package: neither runtime exposes them
    all (OpenVINO does not)."""
    with open(path, 'rb') as f:
        data = memoryview(f.read())
    meta = {}
    for field, value in _fields(data):
        if field == 14:
            entry = dict(_fields(value))
            meta[bytes(entry.get(1, b'')).decode()] = bytes(entry.get(2, b'')).decode()
    return meta


def metadata(path: str) -> dict[str, str]:
    """An end-to-end file's metadata: an ONNX file's own, else ``path + '.json'`` beside
    it (``rfcr.deploy.end2end.metadata_path``)."""
    if Path(path).suffix.lower() == '.onnx':
        try:
            return onnx_metadata(path)
        except (ValueError, IndexError, UnicodeDecodeError) as e:
            raise InputError(f'MODEL: got {path!r}, expected an ONNX file ({e})') from None
    sidecar = Path(path + '.json')
    try:
        return json.loads(sidecar.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f'MODEL: got {path!r}, whose metadata {str(sidecar)!r} (written '
                         f'beside it by rfcr-export --end2end) cannot be read: {e}') from None


def _load(path: str, runtime: str):
    """The file's batch size (``None``: dynamic) and a function from a (1, 3, H, W) uint8
    batch to the outputs by name."""
    if runtime == 'openvino':
        import openvino as ov
        # f32: on CPUs with bf16, OpenVINO would compute (and select boxes) in bf16
        compiled = ov.Core().compile_model(path, 'CPU', {'INFERENCE_PRECISION_HINT': 'f32'})
        batch = compiled.inputs[0].get_partial_shape()[0]
        names = [o.get_any_name() for o in compiled.outputs]
        return (batch.get_length() if batch.is_static else None,
                lambda x: dict(zip(names, compiled([x]).to_tuple())))
    if runtime == 'mnn':
        import MNN
        manager = MNN.nn.create_runtime_manager(({'backend': 'CPU', 'precision': 'high'}, ))
        module = MNN.nn.load_module_from_file(path, [], [], runtime_manager=manager)
        info, expr = module.get_info(), MNN.expr
        return info['inputs'][0].shape[0], lambda x: {  # MNN says 1 for a dynamic batch
            name: np.array(expr.convert(o, expr.NCHW).read(), copy=True) for name, o in zip(
                info['outputNames'], module.forward([expr.const(x, list(x.shape), expr.NCHW,
                                                                expr.dtype.uint8)]))}
    if runtime == 'litert':
        from ai_edge_litert.interpreter import Interpreter
        runner = Interpreter(model_path=path).get_signature_runner('serving_default')
        (name, detail), = runner.get_input_details().items()
        return int(detail['shape'][0]), lambda x: {  # NHWC in
            k: np.array(v) for k, v in runner(**{name: x.transpose(0, 2, 3, 1)}).items()}
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    (graph_input, ) = session.get_inputs()
    names = [o.name for o in session.get_outputs()]
    return graph_input.shape[0], lambda x: dict(zip(names, session.run(None, {
        graph_input.name: x})))


class End2EndModel:
    """An end-to-end file on its runtime (:data:`SUFFIXES`): ``model(images)`` takes a
    (1, 3, H, W) uint8 batch and returns ``num_dets, boxes, scores, labels`` by name."""

    def __init__(self, path: str, runtime: Optional[str] = None) -> None:
        suffix = Path(path).suffix.lower()
        runtime = runtime or next((r for r, s in SUFFIXES.items() if suffix in s), None)
        if runtime is None or suffix not in SUFFIXES[runtime]:
            wanted = SUFFIXES[runtime] if runtime else dict.fromkeys(sum(SUFFIXES.values(), ()))
            raise InputError(f'MODEL: got {path!r}, expected an end-to-end {"/".join(wanted)} '
                             'file' + (f' for --runtime {runtime}' if runtime else '')
                             + ' (rfcr-export --end2end)')
        if not Path(path).is_file():
            raise InputError(f'MODEL: got {path!r}, which does not exist')
        meta = metadata(path)
        if meta.get(END2END_KEY) != '1':
            raise InputError(f'MODEL: got {path!r}, expected an end-to-end graph with rfcr '
                             f'metadata ({END2END_KEY}); export it with rfcr-export --end2end')
        try:
            self.classes = json.loads(meta['classes'])
            self.input_size = tuple(json.loads(meta['input_size']))
            self.letterbox_rule = meta['letterbox']
            self.pad_value = json.loads(meta['pad_value'])
            self.channel_order = meta['channel_order']
        except (KeyError, ValueError) as e:  # a file rfcr-export did not write
            raise InputError(f'MODEL: got {path!r}, whose rfcr metadata is not what '
                             f'rfcr-export --end2end writes ({type(e).__name__}: {e})') from None
        try:
            batch, self._run = _load(path, runtime)
        except ImportError:
            raise InputError(f'--runtime: got {runtime}, which is not installed') from None
        if isinstance(batch, int) and batch != 1:
            raise InputError(f'MODEL: got {path!r}, exported for batches of {batch}; expected '
                             'batch 1 or a dynamic batch')

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return self._run(images)

    def predict(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes (x1 y1 x2 y2 in ``image``'s pixels, clipped to it), scores and labels of
        one BGR image."""
        x, (sx, sy), (left, top) = letterbox(image, self.input_size, self.letterbox_rule,
                                             self.pad_value)
        if self.channel_order == 'rgb':
            x = x[..., ::-1]
        out = self(np.ascontiguousarray(x.transpose(2, 0, 1)[None]))
        n = int(out['num_dets'][0])
        boxes = (out['boxes'][0, :n] - [left, top, left, top]) / [sx, sy, sx, sy]
        h, w = image.shape[:2]
        boxes = np.clip(boxes, 0, [w, h, w, h])
        return boxes, out['scores'][0, :n], out['labels'][0, :n]


def _images(paths: Sequence[str]) -> list[Path]:
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InputError(f'IMAGE_OR_DIR: got {str(p)!r}, a directory without images '
                                 f'({", ".join(IMAGE_SUFFIXES)})')
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise InputError(f'IMAGE_OR_DIR: got {str(p)!r}, which does not exist')
    return files


def _read(path: Path) -> np.ndarray:
    image = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f'IMAGE_OR_DIR: got {str(path)!r}, expected an image OpenCV decodes')
    return image


def _coco_ids(ann_path: str, images: Sequence[Path], classes: Sequence[str]
              ) -> tuple[list[int], list[int]]:
    """Image ids of ``images`` (by file name) and category ids of ``classes`` (by name)
    in the COCO annotation file ``ann_path``."""
    try:
        ann = json.loads(Path(ann_path).read_text())
        by_name = {Path(i['file_name']).name: i['id'] for i in ann['images']}
        by_class = {c['name']: c['id'] for c in ann['categories']}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f'--coco-ann: got {ann_path!r}, expected a COCO annotation file '
                         f'with images and categories ({type(e).__name__}: {e})') from None
    missing = [p.name for p in images if p.name not in by_name]
    if missing:
        raise InputError(f'--coco-ann: {ann_path!r} has no image named {missing[0]!r}')
    absent = [c for c in classes if c not in by_class]
    if absent:
        raise InputError(f'--coco-ann: {ann_path!r} has no category named {absent[0]!r} '
                         '(a class of MODEL)')
    return [by_name[p.name] for p in images], [by_class[c] for c in classes]


def _draw(image: np.ndarray, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
          classes: Sequence[str]) -> np.ndarray:
    image = image.copy()
    for box, score, label in zip(boxes, scores, labels):
        color = tuple(int(c) for c in np.random.default_rng(int(label)).integers(64, 256, 3))
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(image, (x1, y1), (x2, y2), color, 2)
        cv2.putText(image, f'{classes[label]} {score:.2f}', (x1, max(y1 - 4, 10)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1, cv2.LINE_AA)
    return image


def _parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = _Parser(prog='rfcr-predict', description='Detect objects in images with an '
                     'end-to-end file (rfcr-export --end2end)')
    parser.add_argument('model', metavar='MODEL', help='the end-to-end file: .onnx, .xml '
                        '(OpenVINO), .mnn or .tflite (metadata in MODEL.json beside it)')
    parser.add_argument('images', metavar='IMAGE_OR_DIR', nargs='+',
                        help='images, or directories of images')
    parser.add_argument('--out-dir', default='predictions',
                        help='where the JSON files and drawn images go (default: predictions)')
    parser.add_argument('--score-thr', type=float, default=0.0,
                        help="drop detections scored below this, in [0, 1] (default 0: the "
                        "graph's own thresholds only)")
    parser.add_argument('--runtime', choices=SUFFIXES,
                        help="what runs the graph (default: MODEL's suffix says)")
    parser.add_argument('--coco-json', help='also write all detections as a COCO results list')
    parser.add_argument('--coco-ann', help='COCO annotations (e.g. instances_val.json) giving '
                        '--coco-json its image ids (by file name) and category ids (by name)')
    parser.add_argument('--debug', action='store_true',
                        help='on an error, show its traceback instead of one line')
    args = parser.parse_args(argv)
    if not 0 <= args.score_thr <= 1:
        raise InputError(f'--score-thr: got {args.score_thr:g}, expected a number in [0, 1]')
    if args.coco_ann and not args.coco_json:
        raise InputError('--coco-ann: given without --coco-json, which it is for')
    return args


def run(argv: Optional[Sequence[str]] = None) -> list[dict]:
    """Run ``rfcr-predict``; return the per-image results written. Raises
    :class:`InputError` for bad input, having written nothing."""
    args = _parse_args(argv)
    model = End2EndModel(args.model, args.runtime)
    images = _images(args.images)
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f'--out-dir: got {args.out_dir!r}, which is a file')
    for path in images:  # read them all once: fail before writing anything
        _read(path)
        if [p.stem for p in images].count(path.stem) > 1:
            raise InputError(f'IMAGE_OR_DIR: got two images named {path.stem!r}.*, whose '
                             f'results would share {path.stem}.json in --out-dir')
        if (out_dir / path.name).resolve() == path.resolve():
            raise InputError(f'--out-dir: got {args.out_dir!r}, which holds the image '
                             f'{str(path)!r} that its drawn copy would replace')
    image_ids, category_ids = list(range(len(images))), list(range(len(model.classes)))
    if args.coco_json:
        if args.coco_ann:
            image_ids, category_ids = _coco_ids(args.coco_ann, images, model.classes)
        if Path(args.coco_json).is_dir():
            raise InputError(f'--coco-json: got {args.coco_json!r}, which is a directory')

    out_dir.mkdir(parents=True, exist_ok=True)
    results, coco = [], []
    for path, image_id in zip(images, image_ids):
        image = _read(path)
        boxes, scores, labels = model.predict(image)
        keep = scores >= args.score_thr
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        result = dict(image=str(path), height=image.shape[0], width=image.shape[1],
                      boxes=boxes.round(3).tolist(), scores=scores.round(5).tolist(),
                      labels=labels.tolist(), classes=[model.classes[i] for i in labels])
        (out_dir / f'{path.stem}.json').write_text(json.dumps(result))
        cv2.imwrite(str(out_dir / path.name), _draw(image, boxes, scores, labels,
                                                     model.classes))
        coco += [dict(image_id=image_id, category_id=category_ids[label],
                      bbox=[round(float(v), 3) for v in (x1, y1, x2 - x1, y2 - y1)],
                      score=round(float(score), 5))
                 for (x1, y1, x2, y2), score, label in zip(boxes, scores, labels)]
        results.append(result)
        print(f'rfcr-predict: {path}: {len(scores)} detections')
    if args.coco_json:
        Path(args.coco_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.coco_json).write_text(json.dumps(coco))
    print(f'rfcr-predict: wrote {out_dir}' + (f' and {args.coco_json}' if args.coco_json
                                               else ''))
    return results


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``run``, its errors on one line (rfcr.utils.cli's rule, restated: this file imports no
    rfcr): bad input exit code 2, any other error (a runtime's) 1, ``--debug`` the traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        run(argv)
    except InputError as e:
        print(f'rfcr-predict: error: {e}', file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 (no traceback reaches a user)
        if '--debug' in argv:
            raise
        message = ' '.join(line.strip() for line in str(e).splitlines() if line.strip())
        print(f'rfcr-predict: error: {type(e).__name__}: {message} (--debug shows the '
              'traceback)', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
