"""``cantor convert-contentvec FAIRSEQ_PT OUT_DIR``: turn fairseq's ContentVec checkpoint
(checkpoint_best_legacy_500.pt) into a transformers HubertModel folder plus final_proj.safetensors,
without fairseq. Point preprocess.contentvec_path at OUT_DIR (the .pt itself also works: it is then
converted in memory at every load)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("fairseq_pt", metavar="FAIRSEQ_PT", help="fairseq ContentVec / HuBERT-base .pt")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder to write, e.g. pretrained/contentvec/hf")


def run(args: argparse.Namespace) -> int:
    from processors.content.convert_contentvec import convert_contentvec

    try:
        convert_contentvec(Path(args.fairseq_pt), Path(args.out_dir))
    except (FileNotFoundError, ValueError) as e:
        print(f"convert-contentvec: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out_dir} from {args.fairseq_pt}")
    return 0
