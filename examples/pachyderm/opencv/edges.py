"""Pachyderm's opencv edge detection, written for tusk to the same command line
(``python3 /edges.py``): each image under /pfs/images gets its edges (Canny) as a grayscale
PNG in /pfs/out, of the same size, named after it (``<name>.png``)."""

import sys
from pathlib import Path

import cv2

IMAGES = Path("/pfs/images")
OUT = Path("/pfs/out")

for source in sorted(p for p in IMAGES.rglob("*") if p.is_file()):
    image = cv2.imread(str(source))
    if image is None:
        sys.exit(f"{source}: not an image OpenCV can read")
    edges = cv2.Canny(image, 100, 200)
    target = OUT / source.relative_to(IMAGES).with_suffix(".png")
    target.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(target), edges):
        sys.exit(f"{target}: cannot write the edges")
    print(f"{source.name}: {image.shape[1]}x{image.shape[0]}, edges in {target.name}")
