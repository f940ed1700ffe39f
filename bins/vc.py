"""``cantor vc -m EXPERIMENT -s SINGER``: realtime voice changer, microphone in, speakers out
(the so-vits-svc-fork ``svc vc`` habit), with the streaming core of models/base/streaming.py.

    cantor vc --list-devices
    cantor vc -m ckpts/demo/student -s EN-Alto-2 --input-device 2 --output-device 2
    cantor vc -m ckpts/demo/student -s EN-Alto-2 --input song.wav --output out.wav [--realtime]

Block, context, crossfade, search and the input gate come from ``inference.realtime`` (the
``--block`` ... options set them). A live status line shows the compute time per block as a
real-time factor, the latency (block + crossfade + search + what the sound card buffers) and the
underruns. With ``--input FILE`` no sound card is used: the file is streamed block by block (as
fast as possible, or at real-time pace with ``--realtime``) and the output written to ``--output``.
Exit status: 0 done, 1 audio device or file trouble (the error says which), 2 bad options,
experiment or singer.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from bins.svc.inference import add_retrieval_arguments
    parser.add_argument("-m", "--model", metavar="EXPERIMENT_DIR",
                        help="trained experiment folder (its newest export or checkpoint), or a "
                             "checkpoint file; a distilled one-step student is what runs in realtime")
    parser.add_argument("-s", "--singer", metavar="TARGET_SINGER",
                        help="target singer, or a mix \"A:0.7,B:0.3\" (weights normalised)")
    shift = parser.add_mutually_exclusive_group()
    shift.add_argument("-t", "--transpose", type=int, default=0, metavar="SEMITONES",
                       help="shift the pitch by this many semitones (default: 0)")
    shift.add_argument("-a", "--autoshift", action="store_true",
                       help="shift the pitch so the median of what was sung so far (30 s at most) "
                            "matches the target singer's")
    parser.add_argument("--list-devices", action="store_true",
                        help="print the sound devices (index, name, host API, channels, rate) and exit")
    parser.add_argument("--input-device", metavar="NAME_OR_INDEX",
                        help="microphone: an index or part of a name from --list-devices "
                             "(default: the system's default input)")
    parser.add_argument("--output-device", metavar="NAME_OR_INDEX",
                        help="speakers or headphones, likewise (default: the default output)")
    parser.add_argument("--passthrough", action="store_true",
                        help="play the microphone back through the same blocks, gate and crossfade "
                             "without converting: checks the devices and the latency")
    parser.add_argument("--input", metavar="SONG", help="stream this file instead of a microphone")
    parser.add_argument("--output", metavar="OUT.wav", help="with --input: where the output goes")
    parser.add_argument("--realtime", action="store_true",
                        help="with --input: feed the blocks at real-time pace (default: as fast as "
                             "possible); the underruns then mean what they would live")
    for flag, key, text in (("--block", "block_seconds", "new audio per step (default 0.5)"),
                            ("--context", "context_seconds", "left context for the models (2.0)"),
                            ("--crossfade", "crossfade_seconds", "crossfade between blocks (0.05)"),
                            ("--search", "search_seconds", "SOLA search range (0.01)"),
                            ("--gate-db", "gate_db", "input gate threshold, dBFS RMS (-50)")):
        parser.add_argument(flag, type=float, metavar="X", dest=key,
                            help=f"inference.realtime.{key}: {text}")
    add_retrieval_arguments(parser)
    parser.add_argument("--steps", type=int, default=None, metavar="N", help="sampler steps")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if present)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a conversion setting (inference.*, vocoder.*)")


def _realtime_overrides(args: argparse.Namespace) -> list[str]:
    keys = ("block_seconds", "context_seconds", "crossfade_seconds", "search_seconds", "gate_db")
    return [f"inference.realtime.{k}={getattr(args, k)}" for k in keys
            if getattr(args, k) is not None]


def _status(stats, stream, device_latency: float, underflows: int) -> str:
    g = stream.geometry
    last = stats.compute_seconds[-1] if stats.compute_seconds else 0.0
    return (f"RTF {last / stats.block_seconds:.2f} (p95 {stats.percentile(95) / stats.block_seconds:.2f})"
            f" | latency {1000 * g.latency_seconds(device_latency):.0f} ms (block+crossfade+search "
            f"{1000 * g.latency_seconds():.0f} + device {1000 * device_latency:.0f})"
            f" | underruns {stats.underruns + underflows} | key {stream.key_shift:+g}")


def _run_file(args, stream) -> int:
    from models.base.stream_runner import stream_file
    from utils.audio import AudioError, load_audio, save_wav

    try:
        wav = load_audio(args.input, stream.sample_rate)
    except AudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    show = lambda k, stats: print("\r" + _status(stats, stream, 0.0, 0), end="", file=sys.stderr,
                                  flush=True)
    out, stats = stream_file(stream, wav, realtime=args.realtime, on_block=show)
    print(file=sys.stderr)
    save_wav(Path(args.output), out, stream.sample_rate)
    print(f"{args.input} -> {args.output}: {stats.summary()}; algorithmic latency "
          f"{1000 * stream.geometry.latency_seconds():.0f} ms")
    return 0


def _run_live(args, stream) -> int:
    import numpy as np
    import sounddevice as sd

    from models.base.stream_runner import ResampledStream, StreamStats
    from utils.audio_devices import AudioDeviceError, explain, negotiate_rate, resolve_device

    g = stream.geometry
    try:
        devices = sd.query_devices()
        device_in = resolve_device(devices, args.input_device, "input")
        device_out = resolve_device(devices, args.output_device, "output")
        rate = negotiate_rate(sd, device_in, device_out, stream.sample_rate)
    except (AudioDeviceError, sd.PortAudioError) as e:
        print(f"error: {e if isinstance(e, AudioDeviceError) else explain(str(e))}", file=sys.stderr)
        return 1
    process = stream.process
    blocksize = g.block
    if rate != stream.sample_rate:
        print(f"the devices do not run at the model's {stream.sample_rate} Hz: using {rate} Hz and "
              f"resampling", file=sys.stderr)
        process = ResampledStream(stream.process, g.block, stream.sample_rate, rate)
        blocksize = int(round(g.block * rate / stream.sample_rate))
    stats = StreamStats(g.block / stream.sample_rate)
    flags = {"underflows": 0, "error": None}

    def callback(indata, outdata, frames, time_info, status):
        begin = time.perf_counter()
        if status.output_underflow or status.input_overflow:
            flags["underflows"] += 1
        try:
            outdata[:] = process(indata.mean(axis=1))[:, None]
        except Exception as e:  # the audio thread cannot raise to us: stop and report
            flags["error"] = e
            outdata.fill(0)
            raise sd.CallbackAbort from e
        stats.compute_seconds.append(time.perf_counter() - begin)

    try:
        with sd.Stream(device=(device_in, device_out), samplerate=rate, blocksize=blocksize,
                       channels=(1, 1), dtype=np.float32, callback=callback) as live:
            device_latency = float(sum(live.latency))
            print(f"converting to {args.singer} (Ctrl-C stops)", file=sys.stderr)
            while live.active:
                time.sleep(0.5)
                print("\r" + _status(stats, stream, device_latency, flags["underflows"]), end="",
                      file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        pass
    except sd.PortAudioError as e:
        print(f"\nerror: {explain(str(e))}", file=sys.stderr)
        return 1
    print(file=sys.stderr)
    if flags["error"] is not None:
        print(f"error: conversion stopped: {type(flags['error']).__name__}: {flags['error']}",
              file=sys.stderr)
        return 1
    print(stats.summary())
    return 0


def run(args: argparse.Namespace) -> int:
    if args.list_devices:
        import sounddevice as sd
        from utils.audio_devices import device_table
        print(device_table(sd))
        return 0
    if not args.model or not args.singer:
        print("error: give -m EXPERIMENT_DIR and -s TARGET_SINGER (or --list-devices)", file=sys.stderr)
        return 2
    if bool(args.input) != bool(args.output):
        print("error: --input and --output go together (file in, file out)", file=sys.stderr)
        return 2
    from bins.svc.inference import load_converter, retrieval_overrides
    from models.base.converter import AUTOSHIFT, UnknownSingerError
    from models.base.streaming import StreamingConverter

    converter = load_converter(args.model, None, args.overrides + _realtime_overrides(args)
                               + retrieval_overrides(args), args.device, args.steps)
    if converter is None:
        return 2
    try:
        stream = StreamingConverter(converter, args.singer, AUTOSHIFT if args.autoshift
                                    else args.transpose, passthrough=args.passthrough)
    except (UnknownSingerError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return _run_file(args, stream) if args.input else _run_live(args, stream)


if __name__ == "__main__":
    from cantor.cli import run_module
    sys.exit(run_module(sys.modules[__name__]))
