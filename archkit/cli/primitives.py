"""archkit primitives: the notes' convolution primitives, numpy against onnxruntime, and their figures."""

from __future__ import annotations

import argparse

from archkit.cli.common import writable
from archkit.course import primitives as pm
from archkit.errors import ParityError
from archkit.io import atomic_write_bytes


def run(args: argparse.Namespace) -> int:
    if args.out is not None:
        writable(args.out)
    print("conv0 (sigmoid of the summed elementwise products), the notes' Out[11]-[15]:")
    values = pm.conv0_examples()
    for key, value in values.items():
        want = pm.NOTES_CONV0[key]
        print(f"  {key:<32} {value!r:<20} {'= the notes' if value == want else f'!= the notes {want!r}'}")
    photo = pm.load_photo()
    results = pm.checks(photo)
    print("numpy vs onnxruntime (one ONNX graph each):")
    width = max(len(c.name) for c in results)
    shapes = [f"{'x'.join(map(str, c.input_shape[1:]))} -> {'x'.join(map(str, c.output_shape[1:]))}" for c in results]
    for c, shape in zip(results, shapes):
        agree = "identical" if c.exact else f"max |diff| {c.max_abs_diff:.2g} (float32 rounding <= {c.tolerance:.2g})"
        print(f"  {c.name:<{width}}  {shape:<{max(map(len, shapes))}}  {'+'.join(c.onnx_ops):<8} {agree}  "
              f"{'ok' if c.ok else 'FAIL'}")
    if args.out is not None:
        figures = pm.figures(results, photo)
        for fname, blob in figures.items():
            atomic_write_bytes(args.out / fname, blob)
        print(f"-> {args.out}/ ({len(figures)} figures)")
    bad = [c.name for c in results if not c.ok] + [k for k, v in values.items() if v != pm.NOTES_CONV0[k]]
    if bad:
        raise ParityError(f"primitives differ between numpy and onnxruntime, or from the notes: {', '.join(bad)}")
    return 0
