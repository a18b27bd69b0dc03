"""An independent reference of the official RFCR semantics, in plain tensor ops.

Written from prakharg24/yoloret ``rfcr_module`` (Keras) without reusing rfcr's code:
resizes are explicit index gathers and -inf padded window maxima, convs and BN are the
functional ops, applied in eval mode with the module's own parameters.
"""
import torch
import torch.nn.functional as F


def nearest_up(x, size, factor=2):
    """out[i] = x[min(i // factor, n - 1)] along H and W."""
    h = torch.clamp(torch.arange(size[0]) // factor, max=x.shape[-2] - 1)
    w = torch.clamp(torch.arange(size[1]) // factor, max=x.shape[-1] - 1)
    return x[..., h, :][..., w]


def window_max(x, size, factor=2):
    """out[i] = max(x[i*factor : (i+1)*factor]), windows clipped to the map."""
    out = torch.empty(*x.shape[:-2], *size, dtype=x.dtype)
    for i in range(size[0]):
        for j in range(size[1]):
            win = x[..., i * factor:(i + 1) * factor, j * factor:(j + 1) * factor]
            out[..., i, j] = win.amax(dim=(-2, -1))
    return out


def conv_bn_relu6(x, sd, prefix, groups=1, padding=0):
    x = F.conv2d(x, sd[f'{prefix}.conv.weight'], None, padding=padding, groups=groups)
    x = F.batch_norm(x, sd[f'{prefix}.bn.running_mean'], sd[f'{prefix}.bn.running_var'],
                     sd[f'{prefix}.bn.weight'], sd[f'{prefix}.bn.bias'], False, 0.0, 1e-5)
    return x.clamp(0, 6)


def rfcr_reference(inputs, sd, shortcut=False):
    """RFCR forward in eval mode. ``sd``: the module's state dict."""
    x = list(inputs)
    size16 = x[-2].shape[-2:]
    convs = [sd[f'collect_convs.{i}.weight'] for i in range(len(x))]
    collected = []
    k = 0
    if shortcut:
        collected.append(F.conv2d(window_max(x[0], size16, 4), convs[0]))
        k = 1
    collected.append(window_max(F.conv2d(x[k], convs[k]), size16, 2))
    collected.append(F.conv2d(x[k + 1], convs[k + 1]))
    collected.append(nearest_up(F.conv2d(x[k + 2], convs[k + 2]), size16, 2))
    w = sd['fusion_weights']
    fused = sum(wi * ci for wi, ci in zip(w, collected))
    c = fused.shape[1]
    fused = conv_bn_relu6(fused, sd, 'fuse_conv.0', groups=c, padding=2)
    fused = conv_bn_relu6(fused, sd, 'fuse_conv.1')
    x8, x16, x32 = x[-3:]
    return (torch.cat([x8, nearest_up(fused, x8.shape[-2:])], 1),
            torch.cat([x16, fused], 1),
            torch.cat([x32, window_max(fused, x32.shape[-2:])], 1))
