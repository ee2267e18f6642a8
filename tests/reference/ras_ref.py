"""PyTorch reference of RAS for the parity tests (tests/parity.rs) and for
`ras bench train-step --pytorch`. Runs with the environment of scripts/setup-python.sh
(.venv-ref: PyPI torch==2.11.0 on CPU, efficientnet-pytorch==0.7.1, scikit-learn, scipy).

What the reference is, module by module (nothing here is re-derived from our Rust code):

* Backbone: ``efficientnet_pytorch.EfficientNet.from_name('efficientnet-b4')`` (package
  efficientnet-pytorch 0.7.1, module ``efficientnet_pytorch.model``), in eval mode, with the
  weights the test wrote (never downloaded). Features are the outputs of ``_blocks`` 1, 5,
  9, 21 (B0: 0, 2, 4, 10), obtained by running ``_conv_stem``/``_bn0``/``_swish`` and the
  blocks exactly as ``EfficientNet.extract_endpoints`` does (drop_connect_rate scaled by
  idx / len(blocks), a no-op in eval mode). This is what UniAD's/RAS's efficientnet
  wrapper does with ``outblocks``.
* Neck (UniAD's MFCN as RAS configures it): ``F.avg_pool2d(f, 3, 1, 1)``
  (count_include_pad=True), ``F.interpolate(size=14x14, mode='bilinear',
  align_corners=True)`` (= ``nn.UpsamplingBilinear2d``), concatenated along channels.
* Transformer parts: ``torch.nn.MultiheadAttention`` (batch_first=False, sequence-first
  tensors (N, B, C) as UniAD/RAS, called with the default ``need_weights=True``),
  ``torch.nn.Linear``, ``torch.nn.LayerNorm``, ``torch.nn.Embedding``.
  The encoder layer is UniAD's ``TransformerEncoderLayer.forward_post`` (post-LN,
  q = k = src + pos, v = src, attn_mask = UniAD's ``generate_mask`` (copied below)).
  ``PositionEmbeddingLearned`` is UniAD's (column half first). The RASFormer step is
  spec section 4 (../shared/spec/ras-model.md), the UniAD-style baseline decoder is UniAD's
  ``TransformerDecoderLayer.forward_post`` with a learned query per layer and a final
  LayerNorm, with UniAD's decoder masks (mask_dec1 = mask_dec2 = the encoder's
  neighbour mask, as UniAD's config ``mask: [True, True, True]``).
* Anomaly map / image score: spec section 6, with ``F.interpolate(..., align_corners=True)``
  and ``F.avg_pool2d(16, 1)``.
* Metrics: ``sklearn.metrics.roc_auc_score`` / ``average_precision_score``; AUPRO as the
  official MVTec AD evaluation code (``compute_pro`` + ``trapezoid``): regions from
  ``scipy.ndimage.label`` with structure ``np.ones((3, 3))``, curve up to FPR 0.3,
  normalised by 0.3 (kept in float64 here).

Module names follow the public code's module tree as the spec's table lists it
(tests/reference/ras-state-dict.md: ``forward_layers[t].output_transBlock.attn``,
``forward_layers[t].output_norm``, ``transformer.decoder.embed_layers[t]``), written from
that table and not from the Rust code; ras's safetensors file moves in with
``load_state_dict(strict=True)``, so a naming error on either side fails the parity tests.

Usage: ras_ref.py <mode> <dir>   (mode: backbone | ras | metrics | bench | make-checkpoint |
       make-effnet | make-public | check-export; the last four write or read torch.save'd
       files for the import/export tests, tests/parity.rs and tests/interop.rs)
Reads <dir>/args.json and <dir>/*.safetensors, writes <dir>/out.safetensors (bench: prints
one JSON line).
"""
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file


# ----------------------------------------------------------------------------- backbone
def backbone_features(arch, weights_path, images, outblocks):
    from efficientnet_pytorch import EfficientNet

    model = EfficientNet.from_name(arch)
    sd = load_file(weights_path)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    # the safetensors file holds parameters and running stats; num_batches_tracked is the
    # only thing it may lack (a counter that eval mode never reads)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise SystemExit(f"weights do not match {arch}: missing {missing}, unexpected {unexpected}")
    model.eval()
    feats = []
    with torch.no_grad():
        # EfficientNet.extract_endpoints / extract_features, step by step
        x = model._swish(model._bn0(model._conv_stem(images)))
        for idx, block in enumerate(model._blocks):
            drop_connect_rate = model._global_params.drop_connect_rate
            if drop_connect_rate:
                drop_connect_rate *= float(idx) / len(model._blocks)
            x = block(x, drop_connect_rate=drop_connect_rate)
            if idx in outblocks:
                feats.append(x)
            if idx == max(outblocks):
                break
        grid = images.shape[-1] // 16
        neck = [
            F.interpolate(F.avg_pool2d(f, 3, 1, 1), size=(grid, grid), mode="bilinear", align_corners=True)
            for f in feats
        ]
        return torch.cat(neck, 1), feats


# ----------------------------------------------------------------------------- RAS
def generate_mask(feature_size, neighbor_size):
    """UniAD's Transformer.generate_mask: -inf inside the neighbourhood, 0 elsewhere."""
    h, w = feature_size
    hm, wm = neighbor_size
    mask = torch.ones(h, w, h, w)
    for idx_h1 in range(h):
        for idx_w1 in range(w):
            idx_h2_start = max(idx_h1 - hm // 2, 0)
            idx_h2_end = min(idx_h1 + hm // 2 + 1, h)
            idx_w2_start = max(idx_w1 - wm // 2, 0)
            idx_w2_end = min(idx_w1 + wm // 2 + 1, w)
            mask[idx_h1, idx_w1, idx_h2_start:idx_h2_end, idx_w2_start:idx_w2_end] = 0
    mask = mask.view(h * w, h * w)
    mask = mask.float().masked_fill(mask == 0, float("-inf")).masked_fill(mask == 1, float(0.0))
    return mask


def with_pos_embed(t, pos):
    return t if pos is None else t + pos


def attention(mha, query, key, value, attn_mask=None, impl="mha"):
    """(N, B, C) tensors. impl 'mha': nn.MultiheadAttention as the public code calls it
    (need_weights default True). impl 'sdpa': the same parameters through
    F.scaled_dot_product_attention (the fused kernel), for the speed comparison."""
    if impl == "mha":
        return mha(query, key, value=value, attn_mask=attn_mask)[0]
    nq, b, c = query.shape
    nk = key.shape[0]
    h = mha.num_heads
    w_q, w_k, w_v = mha.in_proj_weight.chunk(3)
    b_q, b_k, b_v = mha.in_proj_bias.chunk(3)
    q = F.linear(query, w_q, b_q).view(nq, b * h, c // h).transpose(0, 1).view(b, h, nq, c // h)
    k = F.linear(key, w_k, b_k).view(nk, b * h, c // h).transpose(0, 1).view(b, h, nk, c // h)
    v = F.linear(value, w_v, b_v).view(nk, b * h, c // h).transpose(0, 1).view(b, h, nk, c // h)
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    o = o.view(b * h, nq, c // h).transpose(0, 1).reshape(nq, b, c)
    return mha.out_proj(o)


class PositionEmbeddingLearned(nn.Module):
    """UniAD's PositionEmbeddingLearned."""

    def __init__(self, feature_size, num_pos_feats=128):
        super().__init__()
        self.feature_size = feature_size
        self.row_embed = nn.Embedding(feature_size[0], num_pos_feats)
        self.col_embed = nn.Embedding(feature_size[1], num_pos_feats)
        nn.init.uniform_(self.row_embed.weight)
        nn.init.uniform_(self.col_embed.weight)

    def forward(self, tensor):
        i = torch.arange(self.feature_size[1], device=tensor.device)  # w
        j = torch.arange(self.feature_size[0], device=tensor.device)  # h
        x_emb = self.col_embed(i)
        y_emb = self.row_embed(j)
        pos = torch.cat(
            [
                torch.cat([x_emb.unsqueeze(0)] * self.feature_size[0], dim=0),
                torch.cat([y_emb.unsqueeze(1)] * self.feature_size[1], dim=1),
            ],
            dim=-1,
        ).flatten(0, 1)
        return pos


class TransformerEncoderLayer(nn.Module):
    """UniAD's TransformerEncoderLayer, normalize_before=False (forward_post), ReLU."""

    def __init__(self, d_model, nhead, dim_feedforward):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=0.0)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src, src_mask, pos, impl):
        q = k = with_pos_embed(src, pos)
        src2 = attention(self.self_attn, q, k, src, attn_mask=src_mask, impl=impl)
        src = self.norm1(src + src2)
        src2 = self.linear2(F.relu(self.linear1(src)))
        return self.norm2(src + src2)


class TransBlock(nn.Module):
    """A step's transformer block, `forward_layers[t].output_transBlock` in the public code:
    cross-attention (`attn`) from the context to the gated latent, then the FFN, post-norm."""

    def __init__(self, d_model, nhead, dim_feedforward):
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, nhead, dropout=0.0)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, ctx, gated, pos, impl):
        y = attention(self.attn, with_pos_embed(ctx, pos), with_pos_embed(gated, pos), gated, impl=impl)
        y = self.norm1(ctx + y)
        return self.norm2(y + self.linear2(F.relu(self.linear1(y))))


class RASFormerLayer(nn.Module):
    """One RASFormer step (spec section 4), `forward_layers[t]` in the public code, named as
    in tests/reference/ras-state-dict.md (the public state dict). Its context embedding c_t
    lives beside it, in the decoder's `embed_layers[t]`. kind: ras | gate_only | transformer_only."""

    def __init__(self, d_model, nhead, dim_feedforward, out_channels, kind):
        super().__init__()
        self.kind = kind
        if kind != "transformer_only":
            self.adaptive_gate = nn.Linear(2 * d_model, d_model, bias=False)
        if kind != "gate_only":
            self.output_transBlock = TransBlock(d_model, nhead, dim_feedforward)
        self.update_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, out_channels)
        self.output_norm = nn.LayerNorm(d_model)

    def forward(self, embed, latent, pos, impl):
        _, batch_size, _ = latent.shape
        ctx = torch.cat([embed.weight.unsqueeze(1)] * batch_size, dim=1)  # N x B x C
        if self.kind != "transformer_only":
            gate = torch.sigmoid(self.adaptive_gate(torch.cat([ctx, latent], dim=-1)))
            gated = gate * latent
        else:
            gated = latent
        if self.kind != "gate_only":
            transformed = self.output_transBlock(ctx, gated, pos, impl)
        else:
            transformed = gated
        fused = (self.update_proj(latent) + transformed) / 2
        latent = self.output_norm(fused)
        return latent, self.output_proj(latent)


class UniadDecoderLayer(nn.Module):
    """UniAD's TransformerDecoderLayer.forward_post (learned query per layer):
    tgt_mask (mask_dec1) on the attention to memory, memory_mask (mask_dec2) on the
    attention to the previous layer's output."""

    def __init__(self, tokens, d_model, nhead, dim_feedforward):
        super().__init__()
        self.learned_embed = nn.Embedding(tokens, d_model)
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=0.0)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=0.0)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(self, out, memory, pos, impl, tgt_mask=None, memory_mask=None):
        _, batch_size, _ = memory.shape
        tgt = torch.cat([self.learned_embed.weight.unsqueeze(1)] * batch_size, dim=1)
        tgt2 = attention(self.self_attn, with_pos_embed(tgt, pos), with_pos_embed(memory, pos), memory, attn_mask=tgt_mask, impl=impl)
        tgt = self.norm1(tgt + tgt2)
        tgt2 = attention(self.multihead_attn, with_pos_embed(tgt, pos), with_pos_embed(out, pos), out, attn_mask=memory_mask, impl=impl)
        tgt = self.norm2(tgt + tgt2)
        tgt2 = self.linear2(F.relu(self.linear1(tgt)))
        return self.norm3(tgt + tgt2)


class Encoder(nn.Module):
    def __init__(self, n, d_model, nhead, ffn):
        super().__init__()
        self.layers = nn.ModuleList([TransformerEncoderLayer(d_model, nhead, ffn) for _ in range(n)])


class Decoder(nn.Module):
    def __init__(self, a):
        super().__init__()
        tokens = a["grid"] * a["grid"]
        c, heads, ffn = a["hidden_dim"], a["heads"], a["ffn_dim"]
        if a["decoder"] == "uniad":
            self.layers = nn.ModuleList([UniadDecoderLayer(tokens, c, heads, ffn) for _ in range(a["decoder_layers"])])
            self.norm = nn.LayerNorm(c)
        else:
            self.forward_layers = nn.ModuleList(
                [RASFormerLayer(c, heads, ffn, a["in_channels"], a["decoder"]) for _ in range(a["decoder_layers"])]
            )
            self.embed_layers = nn.ModuleList([nn.Embedding(tokens, c) for _ in range(a["decoder_layers"])])


class Transformer(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.encoder = Encoder(a["encoder_layers"], a["hidden_dim"], a["heads"], a["ffn_dim"])
        self.decoder = Decoder(a)


class RAS(nn.Module):
    """f_org (B, C_org, H, W) -> f_rec, with UniAD's sequence-first token layout."""

    def __init__(self, a, impl="mha"):
        super().__init__()
        self.a, self.impl = a, impl
        g = a["grid"]
        self.input_proj = nn.Linear(a["in_channels"], a["hidden_dim"])
        self.pos_embed = PositionEmbeddingLearned((g, g), a["hidden_dim"] // 2)
        self.transformer = Transformer(a)
        if a["decoder"] == "uniad":
            self.output_proj = nn.Linear(a["hidden_dim"], a["in_channels"])
        mask = generate_mask((g, g), tuple(a["neighbor_size"])) if a["neighbor_mask"] else None
        self.register_buffer("mask_enc", mask, persistent=False)

    def forward_all(self, feature_align):
        b, c, h, w = feature_align.shape
        tokens = feature_align.flatten(2).permute(2, 0, 1)  # "b c h w -> (h w) b c"
        pos = self.pos_embed(tokens)
        pos = torch.cat([pos.unsqueeze(1)] * b, dim=1)  # (H X W) x B x C
        x = self.input_proj(tokens)
        for layer in self.transformer.encoder.layers:
            x = layer(x, self.mask_enc, pos, self.impl)
        to_map = lambda o: o.permute(1, 2, 0).reshape(b, c, h, w)  # "(h w) b c -> b c h w"
        dec = self.transformer.decoder
        if self.a["decoder"] == "uniad":
            out = x
            for layer in dec.layers:
                out = layer(out, x, pos, self.impl, tgt_mask=self.mask_enc, memory_mask=self.mask_enc)
            return [to_map(self.output_proj(dec.norm(out)))]
        outs = []
        latent = x
        for step, embed in zip(dec.forward_layers, dec.embed_layers):
            latent, o = step(embed, latent, pos, self.impl)
            outs.append(to_map(o))
        return outs

    def forward(self, feature_align):
        return self.forward_all(feature_align)[-1]


def anomaly_map(f_rec, f_org, out_size):
    pred = torch.sqrt(torch.sum((f_rec - f_org) ** 2, dim=1, keepdim=True))
    return F.interpolate(pred, size=(out_size, out_size), mode="bilinear", align_corners=True)


def image_scores(maps):
    return F.avg_pool2d(maps, 16, stride=1).flatten(1).max(1)[0]


# ----------------------------------------------------------------------------- metrics
def compute_pro(anomaly_maps, ground_truth_maps):
    """The MVTec AD evaluation code's compute_pro (generic_util.py), in float64."""
    from scipy.ndimage import label

    structure = np.ones((3, 3), dtype=int)
    num_ok_pixels = 0
    num_gt_regions = 0
    shape = (len(anomaly_maps), anomaly_maps[0].shape[0], anomaly_maps[0].shape[1])
    fp_changes = np.zeros(shape, dtype=np.uint32)
    pro_changes = np.zeros(shape, dtype=np.float64)
    for gt_ind, gt_map in enumerate(ground_truth_maps):
        labeled, n_components = label(gt_map, structure)
        num_gt_regions += n_components
        ok_mask = labeled == 0
        num_ok_pixels += np.sum(ok_mask)
        fp_changes[gt_ind, ok_mask] = 1
        for k in range(n_components):
            region_mask = labeled == (k + 1)
            pro_changes[gt_ind, region_mask] = 1.0 / np.sum(region_mask)
    scores = np.array(anomaly_maps, dtype=np.float64).ravel()
    order = np.argsort(scores, kind="stable")[::-1]
    scores = scores[order]
    fprs = np.cumsum(fp_changes.ravel()[order]).astype(np.float64) / num_ok_pixels
    pros = np.cumsum(pro_changes.ravel()[order]) / num_gt_regions
    keep = np.append(np.diff(scores) != 0, np.True_)
    fprs = np.clip(fprs[keep], None, 1.0)
    pros = np.clip(pros[keep], None, 1.0)
    return np.concatenate(([0.0], fprs, [1.0])), np.concatenate(([0.0], pros, [1.0]))


def trapezoid(x, y, x_max):
    """The MVTec AD evaluation code's trapezoid with an integration limit."""
    from bisect import bisect

    correction = 0.0
    if x_max not in x:
        ins = bisect(x, x_max)
        assert 0 < ins < len(x)
        y_interp = y[ins - 1] + ((y[ins] - y[ins - 1]) * (x_max - x[ins - 1]) / (x[ins] - x[ins - 1]))
        correction = 0.5 * (y_interp + y[ins - 1]) * (x_max - x[ins - 1])
    mask = x <= x_max
    x, y = x[mask], y[mask]
    return np.sum(0.5 * (y[1:] + y[:-1]) * (x[1:] - x[:-1])) + correction


def aupro(maps, masks, limit=0.3):
    fprs, pros = compute_pro(list(maps), list(masks))
    return trapezoid(fprs, pros, limit) / limit


# ----------------------------------------------------------------------------- modes
def mode_backbone(d, a):
    images = load_file(os.path.join(d, "inputs.safetensors"))["images"]
    f, blocks = backbone_features(a["arch"], os.path.join(d, "weights.safetensors"), images, a["outblocks"])
    out = {"features": f.contiguous()}
    out.update({f"block{i}": t.contiguous() for i, t in zip(a["outblocks"], blocks)})
    save_file(out, os.path.join(d, "out.safetensors"))


def mode_ras(d, a):
    model = RAS(a, impl=a.get("impl", "mha"))
    model.load_state_dict(load_file(os.path.join(d, "weights.safetensors")), strict=True)
    model.eval()
    f_org = load_file(os.path.join(d, "inputs.safetensors"))["features"]
    with torch.no_grad():
        outs = model.forward_all(f_org)
        maps = anomaly_map(outs[-1], f_org, a["image_size"])
        scores = image_scores(maps)
    out = {"f_rec": outs[-1], "maps": maps, "scores": scores}
    out.update({f"step{i}": o for i, o in enumerate(outs)})
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(d, "out.safetensors"))


def mode_metrics(d, a):
    from sklearn.metrics import average_precision_score, roc_auc_score

    t = {k: v.numpy() for k, v in load_file(os.path.join(d, "inputs.safetensors")).items()}
    labels = t["labels"].astype(bool)
    masks = t["masks"].astype(bool)
    res = {
        "image_auroc": roc_auc_score(labels, t["scores"]),
        "image_ap": average_precision_score(labels, t["scores"]),
        "pixel_auroc": roc_auc_score(masks.ravel(), t["maps"].ravel()),
        "pixel_ap": average_precision_score(masks.ravel(), t["maps"].ravel()),
        "aupro": aupro(t["maps"], masks, a.get("fpr_limit", 0.3)),
    }
    save_file({k: torch.tensor([float(v)], dtype=torch.float64).float() for k, v in res.items()},
              os.path.join(d, "out.safetensors"))
    # float64 values too, exactly, as JSON
    with open(os.path.join(d, "out.json"), "w") as f:
        json.dump({k: float(v) for k, v in res.items()}, f)


def bench_one(a, impl, feats, foreach=None):
    torch.manual_seed(0)
    model = RAS(a, impl=impl)
    for n, p in model.named_parameters():  # spec section 5 init (same cost either way)
        if p.dim() == 2 and "embed" not in n:
            nn.init.xavier_uniform_(p)
    # foreach=None: PyTorch's default (single-tensor on CPU, multi-tensor on CUDA).
    opt = torch.optim.AdamW(model.parameters(), lr=7e-4, betas=(0.9, 0.999), weight_decay=1e-4, foreach=foreach)
    model.train()

    def step():
        # feature jitter (spec section 2), the loss on clean features, AdamW, clipping
        c = feats.shape[1]
        norm = feats.norm(dim=1, keepdim=True)
        x = feats + torch.randn_like(feats) * (norm / c) * 25.0
        loss = F.mse_loss(model(x), feats)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 0.1, foreach=foreach)
        opt.step()
        return loss

    step()  # warm-up, as ours
    t = time.perf_counter()
    for _ in range(a["steps"]):
        step()
    return time.perf_counter() - t, model, step


def mode_bench(d, a):
    torch.set_num_threads(a["threads"])
    feats = torch.randn(a["batch"], a["in_channels"], a["grid"], a["grid"])
    res = {"threads": torch.get_num_threads(), "torch": torch.__version__}
    for impl in ("mha", "sdpa"):
        secs, model, step = bench_one(a, impl, feats)
        res[impl] = a["steps"] * a["batch"] / secs
        if a.get("profile"):
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU]) as prof:
                step()
            table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=int(a["profile"]))
            print(f"--- torch.profiler, one training step, attention path {impl} ---\n{table}", file=sys.stderr)
    secs, _, _ = bench_one(a, "mha", feats, foreach=True)
    res["mha_foreach"] = a["steps"] * a["batch"] / secs
    print(json.dumps(res))


def mode_make_checkpoint(d, a):
    """A checkpoint laid out as the public code saves it (torch.save of a dict whose
    'state_dict' has DDP 'module.' + 'reconstruction.' prefixes and backbone tensors). Its
    names are the reference model's (the public state dict's table), into which ras's
    weights must first load with strict=True."""
    model = RAS(a)
    model.load_state_dict(load_file(os.path.join(d, "weights.safetensors")), strict=True)
    sd = {f"module.reconstruction.{k}": v for k, v in model.state_dict().items()}
    sd["module.backbone._conv_stem.weight"] = torch.randn(48, 3, 3, 3)
    sd["module.reconstruction.some_unknown.weight"] = torch.randn(3)
    torch.save({"epoch": 3, "arch": "ras", "state_dict": sd, "best_metric": 0.5}, os.path.join(d, "ckpt_best.pth.tar"))


def mode_make_effnet(d, a):
    """efficientnet_pytorch's own state_dict (as efficientnet-b0-355c32eb.pth is saved)."""
    from efficientnet_pytorch import EfficientNet

    torch.save(EfficientNet.from_name("efficientnet-b0").state_dict(), os.path.join(d, "efficientnet-b0.pth"))


def mode_make_public(d, a):
    """A checkpoint as the public code writes it, from a model the reference builds itself
    (torch's own init, seeded, then perturbed: nothing comes from ras): torch.save of
    {"epoch", "arch", "state_dict", "best_metric", "optimizer"} with the DDP-wrapped
    ModelHelper's names (module.backbone.* = efficientnet_pytorch's, module.reconstruction.*
    = this model's). Also the model's reconstruction of seeded random features."""
    from collections import OrderedDict

    from efficientnet_pytorch import EfficientNet

    torch.manual_seed(a["seed"])
    model = RAS(a)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    backbone = EfficientNet.from_name(a["backbone"])
    sd = OrderedDict()
    for k, v in backbone.state_dict().items():
        sd[f"module.backbone.{k}"] = v
    for k, v in model.state_dict().items():
        sd[f"module.reconstruction.{k}"] = v
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4)
    model(torch.randn(2, a["in_channels"], a["grid"], a["grid"])).square().mean().backward()
    opt.step()
    # the weights after the optimizer step are the checkpoint's
    for k, v in model.state_dict().items():
        sd[f"module.reconstruction.{k}"] = v.clone()
    ckpt = {"epoch": 7, "arch": [{"name": "reconstruction", "type": "models.reconstructions.RAS"}],
            "state_dict": sd, "best_metric": 0.875, "optimizer": opt.state_dict()}
    torch.save(ckpt, os.path.join(d, "ckpt_best.pth.tar"))
    model.eval()
    f_org = torch.randn(3, a["in_channels"], a["grid"], a["grid"]).relu()
    with torch.no_grad():
        maps = anomaly_map(model(f_org), f_org, a["image_size"])
    save_file({"features": f_org.contiguous(), "maps": maps.contiguous(), "scores": image_scores(maps).contiguous()},
              os.path.join(d, "public.safetensors"))


def mode_check_export(d, a):
    """Loads what `ras export` wrote the way a PyTorch user would: the .pth.tar with
    torch.load(weights_only=True) and load_state_dict(strict=True) into this reference
    model (names from the public table) and into efficientnet_pytorch's EfficientNet; the
    .safetensors must hold the same names and values. Writes the reconstruction's maps of
    the features in inputs.safetensors. Exits non-zero, saying why, on any difference."""
    from efficientnet_pytorch import EfficientNet
    from safetensors.torch import load_file as load_st

    ck = torch.load(os.path.join(d, "export.pth.tar"), map_location="cpu", weights_only=True)
    for key in ("epoch", "arch", "state_dict"):
        if key not in ck:
            raise SystemExit(f"export.pth.tar has no {key!r}: {sorted(ck)}")
    sd = ck["state_dict"]
    rec = {k[len("module.reconstruction."):]: v for k, v in sd.items() if k.startswith("module.reconstruction.")}
    bb = {k[len("module.backbone."):]: v for k, v in sd.items() if k.startswith("module.backbone.")}
    other = [k for k in sd if not k.startswith(("module.reconstruction.", "module.backbone."))]
    if other:
        raise SystemExit(f"names outside module.reconstruction./module.backbone.: {other[:5]}")
    model = RAS(a)
    model.load_state_dict(rec, strict=True)
    EfficientNet.from_name(a["backbone"]).load_state_dict(bb, strict=True)
    st = load_st(os.path.join(d, "export.safetensors"))
    if set(st) != set(sd):
        raise SystemExit(f"safetensors and pth.tar names differ: {sorted(set(st) ^ set(sd))[:5]}")
    for k, v in sd.items():
        if not torch.equal(st[k], v):
            raise SystemExit(f"{k} differs between the .safetensors and the .pth.tar")
    if "original" in a:
        orig = torch.load(os.path.join(d, a["original"]), map_location="cpu", weights_only=True)["state_dict"]
        for k, v in orig.items():
            if k.startswith("module.reconstruction.") and not torch.equal(sd[k], v):
                raise SystemExit(f"{k} changed on the way public checkpoint -> ras import -> ras export")
    model.eval()
    f_org = load_file(os.path.join(d, "inputs.safetensors"))["features"]
    with torch.no_grad():
        maps = anomaly_map(model(f_org), f_org, a["image_size"])
    save_file({"maps": maps.contiguous(), "epoch": torch.tensor([float(ck["epoch"])])}, os.path.join(d, "out.safetensors"))


MODES = {"backbone": mode_backbone, "ras": mode_ras, "metrics": mode_metrics, "bench": mode_bench,
         "make-checkpoint": mode_make_checkpoint, "make-effnet": mode_make_effnet,
         "make-public": mode_make_public, "check-export": mode_check_export}


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in MODES:
        raise SystemExit(__doc__)
    mode, d = sys.argv[1], sys.argv[2]
    a = {}
    if os.path.exists(os.path.join(d, "args.json")):
        with open(os.path.join(d, "args.json")) as f:
            a = json.load(f)
    MODES[mode](d, a)


if __name__ == "__main__":
    main()
