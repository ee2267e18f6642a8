#!/usr/bin/env python3
"""Converts torch.save'd weights to the safetensors files `ras` reads.

Run it with the reference environment (`make setup-python`):

    .venv-ref/bin/python tools/convert_weights.py SRC DST [--part auto|backbone|model] [--strict]
                                                  [--backbone-out DST2]

SRC is either
  * an efficientnet_pytorch state_dict (efficientnet-b4-6ed6700e.pth): DST is then a
    `backbone.weights` file (names unchanged: `_conv_stem.weight`, `_blocks.0...`), or
  * a checkpoint of the public RAS/UniAD code (ckpt_best.pth.tar): a dict with
    'state_dict' (or the state_dict itself) whose names may carry the prefixes 'module.'
    (DistributedDataParallel), 'reconstruction.' (the RAS model) and 'backbone.' / 'neck.'.
    With --part model, DST holds the reconstruction model's tensors named as ras names
    them (`input_proj.weight`, `transformer.decoder.forward_layers.0.adaptive_gate.weight`,
    ...), loadable with ras::run::load_model_weights (which refuses any mismatch, listing it).
    With --part backbone, DST holds the backbone's tensors ('module.backbone.*', without the
    prefixes): a `backbone.weights` file of the backbone the checkpoint was trained with.
--part auto (default) picks 'backbone' when the file has efficientnet names and no
'reconstruction.' prefix, 'model' otherwise.

Every source name that could not be mapped is listed on stderr ("not mapped: ..."), and
BatchNorm's num_batches_tracked counters are dropped (ras never reads them) and counted;
--strict makes any unmapped name an error (exit 1). With --part model, the backbone's and
the neck's tensors of a whole public checkpoint ('module.backbone.*') are listed as "not
imported: ..." and are not errors (ras reads the backbone from its own backbone.weights
file), and so is each counter, so that what is listed and what is written add up to what
the file holds; with --part backbone, the reconstruction model's and the neck's are
listed the same way.
--backbone-out DST2 (with --part model) also writes the backbone's tensors to DST2, in the
same run, when the checkpoint holds any (`ras import` compares them with the config's
backbone). Tensors are written as contiguous float32. `ras import` runs this script (a copy
compiled into ras).
"""
import argparse
import re
import sys

import torch
from safetensors.torch import save_file

MODEL_NAMES = re.compile(
    r"^(?:"
    r"(?:input_proj|output_proj)\.(?:weight|bias)"
    r"|pos_embed\.(?:row|col)_embed\.weight"
    r"|transformer\.encoder\.layers\.\d+\.(?:self_attn\.(?:in_proj_weight|in_proj_bias|out_proj\.weight|out_proj\.bias)"
    r"|linear[12]\.(?:weight|bias)|norm[12]\.(?:weight|bias))"
    r"|transformer\.decoder\.embed_layers\.\d+\.weight"
    r"|transformer\.decoder\.forward_layers\.\d+\.(?:adaptive_gate\.weight"
    r"|output_transBlock\.(?:attn\.(?:in_proj_weight|in_proj_bias|out_proj\.weight|out_proj\.bias)"
    r"|linear[12]\.(?:weight|bias)|norm[12]\.(?:weight|bias))"
    r"|update_proj\.(?:weight|bias)|output_norm\.(?:weight|bias)|output_proj\.(?:weight|bias))"
    r"|transformer\.decoder\.layers\.\d+\.(?:learned_embed\.weight"
    r"|(?:self_attn|multihead_attn)\.(?:in_proj_weight|in_proj_bias|out_proj\.weight|out_proj\.bias)"
    r"|linear[12]\.(?:weight|bias)|norm[123]\.(?:weight|bias))"
    r"|transformer\.decoder\.norm\.(?:weight|bias)"
    r")$"
)
BACKBONE_NAMES = re.compile(
    r"^(?:_conv_stem\.weight|_bn[01]\.(?:weight|bias|running_mean|running_var)|_conv_head\.weight|_fc\.(?:weight|bias)"
    r"|_blocks\.\d+\.(?:_expand_conv\.weight|_depthwise_conv\.weight|_project_conv\.weight"
    r"|_se_(?:reduce|expand)\.(?:weight|bias)|_bn[012]\.(?:weight|bias|running_mean|running_var)))$"
)


def load(path):
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickles with arbitrary objects: only with the user's consent
        raise SystemExit(f"{path}: cannot load with weights_only=True ({e}); if you trust the file, "
                         "convert it with torch.load(..., weights_only=False) yourself")
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in obj and isinstance(obj[key], dict):
                return obj[key]
    if not isinstance(obj, dict):
        raise SystemExit(f"{path}: holds a {type(obj).__name__}, not a state_dict")
    return obj


def strip(name, prefix):
    return name[len(prefix):] if name.startswith(prefix) else None


def convert(sd, part):
    names = {}
    for k in sd:
        n = k
        while n.startswith("module."):
            n = n[len("module."):]
        names[k] = n
    if part == "auto":
        has_rec = any(n.startswith("reconstruction.") for n in names.values())
        part = "backbone" if not has_rec and any(BACKBONE_NAMES.match(n) for n in names.values()) else "model"
    out, unmapped, dropped, other_part = {}, [], [], []
    for k, n in names.items():
        v = sd[k]
        if not torch.is_tensor(v):
            unmapped.append(f"{k} (not a tensor)")
            continue
        if n.endswith("num_batches_tracked"):
            dropped.append(k)
            continue
        if part == "model":
            if n.startswith("backbone.") or n.startswith("neck."):
                other_part.append(k)
                continue
            target = strip(n, "reconstruction.")
            if target is None and MODEL_NAMES.match(n):
                target = n  # a bare model state_dict
            ok = target is not None and MODEL_NAMES.match(target)
        else:
            if n.startswith("reconstruction.") or n.startswith("neck."):
                other_part.append(k)
                continue
            target = strip(n, "backbone.")
            if target is None:
                target = n
            ok = BACKBONE_NAMES.match(target)
        if not ok:
            unmapped.append(k)
            continue
        if target in out:
            raise SystemExit(f"two source tensors map to {target}")
        out[target] = v.detach().to(torch.float32).contiguous()
    return part, out, unmapped, dropped, other_part


def write_backbone(sd, src, dst):
    """Every tensor under 'backbone.' (after any 'module.'), named without the prefixes, with
    no check of the names: the reader compares them with a backbone it knows."""
    out = {}
    for k, v in sd.items():
        n = k
        while n.startswith("module."):
            n = n[len("module."):]
        n = strip(n, "backbone.")
        if n is None or not torch.is_tensor(v) or n.endswith("num_batches_tracked"):
            continue
        out[n] = v.detach().to(torch.float32).contiguous()
    if out:
        save_file(out, dst, metadata={"source": src, "part": "backbone"})


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--part", choices=("auto", "backbone", "model"), default="auto")
    ap.add_argument("--strict", action="store_true", help="fail if any source name is not mapped")
    ap.add_argument("--backbone-out", metavar="DST2",
                    help="with --part model: also write the backbone's tensors here (when there are any)")
    a = ap.parse_args(argv)
    sd = load(a.src)
    part, out, unmapped, dropped, other_part = convert(sd, a.part)
    if not out:
        raise SystemExit(f"{a.src}: no tensor maps to the {part} part")
    if a.backbone_out is not None:
        if part != "model":
            raise SystemExit("--backbone-out goes with --part model")
        write_backbone(sd, a.src, a.backbone_out)
    for k in unmapped:
        print(f"not mapped: {k}", file=sys.stderr)
    for k in other_part:
        print(f"not imported: {k} (not part of the {'reconstruction model' if part == 'model' else 'backbone'})",
              file=sys.stderr)
    if part == "model":
        for k in dropped:
            print(f"not imported: {k} (a BatchNorm counter, never read)", file=sys.stderr)
    if dropped:
        print(f"dropped {len(dropped)} num_batches_tracked counters", file=sys.stderr)
    save_file(out, a.dst, metadata={"source": a.src, "part": part})
    print(f"wrote {a.dst}: {len(out)} tensors ({part}), {len(unmapped)} not mapped", file=sys.stderr)
    if unmapped and a.strict:
        sys.exit(1)


if __name__ == "__main__":
    main()
