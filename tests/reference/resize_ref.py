"""Pillow's resizes, as the public pipeline applies them (torchvision Resize on PIL images):
images with Image.BILINEAR (antialiased), masks with Image.NEAREST.

Usage: resize_ref.py <dir> <size>: for every <dir>/img-*.png writes <name>.bilinear.bin (RGB,
size x size, row-major, 8-bit) and for every <dir>/mask-*.png <name>.nearest.bin (8-bit).
"""
import glob
import os
import sys

from PIL import Image

d, size = sys.argv[1], int(sys.argv[2])
for p in sorted(glob.glob(os.path.join(d, "img-*.png"))):
    out = Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR)
    open(p[:-4] + ".bilinear.bin", "wb").write(out.tobytes())
for p in sorted(glob.glob(os.path.join(d, "mask-*.png"))):
    out = Image.open(p).convert("L").resize((size, size), Image.NEAREST)
    open(p[:-4] + ".nearest.bin", "wb").write(out.tobytes())
