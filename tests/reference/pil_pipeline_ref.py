"""The public pipeline's pre-processing, done by Pillow and PyTorch themselves: the inputs
(JPEGs written by PIL's encoder, PNGs) and what PIL makes of them.

Usage: pil_pipeline_ref.py <dir> <size>

Writes into <dir>:
  jpg-<name>.jpg   seeded pictures saved by PIL as JPEG: sizes (portrait, landscape, square,
                   odd, smaller and larger than <size>) x chroma subsampling 4:4:4, 4:2:2,
                   4:2:0 x quality, plus grey and progressive ones
  png-<name>.png   seeded pictures saved by PIL as PNG (RGB and grey), portrait among them
  <file>.rgb.bin   Image.open(file).convert("RGB").tobytes(): the decoded pixels
  <file>.input.bin the network input as torchvision builds it from that PIL image
                   (Resize((size, size)) = PIL BILINEAR, ToTensor, ImageNet Normalize):
                   float32, (3, size, size), C order
  manifest.json    [{"file", "width", "height", "what"}, ...]
"""
import json
import os
import sys

import numpy as np
import torch
from PIL import Image

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]

d, size = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(17)


def picture(w, h):
    """Gradients, a colour pattern and noise: detail in every channel, so that a different
    IDCT, chroma upsampling or colour conversion shows."""
    x = np.linspace(0, 1, w)[None, :]
    y = np.linspace(0, 1, h)[:, None]
    base = np.stack(
        [x * 255 + 0 * y, y * 255 + 0 * x, np.sin(x * 31) * np.cos(y * 23) * 127 + 128], axis=2
    )
    return (base + rng.normal(0, 25, (h, w, 3))).clip(0, 255).astype(np.uint8)


def network_input(im):
    # torchvision: Resize((s, s)) -> im.resize((s, s), BILINEAR); ToTensor; Normalize.
    a = np.asarray(im.resize((size, size), Image.BILINEAR))
    t = torch.from_numpy(a.copy()).permute(2, 0, 1).contiguous().to(torch.float32).div(255)
    return t.sub(torch.tensor(MEAN).view(3, 1, 1)).div(torch.tensor(STD).view(3, 1, 1))


manifest = []


def add(im, name, what, **save):
    path = os.path.join(d, name)
    im.save(path, **save)
    with Image.open(path) as f:
        rgb = f.convert("RGB")
    assert rgb.size == im.size
    open(path + ".rgb.bin", "wb").write(rgb.tobytes())
    open(path + ".input.bin", "wb").write(network_input(rgb).numpy().astype("<f4").tobytes())
    manifest.append({"file": name, "width": im.size[0], "height": im.size[1], "what": what})


sizes = [(333, 517), (640, 480), (17, 9), (1001, 999), (224, 224), (161, 600), (300, 300)]
for w, h in sizes:
    rgb = Image.fromarray(picture(w, h))
    for sub, sub_name in [(0, "444"), (1, "422"), (2, "420")]:
        for q in (75, 95):
            add(rgb, f"jpg-{w}x{h}-{sub_name}-q{q}.jpg", f"JPEG {sub_name} q{q}", quality=q, subsampling=sub)
    add(rgb.convert("L"), f"jpg-{w}x{h}-grey.jpg", "grey JPEG", quality=90)
    add(rgb, f"jpg-{w}x{h}-progressive.jpg", "progressive JPEG 4:2:0", quality=85, progressive=True)
for w, h in [(333, 517), (300, 500), (160, 600), (517, 333), (256, 256)]:
    rgb = Image.fromarray(picture(w, h))
    add(rgb, f"png-{w}x{h}.png", "PNG")
    add(rgb.convert("L"), f"png-{w}x{h}-grey.png", "grey PNG")
json.dump(manifest, open(os.path.join(d, "manifest.json"), "w"))
