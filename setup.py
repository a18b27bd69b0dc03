"""Install rfcr: ``pip install -e '.[dev]'`` (``make setup`` does this inside .venv)."""
from pathlib import Path

from setuptools import find_packages, setup

version = {}
exec(Path(__file__).with_name('rfcr').joinpath('version.py').read_text(), version)
DEPLOY = ['onnx>=1.16', 'onnxruntime>=1.18', 'onnxscript>=0.2', 'openvino>=2026.4,<2027',
          'nncf>=3.4,<3.5', 'onnxslim>=0.1.98',
          # ncnn (pnnx converts the ONNX graph) and MNN: rfcr.deploy.edge
          'pnnx>=20261020', 'ncnn>=1.0.20261020', 'MNN>=3.6,<3.7',
          # LiteRT: onnx2tf (1.28.8: the last release for Python 3.11 that pins nothing) and
          # TensorFlow's converter, run by the LiteRT interpreter: rfcr.deploy.litert
          'onnx2tf==1.28.8', 'onnx-graphsurgeon>=0.6', 'sng4onnx>=2.0', 'psutil',
          'tensorflow-cpu==2.21.*', 'tf-keras==2.21.*', 'ai-edge-litert>=2.3,<2.4']

setup(
    name='rfcr',
    version=version['__version__'],
    description='YOLO-ReT backbone truncation and the RFCR neck for MMDetection',
    long_description=Path(__file__).with_name('README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.10',
    packages=find_packages(include=['rfcr', 'rfcr.*']),
    # rfcr-predict: outside the package, whose import loads torch and mmdet
    py_modules=['rfcr_predict'],
    include_package_data=True,
    install_requires=[
        'torch>=2.5',  # torch.serialization.safe_globals (rfcr.utils.checkpoint)
        'torchvision',
        'mmengine>=0.10.0,<1.0',
        'mmcv>=2.0.0rc4,<2.2.0',
        'mmdet>=3.3.0,<3.4.0',
        'numpy',
        'opencv-python',  # the synthetic dataset (mmcv's own dependency too)
        'tqdm',  # rfcr-bench's progress bar
        'matplotlib',  # rfcr-bench's plot
        'h5py',  # rfcr-convert reads Keras HDF5 weights (no TensorFlow)
    ],
    extras_require={
        # ONNX export and ONNX Runtime; OpenVINO (IR, CPU plugin) and NNCF (its INT8
        # post-training quantization); versions these were tested with.
        'deploy': DEPLOY,
        'dev': ['pytest>=8', 'pytest-xdist', 'hypothesis>=6'] + DEPLOY + [
            # timm for its MobileNetV2 layout (TensorFlow, in DEPLOY, builds the Keras
            # references of the converter tests)
            'timm'],
    },
    entry_points={
        'console_scripts': [
            'rfcr-train = rfcr.tools.train:main',
            'rfcr-test = rfcr.tools.test:main',
            'rfcr-make-data = rfcr.datasets.synthetic:main',
            'rfcr-bench = rfcr.tools.bench:main',
            'rfcr-summary = rfcr.tools.summary:main',
            'rfcr-export = rfcr.tools.export:main',
            'rfcr-predict = rfcr_predict:main',
            'rfcr-convert = rfcr.tools.convert:main',
            'rfcr-quantize = rfcr.tools.quantize:main',
        ],
    },
    classifiers=[
        'Programming Language :: Python :: 3',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
)
