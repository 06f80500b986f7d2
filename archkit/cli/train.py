"""archkit train: the notes' MNIST CNN trained, exported, and checked in onnxruntime; its kernels
and a test image's nearest neighbours drawn."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from archkit.cli.common import writable
from archkit.course import train as tr
from archkit.errors import OutputError, UsageError
from archkit.io import atomic_write_bytes


def run(args: argparse.Namespace) -> int:
    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs {args.epochs}: must be at least 1")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise OutputError(f"--out {args.out}: is a file")
    data = tr.load_dataset(args.data)  # a missing MNIST cache or bad .npz fails before TensorFlow loads
    epochs = args.epochs if args.epochs is not None else tr.default_epochs(data.name, early_stopping=args.early_stopping)
    out = args.out or Path("runs") / f"{args.name}-{data.name}"
    writable(out)
    n_val = int(len(data.x_train) * tr.VALIDATION_SPLIT) if args.early_stopping else 0
    print(f"training {args.name} on {data.name}: {len(data.x_train) - n_val:,} train"
          + (f" + {n_val:,} validation" if n_val else "") + f", {len(data.x_test):,} test images; "
          f"up to {epochs} epochs of batch {tr.BATCH_SIZE}" + (", early stopping" if args.early_stopping else ""), flush=True)
    trained = tr.train(args.name, data, epochs=epochs, early_stopping=args.early_stopping, seed=args.seed, query=args.query,
                   verbose=1 if sys.stdout.isatty() else 2)
    r = trained.result
    files = {"model.keras": trained.keras_bytes(), "model.onnx": trained.onnx_model.SerializeToString(),
             "metrics.json": r.to_json().encode(), **trained.figures()}
    for fname, blob in files.items():
        atomic_write_bytes(out / fname, blob)
    print(f"{r.epochs_run} epochs in {r.train_seconds:.1f} s")
    print(f"test accuracy: Keras {r.keras_accuracy:.4f}, onnxruntime {r.onnx_accuracy:.4f} "
          f"({r.n_test - r.prediction_disagreements:,}/{r.n_test:,} predictions identical; "
          f"max |probability difference| {r.max_abs_prob_diff:.2g})")
    print(f"nearest neighbours of test image {r.query} (label {r.query_label}) by FC1: "
          + ", ".join(f"#{i} (label {l})" for i, l in zip(r.neighbours, r.neighbour_labels)))
    print(f"-> {out}/ ({', '.join(files)})")
    r.raise_for_disagreement()
    return 0
