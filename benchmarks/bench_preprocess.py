"""Per-frame preprocessing speed: 8 frames of a 720p clip -> (8, 3, 224, 224) normalised pixels.

Compares, in one run, Transformers' built-in Video-LLaVA processors (its VideoLlavaVideoProcessor needs torchvision;
its VideoLlavaImageProcessor runs PIL per frame) with ours, batched in torch, in both resampling modes, and reports
the max abs difference to the built-in PIL-bicubic output.

    python benchmarks/bench_preprocess.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from PIL import Image
from transformers import VideoLlavaImageProcessor as BuiltinImageProcessor

from videollava_hf import VideoLlavaVideoProcessor


def clip_720p(num_frames: int = 8) -> np.ndarray:
    """Smooth, photo-like frames (noise would exaggerate resampling differences)."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (num_frames, 90, 160, 3), dtype=np.uint8)
    return np.stack([np.asarray(Image.fromarray(f).resize((1280, 720), Image.BILINEAR)) for f in small])


def median_time(fn, repeats: int) -> float:
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20, help="timed repetitions (median reported)")
    args = parser.parse_args()
    frames = clip_720p()
    builtin_image = BuiltinImageProcessor()

    def run_builtin_image():
        return builtin_image(images=list(frames), return_tensors="pt", return_legacy_image_output=False)["pixel_values"]

    candidates = {"built-in VideoLlavaImageProcessor (PIL, per frame)": run_builtin_image}
    try:
        from transformers import VideoLlavaVideoProcessor as BuiltinVideoProcessor

        builtin_video = BuiltinVideoProcessor()
        candidates["built-in VideoLlavaVideoProcessor"] = lambda: builtin_video(
            videos=[frames], return_tensors="pt")["pixel_values_videos"][0]
        candidates["built-in VideoLlavaVideoProcessor"]()
    except (ImportError, ValueError) as err:  # needs torchvision, which this machine does not have
        candidates.pop("built-in VideoLlavaVideoProcessor", None)
        print(f"(built-in VideoLlavaVideoProcessor unavailable: {str(err).strip().splitlines()[0]})")
    ours_tf = VideoLlavaVideoProcessor(resample_mode="transformers")
    ours_orig = VideoLlavaVideoProcessor(resample_mode="original")
    candidates["ours, resample_mode='transformers'"] = lambda: ours_tf(frames)["pixel_values_videos"][0]
    candidates["ours, resample_mode='original'"] = lambda: ours_orig(frames)["pixel_values_videos"][0]

    reference = run_builtin_image()
    base = None
    print(f"threads: {torch.get_num_threads()}, input: {frames.shape} uint8")
    print("| pipeline | ms / 8 frames | speed-up vs built-in PIL | max abs diff vs built-in | pixels differing |")
    print("|---|---|---|---|---|")
    for name, fn in candidates.items():
        t = median_time(fn, args.repeats)
        base = base or t  # the first row is the built-in PIL path
        diff = (fn() - reference).abs()
        print(f"| {name} | {t * 1000:.1f} | {base / t:.2f}x | {diff.max():.4f} | {(diff > 1e-4).float().mean():.2%} |")


if __name__ == "__main__":
    main()
