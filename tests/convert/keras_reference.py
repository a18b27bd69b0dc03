"""Keras references for the converter tests, made by Keras itself: tf.keras (Keras 2,
``TF_USE_LEGACY_KERAS=1``, the official code's Keras) models with random weights and random
BN statistics, saved as HDF5, with their outputs on fixed inputs.

Run in a subprocess by tests/convert/conftest.py (``python -m tests.convert.keras_reference
OUT_DIR``): TensorFlow never enters the pytest process. There it would clash with torch:
TensorFlow and triton (imported by ``torch._dynamo``) each load their own LLVM, and
importing triton after TensorFlow crashes the process.

:func:`yoloret_body` re-states the official ``yolov3_body`` (prakharg24/yoloret
``code/yolo3/model.py``) layer for layer, weightless layers included, so that Keras lists its
layers in the same graph order as the authors' files: on Keras applications' MobileNetV2, or
on the authors' EfficientNet-B3 (``code/yolo3/efficientnet.py``, re-stated by
:func:`efficientnet_b3`; its layers are auto-named, ``add_2`` ... as in the official session).

Files written to OUT_DIR:

- ``mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_224_no_top.h5`` for alpha 0.75,
  1.0, 1.4 and ``..._1.0_224.h5`` (with the classifier), as Keras applications name them;
  ``mobilenet_v2.npz``: inputs ``x{size}`` and outputs ``{alpha}_{size}_{layer}``;
- ``yoloret_weights.h5`` (``save_weights``) and ``yoloret_model.h5`` (``save``) of YOLO-ReT-
  M0.75 VOC; ``yoloret.npz``: inputs ``x{size}``, maps ``y{size}_{i}`` (strides 32, 16, 8),
  ``params`` (BN statistics excluded), and for ``image{k}.png`` the official letterboxed
  input ``input{k}`` and its maps ``image{k}_y{i}``;
- ``yoloret_eb3_weights.h5`` (``save_weights``) of YOLO-ReT-EB3 COCO; ``yoloret_eb3.npz``:
  inputs ``x{size}``, maps ``y{size}_{i}``, the backbone's official taps
  ``{size}_{add_2,add_4,add_12,add_17}`` (strides 4, 8, 16, 32) and ``params``;
- ``other.h5``: a network that is not MobileNetV2.
"""
import os
import sys

import numpy as np

tf = None  # imported by main(), after TF_USE_LEGACY_KERAS is set

# MobileNetV2 taps of the official graph, strides 4, 8, 16, 32.
TAPS = ('block_2_add', 'block_5_add', 'block_12_add', 'block_15_add')
ALPHAS = (0.75, 1.0, 1.4)
MOBILENET_SIZES = (224, 320)
YOLORET_SIZES = (320, 416)
IMAGE_SHAPES = ((190, 251), (300, 170), (320, 320))  # letterboxed by the official code
# EfficientNet-B3 taps of the official graph (strides 4, 8, 16, 32) and YOLO-ReT-EB3 sizes.
EB3_TAPS = ('add_2', 'add_4', 'add_12', 'add_17')
EB3_SIZES = (224, 416)
# The authors' EfficientNet stages (efficientnet() block strings: kernel, repeats, input and
# output filters, expand ratio, stride; squeeze-excite 0.25 everywhere) and B3's scaling.
EFFICIENTNET_STAGES = ((3, 1, 32, 16, 1, 1), (3, 2, 16, 24, 6, 2), (5, 2, 24, 40, 6, 2),
                       (3, 3, 40, 80, 6, 2), (5, 3, 80, 112, 6, 1), (5, 4, 112, 192, 6, 2),
                       (3, 1, 192, 320, 6, 1))
B3_WIDTH, B3_DEPTH = 1.2, 1.4


def mobilenet_v2_file(alpha: float, include_top: bool = False) -> str:
    return (f'mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_224'
            f'{"" if include_top else "_no_top"}.h5')


def inputs(size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (2, size, size, 3)).astype(np.float32)


def assert_close_to_max(ours, theirs, rel: float = 1e-4, what: str = '') -> None:
    """|ours - theirs| <= rel x max |theirs|, everywhere."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape, (what, ours.shape, theirs.shape)
    scale = float(np.abs(theirs).max())
    err = float(np.abs(ours - theirs).max())
    assert scale > 0 and err <= rel * scale, f'{what}: max error {err:.3g} > {rel} x {scale:.3g}'


def randomize(model, seed: int) -> None:
    """Random kernels, biases, BN affine parameters and statistics, fusion weights."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            c = weights[0].shape
            weights = [rng.uniform(0.5, 1.5, c), rng.uniform(-0.2, 0.2, c),
                       rng.uniform(-0.5, 0.5, c), rng.uniform(0.5, 2.0, c)]
        elif layer.name.startswith('weighted_sum'):
            # Strides 32, 16, 8, 4; a negative one where RFCR max-pools after the conv.
            weights = [np.array([1.5, 0.75, -0.5, 1.25])]
        elif isinstance(layer, tf.keras.layers.DepthwiseConv2D):  # fan-in: the kernel's area
            weights = [rng.normal(0, np.sqrt(2 / np.prod(w.shape[:2])), w.shape)
                       for w in weights]
        else:
            weights = [rng.normal(0, np.sqrt(2 / max(1, np.prod(w.shape[:-1]))), w.shape)
                       for w in weights]
        layer.set_weights([w.astype(np.float32) for w in weights])


def calibrate_bn(model, seed: int) -> None:
    """BN statistics near the ones the network meets, then randomized: set every BN's
    statistics from one training-mode pass on random images, then shift the means by up to
    0.2 standard deviations and scale the variances by 0.7 to 1.4. A deep residual network
    with statistics unrelated to its activations (:func:`randomize` alone) grows them
    through depth to where float32 rounding alone exceeds 1e-4 of the largest value;
    trained networks, and these, stay well scaled."""
    rng = np.random.default_rng(seed)
    bns = [layer for layer in model.layers
           if isinstance(layer, tf.keras.layers.BatchNormalization)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 0.0  # moving statistics := this batch's
    model(rng.uniform(0, 1, (4, 128, 128, 3)).astype(np.float32), training=True)
    for bn, momentum in zip(bns, momenta):
        bn.momentum = momentum
        gamma, beta, mean, var = bn.get_weights()
        mean = mean + rng.uniform(-0.2, 0.2, mean.shape) * np.sqrt(var)
        var = var * rng.uniform(0.7, 1.4, var.shape)
        bn.set_weights([gamma, beta, mean.astype(np.float32), var.astype(np.float32)])


def mobilenet_v2(alpha: float, include_top: bool = False):
    """Keras applications' MobileNetV2 (random weights) and a model of its taps and output."""
    shape = (224, 224, 3) if include_top else (None, None, 3)
    model = tf.keras.applications.MobileNetV2(input_shape=shape, alpha=alpha,
                                              include_top=include_top, weights=None)
    randomize(model, seed=int(alpha * 100) + include_top)
    names = TAPS + (() if include_top else ('out_relu', ))
    return model, tf.keras.Model(model.inputs, [model.get_layer(n).output for n in names]), names


def _layers():
    layers = tf.keras.layers

    class WeightedSum(layers.Layer):
        """RFCR's fusion: four learned scalars ``alpha`` weighing the collected maps."""

        def build(self, input_shape):
            self.alpha = self.add_weight(name='alpha', shape=(4, ), initializer='ones',
                                         dtype='float32', trainable=True)
            super().build(input_shape)

        def call(self, inputs):
            return (self.alpha[0] * inputs[0] + self.alpha[1] * inputs[1]
                    + self.alpha[2] * inputs[2] + self.alpha[3] * inputs[3])

        def compute_output_shape(self, input_shape):
            return input_shape[0]

    class Swish(layers.Layer):
        def call(self, x):
            return x * tf.sigmoid(x)

    class Mean(layers.Layer):
        def call(self, x):
            return tf.reduce_mean(x, axis=[1, 2], keepdims=True)

    return layers, WeightedSum, Swish, Mean


def efficientnet_b3(image):
    """The authors' EfficientNet-B3 (``EfficientNet`` of code/yolo3/efficientnet.py, random
    weights) up to stage 6, the last the official YOLO-ReT uses: "same" padding everywhere,
    BN eps 1e-3, Swish, MBConv blocks with squeeze-excite (a quarter of the block's input
    filters) and a skip where stride is 1 and the widths agree (its drop-connect is the
    identity at inference and left out). Returns the output of every skip ``Add``, by name."""
    layers, _, Swish, Mean = _layers()

    def round_filters(filters):
        filters *= B3_WIDTH
        rounded = max(8, int(filters + 4) // 8 * 8)
        return int(rounded + 8 if rounded < 0.9 * filters else rounded)

    def bn(x):
        return layers.BatchNormalization(momentum=0.99, epsilon=1e-3)(x)

    def mbconv(x, kernel, in_filters, out_filters, expand, stride):
        filters = in_filters * expand
        y = x
        if expand != 1:
            y = Swish()(bn(layers.Conv2D(filters, 1, padding='same', use_bias=False)(y)))
        y = layers.DepthwiseConv2D(kernel, strides=stride, padding='same', use_bias=False)(y)
        y = Swish()(bn(y))
        s = Mean()(y)
        s = Swish()(layers.Conv2D(max(1, int(in_filters * 0.25)), 1, padding='same',
                                  use_bias=True)(s))
        s = layers.Activation('sigmoid')(layers.Conv2D(filters, 1, padding='same',
                                                       use_bias=True)(s))
        y = layers.Multiply()([s, y])
        y = bn(layers.Conv2D(out_filters, 1, padding='same', use_bias=False)(y))
        if stride == 1 and in_filters == out_filters:
            add = layers.Add()
            y = add([y, x])
            adds[add.name] = y
        return y

    x = layers.Conv2D(round_filters(32), 3, strides=2, padding='same', use_bias=False)(image)
    x = Swish()(bn(x))
    adds = {}
    for kernel, repeats, in_filters, out_filters, expand, stride in EFFICIENTNET_STAGES[:6]:
        in_filters, out_filters = round_filters(in_filters), round_filters(out_filters)
        for i in range(int(np.ceil(B3_DEPTH * repeats))):
            x = mbconv(x, kernel, in_filters if i == 0 else out_filters, out_filters, expand,
                       stride if i == 0 else 1)
    return adds


def yoloret_body(backbone: str, num_classes: int, alpha: float = 0.75, num_anchors: int = 3):
    """The official YOLO-ReT graph (random weights), dynamic input size, on Keras'
    MobileNetV2 at ``alpha`` (``backbone='mobilenetv2'``) or the authors' EfficientNet-B3
    (``'efficientnetb3'``); outputs ``(N, H, W, anchors, 5 + classes)`` at strides 32, 16, 8."""
    layers, WeightedSum, Swish, Mean = _layers()
    pred = num_anchors * (num_classes + 5)

    def bn_momentum(momentum):
        return layers.BatchNormalization(momentum=momentum)  # epsilon: Keras' 1e-3

    def node(x, width):
        """1x1 conv - BN - ReLU6, then an MBConv block (expand ratio 1, squeeze-excite 0.25,
        Swish) projecting to the prediction size; its input and output widths differ, so
        it has no skip."""
        x = layers.Conv2D(width, 1, padding='same', use_bias=False)(x)
        x = bn_momentum(0.9)(x)
        x = layers.ReLU(6.)(x)
        y = layers.DepthwiseConv2D(3, padding='same', use_bias=False)(x)
        y = bn_momentum(0.9)(y)
        y = Swish()(y)
        s = Mean()(y)
        s = layers.Conv2D(max(1, int(width * 0.25)), 1, padding='same', use_bias=True)(s)
        s = Swish()(s)
        s = layers.Conv2D(width, 1, padding='same', use_bias=True)(s)
        s = layers.Activation('sigmoid')(s)
        y = layers.Multiply()([s, y])
        y = layers.Conv2D(pred, 1, padding='same', use_bias=False)(y)
        return bn_momentum(0.9)(y)

    def conv_bn_relu6(x, width, name=None):
        x = layers.Conv2D(width, 1, padding='same', use_bias=False,
                          name=f'{name}_conv' if name else None)(x)
        x = layers.BatchNormalization(momentum=0.9, name=f'{name}_BN' if name else None)(x)
        return layers.ReLU(6., name=f'{name}_relu6' if name else None)(x)

    image = layers.Input(shape=(None, None, 3))
    if backbone == 'mobilenetv2':
        net = tf.keras.applications.MobileNetV2(alpha=alpha, input_tensor=image,
                                                include_top=False, weights=None)
        c32, c16, c8, c4 = (net.get_layer(n).output for n in TAPS[::-1])
    else:  # the official session builds the backbone first: its adds are add, add_1, ...
        adds = efficientnet_b3(image)
        c32, c16, c8, c4 = (adds[n] for n in EB3_TAPS[::-1])
    c4 = layers.MaxPooling2D((4, 4))(c4)

    # RFCR: collect (1x1 convs made for strides 32, 16, 8, 4), weighted sum at stride 16,
    # separable 5x5 conv, redistribute.
    k32, k16, k8, k4 = (layers.Conv2D(48, 1, padding='same', use_bias=False)(c)
                        for c in (c32, c16, c8, c4))
    fused = WeightedSum()([layers.UpSampling2D()(k32), k16, layers.MaxPooling2D((2, 2))(k8), k4])
    fused = layers.DepthwiseConv2D((5, 5), padding='same', use_bias=False)(fused)
    fused = layers.BatchNormalization()(fused)
    fused = layers.ReLU(6.)(fused)
    fused = layers.Conv2D(96, 1, padding='same', use_bias=False)(fused)
    fused = layers.BatchNormalization()(fused)
    fused = layers.ReLU(6.)(fused)
    r32 = layers.Concatenate()([c32, layers.MaxPooling2D((2, 2))(fused)])
    r16 = layers.Concatenate()([c16, fused])
    r8 = layers.Concatenate()([c8, layers.UpSampling2D()(fused)])

    # FPN top-down.
    t32 = node(r32, 512)
    x = conv_bn_relu6(t32, 256, 'block_20')
    t16 = node(layers.Concatenate()([layers.UpSampling2D()(x), r16]), 256)
    x = conv_bn_relu6(t16, 128, 'block_24')
    t8 = node(layers.Concatenate()([layers.UpSampling2D()(x), r8]), 128)
    # PAN bottom-up, each node followed by its bias-free prediction conv.
    b8 = node(t8, 128)
    p8 = layers.Conv2D(pred, 1, padding='same', use_bias=False)(b8)
    x = layers.MaxPooling2D((2, 2))(conv_bn_relu6(b8, 128))
    b16 = node(layers.Concatenate()([x, t16]), 256)
    p16 = layers.Conv2D(pred, 1, padding='same', use_bias=False)(b16)
    x = layers.MaxPooling2D((2, 2))(conv_bn_relu6(b16, 256))
    b32 = node(layers.Concatenate()([x, t32]), 512)
    p32 = layers.Conv2D(pred, 1, padding='same', use_bias=False)(b32)

    def per_anchor(p, name):
        return layers.Lambda(lambda y: tf.reshape(y, [tf.shape(y)[0], tf.shape(y)[1],
                                                      tf.shape(y)[2], num_anchors,
                                                      num_classes + 5]), name=name)(p)

    model = tf.keras.Model(image, [per_anchor(p32, 'y1'), per_anchor(p16, 'y2'),
                                   per_anchor(p8, 'y3')])
    randomize(model, seed=7)
    if backbone != 'mobilenetv2':  # 24 residual blocks deep: see calibrate_bn
        calibrate_bn(model, seed=8)
    return model


def official_letterbox(path: str, size: int) -> np.ndarray:
    """code/yolo.py's input: decode to RGB in [0, 1], letterbox (truncated size, bilinear
    resize, the image centred, zero padding)."""
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, dtype=tf.float32)
    ih, iw = image.shape[:2]
    ratio = min(size / iw, size / ih)
    nh, nw = int(ih * ratio), int(iw * ratio)
    resized = tf.image.resize(image, [nh, nw])
    return tf.image.pad_to_bounding_box(resized, (size - nh) // 2, (size - nw) // 2, size,
                                        size)[None].numpy()


def main(out: str) -> None:
    global tf
    os.environ['TF_USE_LEGACY_KERAS'] = '1'
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    import tensorflow
    tf = tensorflow
    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras = tf.keras.layers.Layer.__module__
    assert keras.startswith('tf_keras'), f'tf.keras is {keras}, not Keras 2 (tf-keras)'
    os.makedirs(out, exist_ok=True)

    refs = {f'x{size}': inputs(size, size) for size in MOBILENET_SIZES}
    for alpha in ALPHAS:
        model, outputs, names = mobilenet_v2(alpha)
        model.save_weights(os.path.join(out, mobilenet_v2_file(alpha)))
        for size in MOBILENET_SIZES:
            for name, y in zip(names, outputs(refs[f'x{size}'])):
                refs[f'{alpha}_{size}_{name}'] = y.numpy()
    model, outputs, names = mobilenet_v2(1.0, include_top=True)
    model.save_weights(os.path.join(out, mobilenet_v2_file(1.0, include_top=True)))
    for name, y in zip(names, outputs(refs['x224'])):
        refs[f'top_224_{name}'] = y.numpy()
    np.savez(os.path.join(out, 'mobilenet_v2.npz'), **refs)

    model = yoloret_body('mobilenetv2', num_classes=20)
    model.save_weights(os.path.join(out, 'yoloret_weights.h5'))
    model.save(os.path.join(out, 'yoloret_model.h5'), save_format='h5')
    refs = dict(params=sum(int(np.prod(w.shape)) for w in model.weights
                           if 'moving_' not in w.name))
    for size in YOLORET_SIZES:
        refs[f'x{size}'] = inputs(size, size)
        for i, y in enumerate(model(refs[f'x{size}'])):
            refs[f'y{size}_{i}'] = y.numpy()
    rng = np.random.default_rng(0)
    for k, shape in enumerate(IMAGE_SHAPES):
        path = os.path.join(out, f'image{k}.png')  # lossless: every decoder reads these pixels
        tf.io.write_file(path, tf.io.encode_png(rng.integers(0, 256, shape + (3, ), np.uint8)))
        refs[f'input{k}'] = official_letterbox(path, 320)
        for i, y in enumerate(model(refs[f'input{k}'])):
            refs[f'image{k}_y{i}'] = y.numpy()
    np.savez(os.path.join(out, 'yoloret.npz'), **refs)

    tf.keras.backend.clear_session()  # Keras' auto-names start afresh, as in the official run
    model = yoloret_body('efficientnetb3', num_classes=80)
    model.save_weights(os.path.join(out, 'yoloret_eb3_weights.h5'))
    # One pass gives the maps and the taps.
    both = tf.keras.Model(model.inputs, model.outputs + [model.get_layer(n).output
                                                         for n in EB3_TAPS])
    refs = dict(params=sum(int(np.prod(w.shape)) for w in model.weights
                           if 'moving_' not in w.name))
    for size in EB3_SIZES:
        refs[f'x{size}'] = inputs(size, size + 1)
        outs = [y.numpy() for y in both(refs[f'x{size}'])]
        refs.update({f'y{size}_{i}': y for i, y in enumerate(outs[:3])})
        refs.update({f'{size}_{name}': y for name, y in zip(EB3_TAPS, outs[3:])})
    np.savez(os.path.join(out, 'yoloret_eb3.npz'), **refs)

    other = tf.keras.Sequential([tf.keras.layers.Input((8, 8, 3)), tf.keras.layers.Conv2D(4, 3)])
    other.save_weights(os.path.join(out, 'other.h5'))


if __name__ == '__main__':
    main(sys.argv[1])
