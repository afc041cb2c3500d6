"""Write two class folders for ``--data-dir`` runs, made here and not by fedsim's own populations.

* **glyphs** (image, ImageFolder layout): the digits 0–9 rendered with PIL in the machine's
  TrueType fonts (``fc-list``; PIL's default font at several sizes when there are none), each
  image dark on light (7 in 10) or light on dark, background (flat or a gradient) and ink
  tinted in random colours, in a random size, rotation, position and stroke, with blur and
  sensor noise, 48 px RGB PNG. The fonts
  are split: ``test/`` is drawn in fonts no ``train/`` image uses (unseen fonts), so kNN on
  the held-out split measures generalisation to new typefaces.
* **vowels** (audio, class folders of WAV files): eight spoken-vowel classes (five steady
  vowels and three diphthongs) synthesised by a source-filter model — a glottal pulse train
  with jitter and breath noise through formant resonators — each clip by a "speaker" with its
  own pitch (80–280 Hz), vocal-tract length (formants scaled 0.85–1.2), speaking rate, onset,
  loudness, noise floor and room. ``test/`` holds speakers no ``train/`` clip uses (unseen
  voices). 16 kHz mono, 1 s, PCM16 via soundfile.

File stems carry the font / speaker (``f03_0012.png``, ``s017_0004.wav``), so
``partitioning.kind: natural`` gives one font or speaker per client. Deterministic in
``--seed``::

    python benchmarks/make_folders.py --out /tmp/folders --seed 0
    fedsim run --task image --data-dir /tmp/folders/glyphs --check
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from scipy.signal import lfilter  # scikit-learn's dependency

IMAGE_SIZE = 48
SAMPLE_RATE = 16_000
# Formants F1..F3 (Hz) of an adult voice (Peterson & Barney 1952, rounded); a diphthong glides
# from its first to its second target.
VOWELS: dict[str, tuple[tuple[int, int, int], ...]] = {
    "a": ((730, 1090, 2440),), "e": ((530, 1840, 2480),), "i": ((270, 2290, 3010),),
    "o": ((570, 840, 2410),), "u": ((300, 870, 2240),),
    "ai": ((730, 1090, 2440), (270, 2290, 3010)), "au": ((730, 1090, 2440), (300, 870, 2240)),
    "oi": ((570, 840, 2410), (270, 2290, 3010)),
}


# ---- glyphs ------------------------------------------------------------------------------

def font_sources() -> list[str]:
    """TrueType files the machine has (sorted), or ``[""]``: PIL's default font."""
    try:
        listed = subprocess.run(["fc-list", "--format", "%{file}\n"], capture_output=True, text=True,
                                timeout=30).stdout.split()
    except (OSError, subprocess.SubprocessError):
        listed = []
    files = sorted({f for f in listed + glob.glob("/usr/share/fonts/**/*.ttf", recursive=True)
                    if f.lower().endswith((".ttf", ".otf"))})
    return files or [""]


def _font(source: str, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.truetype(source, size) if source else ImageFont.load_default(size)


def _background(rng: np.random.Generator, size: int, shade: float) -> np.ndarray:
    """(size, size, 3) float in [0, 1] around luminance ``shade``: a flat colour or a gentle
    linear gradient of a random hue (paper, a wall, a screen)."""
    tint = shade + rng.uniform(-0.15, 0.15, 3)
    if rng.random() < 0.5:
        return np.broadcast_to(np.clip(tint, 0, 1), (size, size, 3)).copy()
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    t = ((xx - 0.5) * np.cos(angle) + (yy - 0.5) * np.sin(angle))[..., None]
    return np.clip(tint + 0.25 * t, 0, 1)


def render_glyph(text: str, source: str, rng: np.random.Generator, size: int = IMAGE_SIZE) -> Image.Image:
    """``text`` in font ``source``, dark on light or light on dark in random colours, randomly
    sized, rotated, placed, blurred and noised."""
    big = size * 4
    mask = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask)
    font = _font(source, int(big * rng.uniform(0.55, 0.8)))
    stroke = int(rng.integers(0, 4))
    box = draw.textbbox((0, 0), text, font=font, stroke_width=stroke)
    x = (big - (box[2] - box[0])) / 2 - box[0] + rng.uniform(-0.08, 0.08) * big
    y = (big - (box[3] - box[1])) / 2 - box[1] + rng.uniform(-0.08, 0.08) * big
    draw.text((x, y), text, fill=255, font=font, stroke_width=stroke, stroke_fill=255)
    mask = mask.rotate(rng.uniform(-12, 12), resample=Image.BILINEAR)
    mask = mask.resize((size, size), Image.LANCZOS).filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.8)))
    alpha = np.asarray(mask, dtype=np.float64)[..., None] / 255.0
    light = rng.random() < 0.7  # most pages are light
    back = _background(rng, size, rng.uniform(0.7, 0.95) if light else rng.uniform(0.05, 0.3))
    ink = np.clip((rng.uniform(0.0, 0.3) if light else rng.uniform(0.7, 1.0)) + rng.uniform(-0.2, 0.2, 3), 0, 1)
    img = back * (1 - alpha) + ink * alpha + rng.normal(0, rng.uniform(0, 0.05), (size, size, 3))
    return Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8))


def write_glyphs(out: Path, *, seed: int, per_class: int, test_per_class: int) -> Path:
    """``out/train/<digit>/f<font>_<n>.png`` and ``out/test/...`` in unseen fonts."""
    fonts = font_sources()
    order = np.random.default_rng([seed, 1]).permutation(len(fonts))
    n_test = max(1, len(fonts) // 4) if len(fonts) > 1 else 0
    test_fonts, train_fonts = order[:n_test], order[n_test:]
    if not n_test:  # a single (default) font: both splits use it
        test_fonts = train_fonts
    for split, pool, n in (("train", train_fonts, per_class), ("test", test_fonts, test_per_class)):
        for digit in range(10):
            folder = out / split / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng([seed, 2, split == "test", digit])
            for i in range(n):
                f = int(pool[i % len(pool)])
                render_glyph(str(digit), fonts[f], rng).save(folder / f"f{f:02d}_{i:04d}.png")
    return out


# ---- vowels ------------------------------------------------------------------------------

def _resonate(x: np.ndarray, freq: np.ndarray, bandwidth: float, block: int = 80) -> np.ndarray:
    """A two-pole resonator whose centre follows ``freq`` (per sample), unit gain at DC:
    ``scipy.signal.lfilter`` on blocks of ``block`` samples, the filter state carried over."""
    r = np.exp(-np.pi * bandwidth / SAMPLE_RATE)
    out, state = [], np.zeros(2)
    for s in range(0, len(x), block):
        c1 = 2 * r * np.cos(2 * np.pi * freq[s] / SAMPLE_RATE)
        a = [1.0, -c1, r * r]
        y, state = lfilter([sum(a)], a, x[s:s + block], zi=state)
        out.append(y)
    return np.concatenate(out)


def speak_vowel(name: str, speaker: dict, rng: np.random.Generator, seconds: float = 1.0) -> np.ndarray:
    """One clip of vowel ``name`` by ``speaker`` (pitch, tract scale, rate, room, noise)."""
    total = int(seconds * SAMPLE_RATE)
    dur = int(total * np.clip(speaker["rate"] * rng.uniform(0.8, 1.1), 0.3, 0.85))
    t = np.arange(dur) / SAMPLE_RATE
    f0 = speaker["f0"] * rng.uniform(0.92, 1.08) * (1 + rng.uniform(-0.15, 0.1) * t / t[-1])
    f0 = f0 * (1 + 0.01 * rng.standard_normal(dur).cumsum() / np.sqrt(np.arange(1, dur + 1)))  # jitter
    phase = np.cumsum(f0 / SAMPLE_RATE)
    source = np.diff(np.floor(phase), prepend=0.0) - np.mean(np.diff(np.floor(phase), prepend=0.0))
    source = source + speaker["breath"] * rng.standard_normal(dur) * 0.05
    targets = np.asarray(VOWELS[name], dtype=np.float64) * speaker["tract"]
    glide = np.clip((t / t[-1] - 0.3) / 0.4, 0, 1)[:, None] if len(targets) > 1 else np.zeros((dur, 1))
    formants = targets[0] * (1 - glide) + targets[-1] * glide  # (dur, 3)
    voice = sum(_resonate(source, formants[:, k], bw) * g
                for k, (bw, g) in enumerate(((80, 1.0), (100, 0.5), (140, 0.25))))
    env = np.minimum(1, np.minimum(t / 0.03, (t[-1] - t) / 0.06))
    voice = voice * env / (np.abs(voice).max() + 1e-9)
    clip = np.zeros(total)
    start = int(rng.integers(0, total - dur + 1))
    clip[start:start + dur] = voice * speaker["level"] * rng.uniform(0.7, 1.0)
    if speaker["rt60"] > 0:  # a room: an exponentially decaying noise tail
        taps = int(0.25 * SAMPLE_RATE)
        tail = rng.standard_normal(taps) * np.exp(-6.91 * np.arange(taps) / SAMPLE_RATE / speaker["rt60"])
        clip = clip + 0.3 * np.convolve(clip, tail / np.linalg.norm(tail))[:total]
    clip = clip + rng.standard_normal(total) * speaker["noise"]
    return np.clip(clip, -1, 1).astype(np.float32)


def draw_speaker(rng: np.random.Generator) -> dict:
    return {"f0": float(np.exp(rng.uniform(np.log(80), np.log(280)))), "tract": float(rng.uniform(0.85, 1.2)),
            "rate": float(rng.uniform(0.4, 0.8)), "breath": float(rng.uniform(0, 1)),
            "level": float(rng.uniform(0.2, 0.9)), "noise": float(10 ** rng.uniform(-3.5, -1.8)),
            "rt60": float(rng.choice([0.0, rng.uniform(0.1, 0.5)]))}


def write_vowels(out: Path, *, seed: int, speakers: int, clips_per_speaker: int, test_speakers: int) -> Path:
    """``out/train/<vowel>/s<speaker>_<n>.wav`` and ``out/test/...`` by unseen speakers."""
    for split, first, count in (("train", 0, speakers), ("test", speakers, test_speakers)):
        for s in range(first, first + count):
            rng = np.random.default_rng([seed, 3, s])
            speaker = draw_speaker(rng)
            for name in VOWELS:
                folder = out / split / name
                folder.mkdir(parents=True, exist_ok=True)
                for i in range(clips_per_speaker):
                    sf.write(folder / f"s{s:03d}_{i:04d}.wav", speak_vowel(name, speaker, rng), SAMPLE_RATE,
                             subtype="PCM_16")
    return out


def make_folders(out: str | os.PathLike, *, seed: int = 0, scale: float = 1.0,
                 names: tuple[str, ...] = ("glyphs", "vowels")) -> dict[str, Path]:
    """The folders ``names`` under ``out`` (``glyphs/``, ``vowels/``); ``scale`` shrinks them (tests)."""
    root = Path(out)
    n = lambda k: max(2, int(round(k * scale)))  # noqa: E731
    writers = {"glyphs": lambda: write_glyphs(root / "glyphs", seed=seed, per_class=n(80), test_per_class=n(50)),
               "vowels": lambda: write_vowels(root / "vowels", seed=seed, speakers=n(30), clips_per_speaker=n(3),
                                              test_speakers=n(15))}
    return {name: writers[name]() for name in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder to write glyphs/ and vowels/ into")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0, help="shrink (or grow) every count")
    args = parser.parse_args()
    for name, path in make_folders(args.out, seed=args.seed, scale=args.scale).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
