"""The TensorFlow half of :func:`rfcr.deploy.litert.onnx_to_litert`, run as a script in a
process of its own: TensorFlow imported into a process that has run torch's inductor
(``torch.compile``) crashed it (SIGSEGV), so rfcr never imports TensorFlow itself.

    python litert_convert.py FOLDER

reads ``FOLDER/model.onnx`` (sizes already folded by onnxslim), ``FOLDER/names.json``
(``{"inputs": [...], "outputs": [...]}``) and, for INT8, ``FOLDER/calib.npy`` (the
calibration batches, ``(N, B, C, H, W)`` float32), and writes ``FOLDER/model.tflite``. On
failure it prints one line and exits 1. It imports numpy, onnx2tf and TensorFlow only.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys

# onnx2tf runs a 3-channel image model on this file of sample images (any values do), and
# downloads it from GitHub unless it lies in the working directory.
ONNX2TF_SAMPLES = 'calibration_image_sample_data_20x128x128x3_float32.npy'


def convert(folder: str) -> None:
    import numpy as np
    import onnx2tf
    import tensorflow as tf

    with open(os.path.join(folder, 'names.json')) as f:
        names = json.load(f)
    calib = os.path.join(folder, 'calib.npy')
    batches = np.load(calib) if os.path.exists(calib) else None
    np.save(os.path.join(folder, ONNX2TF_SAMPLES),
            np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32))
    try:
        with contextlib.chdir(folder):
            # The Keras model alone: saving it as a SavedModel takes most of the time.
            model = onnx2tf.convert(input_onnx_file_path='model.onnx', output_folder_path='.',
                                    not_use_onnxsim=True, disable_model_save=True,
                                    non_verbose=True)
    except (Exception, SystemExit) as e:  # onnx2tf calls sys.exit on some failures
        raise SystemExit(f'onnx2tf could not convert the graph: {type(e).__name__}: {e}')

    # The file's signature: the graph's input and output names.
    @tf.function(input_signature=[tf.TensorSpec(x.shape, x.dtype, name=name)
                                  for x, name in zip(model.inputs, names['inputs'])])
    def serve(*inputs):
        outputs = model(list(inputs))
        return dict(zip(names['outputs'],
                        outputs if len(names['outputs']) > 1 else [outputs]))

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [serve.get_concrete_function()], model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if batches is not None:  # NCHW -> the model's NHWC
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (
            [np.ascontiguousarray(b.transpose(0, 2, 3, 1))] for b in batches)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    try:
        flatbuffer = converter.convert()
    except Exception as e:
        raise SystemExit(f"LiteRT's converter could not convert the TensorFlow model: {e}")
    with open(os.path.join(folder, 'model.tflite'), 'wb') as f:
        f.write(flatbuffer)


if __name__ == '__main__':
    convert(sys.argv[1])
