"""``cantor eval CONVERTED_DIR --source ... [--target_refs ...]``: objective metrics of converted
singing, per output file and on average, written to a TSV and printed as a table.

CONVERTED_DIR holds stage 3's outputs, ``<CONVERTED_DIR>/<source name>/<source name>_<target>.wav``.
Each output is paired with its source recording (found by name under ``--source``), the target
singer's reference recordings (``--target_refs``) and the key shift it was converted with. An output
whose target is its source's own singer is a self-reconstruction (kind ``self``): it is scored frame
by frame against the real take (MCD, log-mel L1, GV). Every output gets F0 scores (FPC, F0 RMSE in
cents, V/UV error) against the key-shifted source F0, the log-mel global variance against the real
recordings (GV, dB), speaker similarity to the target singer's references, to the source and, for
the key-shift control (the source merely key-shifted by the same semitones), the control's
similarity and the output's gain over it; with ``--language`` the CER of Whisper transcripts of
output vs source (also capped at 1 per take, and its median in the mean rows) and the content
distance (Whisper encoder features of output vs source, DTW-aligned; no transcription), and with
``--copy_synthesis`` the CER of the vocoder-only copy synthesis of the source, so CER can be read
relative to what the vocoder allows. See evaluation/README.md.

Demo (held-out songs converted with run.sh stage 3 into OUT, self-reconstructions included):
    cantor eval OUT --source data/demo/processed/gtsinger_demo/test.json \\
        --target_refs data/demo/processed/gtsinger_demo/train.json \\
        --config egs/svc/DiffComoSVC/exp_config_demo.json --key_shift auto \\
        --language auto --whisper_path pretrained/whisper/base.pt --copy_synthesis
"""
from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("converted_dir", nargs="+",
                        help="folder of outputs <source>/<source>_<target>.wav; several folders (e.g. "
                             "one per model) are scored in one run that computes what they share "
                             "(source F0 and transcripts, copy syntheses, key-shift controls, "
                             "reference embeddings) once, each into its own metrics.tsv")
    parser.add_argument(
        "--source", action="append", required=True, metavar="PATH",
        help="where the sources are (repeatable): a folder (a file <dir>/a/b/c.wav is the source "
             "named a_b_c, or b_c / c when unique; its singer is the first folder a), a single audio "
             "file (named by its stem), or a stage-1 metadata list such as test.json (named by Uid)")
    parser.add_argument(
        "--target_refs", action="append", default=[], metavar="SPEC",
        help="reference recordings of target singers (repeatable): NAME=PATH (a folder or a file, "
             "for singer NAME), a metadata list such as train.json (grouped by <Dataset>_<Singer>), "
             "or a folder of singer folders. A target matches a name exactly or as <dataset>_<name>. "
             "Without it, sim_target is not computed")
    parser.add_argument(
        "--key_shift", action="append", default=[], metavar="N|TARGET=N",
        help="semitones the sources were shifted by at conversion: N for every output, TARGET=N for "
             "one target singer (repeatable); N may be 'auto' (for autoshift runs): per output, the "
             "whole semitones nearest the median output/source pitch interval. Default 0")
    parser.add_argument(
        "--same_content", metavar="DIR",
        help="real recordings of a target singer with a source's content, laid out like the outputs "
             "(<DIR>/<source>/<source>_<target>.wav), as MCD references (self-conversions use the "
             "source without this)")
    parser.add_argument(
        "--config", metavar="FILE",
        help="experiment config whose preprocess section sets the F0 tracker, hop and analysis rate "
             "(default: the schema defaults)")
    parser.add_argument("--sample_rate", type=int, metavar="HZ",
                        help="analysis sample rate for F0 and MCD (default: the config's)")
    parser.add_argument("--language", metavar="CODE|auto",
                        help="compute CER in this Whisper language (en, zh, de, ...), or 'auto': each "
                             "source's language as Whisper detects it (needs a multilingual "
                             "--whisper_path), and the content distance. Default: neither")
    parser.add_argument("--cer_sources", action="append", default=[], metavar="GLOB",
                        help="with --language, limit CER and content distance to sources whose "
                             "name or path matches "
                             "one of these globs, e.g. '*EN-*' (repeatable; default: all)")
    parser.add_argument("--whisper_path", default="pretrained/whisper/base.pt",
                        help="complete openai-whisper checkpoint for CER and content distance "
                             "(default: %(default)s, made "
                             "by `cantor convert-whisper-ct2 --model base`)")
    parser.add_argument("--copy_synthesis", action="store_true",
                        help="with --language: also transcribe each source resynthesised by the "
                             "--config's vocoder from its own mel (cer_copy), and report cer_rel = "
                             "cer / cer_copy")
    parser.add_argument("--device", default="cpu", help="torch device for Resemblyzer and Whisper "
                                                        "(default: %(default)s)")
    parser.add_argument("--output_tsv", metavar="FILE",
                        help="where the TSV goes, with one CONVERTED_DIR (default: "
                             "CONVERTED_DIR/metrics.tsv)")


def _key_shifts(values: list[str]) -> tuple[float | str, dict[str, float | str]]:
    """(default shift, {target: shift}) from --key_shift values (semitones or "auto"); raises
    ValueError on a bad one."""
    default, by_target = 0.0, {}
    for value in values:
        name, sep, number = value.rpartition("=")
        try:
            shift = "auto" if number.strip().lower() == "auto" else float(number)
        except ValueError:
            raise ValueError(f"--key_shift {value}: expected N, auto, TARGET=N or TARGET=auto") from None
        if sep:
            by_target[name] = shift
        else:
            default = shift
    return default, by_target


def _language(value: str | None) -> str | None:
    """--language value checked against Whisper's language codes; raises ValueError on a bad one."""
    if value is None or value == "auto":
        return value
    from whisper.tokenizer import LANGUAGES

    if value not in LANGUAGES:
        raise ValueError(f"--language {value}: not a Whisper language code (e.g. en, zh, de, ja, it) "
                         f"or auto")
    return value


def copy_synthesizer(cfg, device: str):
    """Source path -> the config's vocoder applied to the source's own log-mel, resampled to 16 kHz
    (samples,): the vocoder-only copy synthesis. Raises as :func:`models.vocoders.load_vocoder`."""
    import librosa
    import torch

    from models.vocoders import load_vocoder
    from processors.mel import mel_spectrogram
    from utils.audio import load_audio

    vocoder = load_vocoder(cfg, device)

    def synthesize(path):
        wav = load_audio(path, cfg.preprocess.sample_rate)
        with torch.inference_mode():
            out = vocoder(mel_spectrogram(wav, cfg.preprocess)[None].to(device))[0].float().cpu().numpy()
        return librosa.resample(out, orig_sr=vocoder.sample_rate, target_sr=16000)
    return synthesize


def run(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from evaluation.layout import LayoutError, SourceIndex, find_conversions, reference_sets
    from evaluation.runner import EvalSettings, Evaluator
    from processors.f0 import F0ExtractorUnavailable, check_f0_extractor
    from utils.config import ConfigError, load_config
    from utils.paths import resolve_path
    from utils.schema import PreprocessConfig

    try:
        language = _language(args.language)
        if args.copy_synthesis and not (args.config and language):
            raise ValueError("--copy_synthesis needs --config (its vocoder) and --language")
        cfg = load_config(args.config) if args.config else None
        preprocess = cfg.preprocess if cfg else PreprocessConfig()
        if args.sample_rate:
            preprocess = dataclasses.replace(preprocess, sample_rate=args.sample_rate)
        check_f0_extractor(preprocess)
        shift, shift_by_target = _key_shifts(args.key_shift)
        if args.output_tsv and len(args.converted_dir) > 1:
            raise ValueError("--output_tsv takes one CONVERTED_DIR; with several, each gets its "
                             "own metrics.tsv")
        conversions = {root: find_conversions(root) for root in args.converted_dir}
        sources = SourceIndex()
        for spec in args.source:
            sources.add(spec)
        references = reference_sets(args.target_refs)
        same_content = ({(c.source_name, c.target): c.path for c in find_conversions(args.same_content)}
                        if args.same_content else {})
        copy = copy_synthesizer(cfg, args.device) if args.copy_synthesis else None
    except (ConfigError, LayoutError, F0ExtractorUnavailable, FileNotFoundError, ValueError) as e:
        print(f"eval: {e}", file=sys.stderr)
        return 2
    settings = EvalSettings(preprocess=preprocess, key_shift=shift, key_shift_by_target=shift_by_target,
                            language=language, whisper_path=resolve_path(args.whisper_path),
                            cer_sources=args.cer_sources, device=args.device)
    evaluator = Evaluator(settings, sources, references, same_content, copy)
    for root, found in conversions.items():
        tsv = Path(args.output_tsv) if args.output_tsv else Path(root) / "metrics.tsv"
        _score_folder(evaluator, Path(root), found, tsv)
    return 0


def _score_folder(evaluator, root, conversions, tsv) -> None:
    """Score one folder's conversions, write its TSV (rows, the MEAN row and one per kind) and
    print its table and summaries."""
    from tqdm import tqdm

    from evaluation.report import format_table, write_tsv
    from evaluation.runner import control_summary, mean_row

    rows = []
    for conv in tqdm(conversions, desc=f"evaluating {root}", unit="file"):
        row = evaluator.evaluate(conv)
        row["output"] = str(conv.path.relative_to(root))
        rows.append(row)
    outputs = list(rows)
    rows.append(mean_row(outputs))
    kinds = {r["kind"] for r in outputs}
    if len(kinds) > 1:
        rows += [mean_row([r for r in outputs if r["kind"] == k], f"MEAN {k}") for k in sorted(kinds) if k]
    write_tsv(rows, tsv)
    print(format_table(rows))
    cross = [r for r in outputs if r["kind"] == "cross"]
    scored = [r for r in cross if r["sim_target"] == r["sim_target"] and r["sim_source"] == r["sim_source"]]
    if scored:
        wins = sum(r["sim_target"] > r["sim_source"] for r in scored)
        print(f"closer to the target singer than to the source: {wins} of {len(scored)} outputs")
    control = control_summary(cross)
    if control:
        print(control)
    print(f"wrote {tsv}")


if __name__ == "__main__":
    from cantor.cli import run_module
    sys.exit(run_module(sys.modules[__name__]))
