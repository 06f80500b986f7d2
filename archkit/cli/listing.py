"""archkit list: the registered architectures (a module named `list` would shadow the builtin in the package)."""

from __future__ import annotations

import argparse

import architectures


def run(args: argparse.Namespace) -> int:
    rows = [(a.name, a.family, a.description) for a in architectures.all_architectures()]
    width = max(len(r[0]) for r in rows)
    fam = max(len(r[1]) for r in rows)
    for name, family, desc in rows:
        print(f"{name:<{width}}  {family:<{fam}}  {desc}")
    return 0
