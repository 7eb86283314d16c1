"""`bmg fewshot make-synthetic`: procedurally generated, class-structured images in a MiniImagenet
layout (`bmg.fewshot.synthetic`), for tests and demos."""

from __future__ import annotations

import argparse
import sys


def command(argv: list[str]) -> None:
    from bmg.fewshot.synthetic import check_args, make_synthetic
    from bmg.train import rundir

    parser = argparse.ArgumentParser(
        prog="bmg fewshot make-synthetic",
        description="Write procedurally generated, class-structured images in a MiniImagenet "
        "layout (csv + images/, or the pkl caches), for tests and demos.",
    )
    parser.add_argument("--out", required=True, help="new dataset directory")
    parser.add_argument("--format", required=True, choices=("csv", "pkl"))
    parser.add_argument("--classes", type=int, default=10, help="classes per split (default 10)")
    parser.add_argument("--per-class", type=int, default=40, help="images per class (default 40)")
    parser.add_argument("--size", type=int, default=16, help="image side in pixels (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="the images' seed (default 0)")
    args = parser.parse_args(argv)
    try:  # every argument checked before the directory is made: a refusal leaves nothing
        check_args(args.out, args.format, args.classes, args.per_class, args.size)
        out = rundir.make_output_dir(args.out)
        out = make_synthetic(
            out,
            format=args.format,
            classes=args.classes,
            per_class=args.per_class,
            size=args.size,
            seed=args.seed,
        )
    except ValueError as error:
        sys.exit(f"bmg fewshot make-synthetic: error: {error}")
    print(f"wrote {out}")
