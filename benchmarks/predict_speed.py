"""What a student costs per image at prediction time: backbones, image signals, test-time augmentation.

For each configuration, ``VisentModel.features`` (what ``predict`` runs before the head, whose cost is a matrix
product) on the same MVSA photos with the feature cache off, after a warm-up on a few other photos (ONNX export,
model loading). Prints images/s and milliseconds per image, end to end (file hashing, decoding, networks).

    python benchmarks/predict_speed.py ../shared/data/mvsa-single --images 256
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from visent.model import ModelConfig, VisentModel

from record import add_results_argument, save_results

CONFIGS = {  # name -> ModelConfig fields
    "Lite0 (the earlier default)": {"backbone": "efficientnet-lite0"},
    "Lite0 multi-stage + Lite2 (the earlier default)": {"backbone": "efficientnet-lite0-ms",
                                                        "extra_backbones": ["efficientnet-lite2"]},
    "default + ten-crop TTA": {"backbone": "efficientnet-lite0-ms", "extra_backbones": ["efficientnet-lite2"],
                               "tta": "crops"},
    "default + OCR signal": {"backbone": "efficientnet-lite0-ms", "extra_backbones": ["efficientnet-lite2"],
                             "signals": ["ocr"]},
    "default + faces signal": {"backbone": "efficientnet-lite0-ms", "extra_backbones": ["efficientnet-lite2"],
                               "signals": ["faces"]},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mvsa", type=Path, nargs="?", default=Path(__file__).resolve().parents[2] / "shared/data/mvsa-single")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--runtime", default="onnx")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated names (default: all)")
    add_results_argument(parser, "predict_speed")
    args = parser.parse_args()
    os.environ.setdefault("VISENT_PROGRESS", "0")

    photos = sorted((args.mvsa / "data").glob("*.jpg"))
    warm, timed = photos[-8:], photos[: args.images]
    print(f"{len(timed)} MVSA photos, runtime {args.runtime}, {os.cpu_count()} cores, feature cache off\n")
    print("| configuration | features | images/s | ms per image |")
    print("|---|---|---|---|")
    rows, table = [], []
    for name in args.configs.split(","):
        config = ModelConfig(runtime=args.runtime, **CONFIGS[name])
        model = VisentModel(config, head=None)  # type: ignore[arg-type]  # features only
        model.features(warm, cache=False)
        started = time.perf_counter()
        features, status = model.features(timed, cache=False)
        seconds = time.perf_counter() - started
        errors = sum(s.failed for s in status)
        print(f"| {name} | {features.shape[1]} | {len(timed) / seconds:.1f} | {1000 * seconds / len(timed):.1f} |"
              + (f" {errors} errors" if errors else ""), flush=True)
        rows.append({"configuration": name, "features": int(features.shape[1]), "images": len(timed),
                     "seconds": seconds, "errors": errors, "runtime": args.runtime})
        table.append([name, f"{features.shape[1]:,}", f"{len(timed) / seconds:.1f}",
                      f"{1000 * seconds / len(timed):.1f}"])
    save_results(args.results, rows, columns=["configuration", "features", "images/s", "ms per image"], table=table)


if __name__ == "__main__":
    main()
