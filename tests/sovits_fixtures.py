"""A so-vits-svc 4.1 generator in its exact on-disk form, with random weights: the published
``configs_template/config_template.json`` values (svc-develop-team/so-vits-svc, 4.1-Stable) and
the parameter names and shapes of its ``SynthesizerTrn`` (models.py, modules/modules.py,
modules/attentions.py, vdecoder/hifigan/models.py), weight-normalised convolutions stored as
``weight_g`` / ``weight_v`` as ``torch.nn.utils.weight_norm`` writes them."""
from __future__ import annotations

import json
from pathlib import Path

import torch


def sovits_41_config(speakers: tuple[str, ...] = ("nyaru", "alto")) -> dict:
    """The published 4.1 config template (training keys kept as published)."""
    return {
        "train": {"log_interval": 200, "eval_interval": 800, "seed": 1234, "epochs": 10000,
                  "learning_rate": 0.0001, "betas": [0.8, 0.99], "eps": 1e-09, "batch_size": 6,
                  "fp16_run": False, "half_type": "fp16", "lr_decay": 0.999875,
                  "segment_size": 10240, "init_lr_ratio": 1, "warmup_epochs": 0, "c_mel": 45,
                  "c_kl": 1.0, "use_sr": True, "max_speclen": 512, "port": "8001",
                  "keep_ckpts": 3, "all_in_mem": False, "vol_aug": False},
        "data": {"training_files": "filelists/train.txt", "validation_files": "filelists/val.txt",
                 "max_wav_value": 32768.0, "sampling_rate": 44100, "filter_length": 2048,
                 "hop_length": 512, "win_length": 2048, "n_mel_channels": 80, "mel_fmin": 0.0,
                 "mel_fmax": 22050, "unit_interpolate_mode": "nearest"},
        "model": {"inter_channels": 192, "hidden_channels": 192, "filter_channels": 768,
                  "n_heads": 2, "n_layers": 6, "kernel_size": 3, "p_dropout": 0.1, "resblock": "1",
                  "resblock_kernel_sizes": [3, 7, 11],
                  "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
                  "upsample_rates": [8, 8, 2, 2, 2], "upsample_initial_channel": 512,
                  "upsample_kernel_sizes": [16, 16, 4, 4, 4], "n_layers_q": 3,
                  "n_layers_trans_flow": 3, "n_flow_layer": 4, "use_spectral_norm": False,
                  "gin_channels": 768, "ssl_dim": 768, "n_speakers": 200,
                  "vocoder_name": "nsf-hifigan", "speech_encoder": "vec768l12",
                  "speaker_embedding": False, "vol_embedding": False, "use_depthwise_conv": False,
                  "flow_share_parameter": False, "use_automatic_f0_prediction": True,
                  "use_transformer_flow": False},
        "spk": {name: i for i, name in enumerate(speakers)},
    }


def sovits_41_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """Every parameter of 4.1's SynthesizerTrn for ``config``: name -> shape."""
    m, d = config["model"], config["data"]
    h, inter, filt, gin = m["hidden_channels"], m["inter_channels"], m["filter_channels"], m["gin_channels"]
    k, heads = m["kernel_size"], m["n_heads"]
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name, cout, cin, kernel, norm=False, bias=True):
        if norm:
            shapes[f"{name}.weight_g"] = (cout, 1, 1)
            shapes[f"{name}.weight_v"] = (cout, cin, kernel)
        else:
            shapes[f"{name}.weight"] = (cout, cin, kernel)
        if bias:
            shapes[f"{name}.bias"] = (cout,)

    def wavenet(name, layers, kernel):
        for i in range(layers):
            conv(f"{name}.in_layers.{i}", 2 * h, h, kernel, norm=True)
            conv(f"{name}.res_skip_layers.{i}", 2 * h if i < layers - 1 else h, h, 1, norm=True)
        conv(f"{name}.cond_layer", 2 * h * layers, gin, 1, norm=True)

    def transformer(name, layers, attn, norm_a, norm_f, relative):
        for i in range(layers):
            for p in "qkvo":
                conv(f"{name}.{attn}.{i}.conv_{p}", h, h, 1)
            if relative:
                shapes[f"{name}.{attn}.{i}.emb_rel_k"] = (1, 9, h // heads)
                shapes[f"{name}.{attn}.{i}.emb_rel_v"] = (1, 9, h // heads)
            for n in (norm_a, norm_f):
                shapes[f"{name}.{n}.{i}.gamma"] = (h,)
                shapes[f"{name}.{n}.{i}.beta"] = (h,)
            conv(f"{name}.ffn_layers.{i}.conv_1", filt, h, k)
            conv(f"{name}.ffn_layers.{i}.conv_2", h, filt, k)

    shapes["emb_g.weight"] = (m["n_speakers"], gin)
    conv("pre", h, m["ssl_dim"], 5)
    conv("enc_p.proj", 2 * inter, h, 1)
    shapes["enc_p.f0_emb.weight"] = (256, h)
    transformer("enc_p.enc_", m["n_layers"], "attn_layers", "norm_layers_1", "norm_layers_2", True)
    # NSF-HiFiGAN
    c0, rates, kernels = m["upsample_initial_channel"], m["upsample_rates"], m["upsample_kernel_sizes"]
    shapes["dec.m_source.l_linear.weight"], shapes["dec.m_source.l_linear.bias"] = (1, 9), (1,)
    conv("dec.conv_pre", c0, inter, 7, norm=True)
    for i, (u, kk) in enumerate(zip(rates, kernels)):
        cin, cout = c0 // 2 ** i, c0 // 2 ** (i + 1)
        shapes[f"dec.ups.{i}.weight_g"] = (cin, 1, 1)  # ConvTranspose1d: (in, out, k)
        shapes[f"dec.ups.{i}.weight_v"] = (cin, cout, kk)
        shapes[f"dec.ups.{i}.bias"] = (cout,)
        stride = 1
        for r in rates[i + 1:]:
            stride *= r
        conv(f"dec.noise_convs.{i}", cout, 1, 2 * stride if i + 1 < len(rates) else 1)
    j = 0
    for i in range(len(rates)):
        ch = c0 // 2 ** (i + 1)
        for kk, dil in zip(m["resblock_kernel_sizes"], m["resblock_dilation_sizes"]):
            for n in range(len(dil)):
                conv(f"dec.resblocks.{j}.convs1.{n}", ch, ch, kk, norm=True)
                conv(f"dec.resblocks.{j}.convs2.{n}", ch, ch, kk, norm=True)
            j += 1
    conv("dec.conv_post", 1, c0 // 2 ** len(rates), 7, norm=True)
    conv("dec.cond", c0, gin, 1)
    # posterior encoder and flow
    conv("enc_q.pre", h, d["filter_length"] // 2 + 1, 1)
    wavenet("enc_q.enc", 16, 5)
    conv("enc_q.proj", 2 * inter, h, 1)
    for f in range(0, 8, 2):
        conv(f"flow.flows.{f}.pre", h, inter // 2, 1)
        wavenet(f"flow.flows.{f}.enc", m["n_flow_layer"], 5)
        conv(f"flow.flows.{f}.post", inter // 2, h, 1)
    # F0 predictor
    conv("f0_decoder.prenet", h, h, 3)
    transformer("f0_decoder.decoder", m["n_layers"], "self_attn_layers", "norm_layers_0",
                "norm_layers_1", False)
    conv("f0_decoder.proj", 1, h, 1)
    conv("f0_decoder.f0_prenet", h, 1, 3)
    conv("f0_decoder.cond", h, gin, 1)
    shapes["emb_uv.weight"] = (2, h)
    return shapes


def write_sovits_41(folder: Path, seed: int = 0, speakers: tuple[str, ...] = ("nyaru", "alto")) -> Path:
    """Write ``folder/G_800.pth`` (random weights, scaled to keep activations bounded) and
    ``folder/config.json``; returns the .pth path."""
    folder.mkdir(parents=True, exist_ok=True)
    config = sovits_41_config(speakers)
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in sovits_41_shapes(config).items():
        if name.endswith((".gamma", ".weight_g")):
            state[name] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        else:
            fan_in = max(1, int(torch.tensor(shape[1:]).prod()) if len(shape) > 1 else 1)
            state[name] = torch.randn(shape, generator=g) * (0.5 / fan_in ** 0.5)
    path = folder / "G_800.pth"
    optimizer = {"state": {}, "param_groups": [{"lr": 1e-4, "betas": (0.8, 0.99), "eps": 1e-9,
                                                "weight_decay": 0.01, "params": list(range(len(state)))}]}
    torch.save({"model": state, "iteration": 800, "optimizer": optimizer, "learning_rate": 1e-4}, path)
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path
