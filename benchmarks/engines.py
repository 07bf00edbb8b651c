"""Which inference engine runs the default model's int8 network fastest on this CPU, and at what cost in fidelity.

The default model carries its network as an int8 ONNX graph (QDQ); visent runs it with ONNX Runtime. OpenVINO can
run the same graph, and on Intel CPUs with AMX it is built for that. Before visent could choose an engine per CPU,
two things have to be known on each CPU kind: the speed of each engine on the very same network, and how far its
features (and so the student's probabilities) move from those the student was trained on. This script measures both:

    python benchmarks/engines.py                       # 128 MVSA photos, 2 threads, batch 32
    python benchmarks/engines.py --images DIR --threads 4

Each engine runs in its own process, so an engine that crashes (OpenVINO 2025.4 and 2026.4 end with a
segmentation fault compiling the default network on AMD Zen 4) is reported and the next one tried: with
``openvino-*-tail`` the graph is cut before its last Concat, and the concatenation and its requantisation (to the
Concat's scale and zero point, rounding half to even as ONNX Runtime does) run in numpy, which is the same function.
Speeds are the best of three passes, measured in turns (one pass of each engine, then again), so that load on the
machine weighs on every engine alike. Prints a table and the CPU model; needs ``pip install openvino`` for the
OpenVINO rows (they are skipped otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from record import add_results_argument, save_results

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = ROOT.parent / "shared" / "data" / "mvsa-single" / "data"
ENGINES = ("onnxruntime", "openvino-f32", "openvino-bf16", "openvino-f32-tail", "openvino-bf16-tail")


def tail_cut(graph: Path, out: Path) -> dict:
    """``graph`` cut before its last Concat (outputs: the Concat's inputs), written to ``out``; returns the
    requantisation the cut-off tail does (the Concat output's scale and zero point)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(graph))
    concat = [node for node in model.graph.node if node.op_type == "Concat"][-1]
    initial = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    quantise = next(node for node in model.graph.node
                    if node.op_type == "QuantizeLinear" and node.input[0] == concat.output[0])
    onnx.utils.extract_model(str(graph), str(out), [model.graph.input[0].name], list(concat.input))
    return {"scale": float(initial[quantise.input[1]]), "zero_point": int(initial[quantise.input[2]]),
            "parts": len(concat.input)}


def worker(engine: str, graph: Path, inputs: Path, out: Path, threads: int, batch: int, passes: int) -> None:
    """Run ``engine`` on the images of ``inputs`` (a .npy) ``passes`` times; save the features and each pass's
    seconds."""
    X = np.load(inputs)
    if engine == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])

        def run(chunk):
            return session.run(["features"], {"images": chunk})[0]
    else:
        import openvino as ov

        precision = "bf16" if "bf16" in engine else "f32"
        tail = None
        path = graph
        if engine.endswith("-tail"):
            path = out.with_suffix(".cut.onnx")
            tail = tail_cut(graph, path)
        compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                              "INFERENCE_PRECISION_HINT": precision})
        request = compiled.create_infer_request()

        def run(chunk):
            result = request.infer({0: chunk})
            if tail is None:
                return np.array(result[0])
            x = np.concatenate([np.asarray(result[k]).reshape(len(chunk), -1) for k in range(tail["parts"])], 1)
            q = np.clip(np.rint(x / tail["scale"]) + tail["zero_point"], 0, 255)
            return ((q - tail["zero_point"]) * tail["scale"]).astype(np.float32)

    run(X[:batch])  # warm-up: the first call compiles kernels
    seconds = []
    for _ in range(passes):
        start = time.perf_counter()
        features = np.concatenate([run(X[i:i + batch]) for i in range(0, len(X), batch)])
        seconds.append(time.perf_counter() - start)
    np.save(out, features)
    out.with_suffix(".json").write_text(json.dumps(seconds))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="a folder of photos (default: MVSA's)")
    parser.add_argument("-n", type=int, default=128, help="how many photos (default 128)")
    parser.add_argument("--threads", type=int, default=2, help="threads per engine (default 2)")
    parser.add_argument("--batch", type=int, default=32, help="images per call (default 32)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of one pass per engine (default 3)")
    parser.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated, of: {', '.join(ENGINES)}")
    parser.add_argument("--worker", nargs=4, metavar=("ENGINE", "GRAPH", "INPUTS", "OUT"), help=argparse.SUPPRESS)
    add_results_argument(parser, "engines")
    args = parser.parse_args(argv)
    if args.worker:
        engine, graph, inputs, out = args.worker
        worker(engine, Path(graph), Path(inputs), Path(out), args.threads, args.batch, 1)
        return

    from PIL import Image

    from visent.core.machine import cpu_model
    from visent.embed.spec import preprocess_array
    from visent.model import VisentModel

    photos = sorted(p for p in args.images.glob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})[:args.n]
    if not photos:
        sys.exit(f"{args.images}: no photos there; name a folder of photos with --images")
    model = VisentModel.load("default")
    network = model.feature_backbone
    X = np.stack([preprocess_array(Image.open(p).convert("RGB"), network.spec) for p in photos]).astype(np.float32)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown:
        sys.exit(f"unknown engine(s) {', '.join(unknown)}; choose of: {', '.join(ENGINES)}")
    try:
        import openvino  # noqa: F401
    except ImportError:
        print("openvino not installed (`pip install openvino`): its rows are skipped")
        engines = [e for e in engines if not e.startswith("openvino")]

    with tempfile.TemporaryDirectory(prefix="visent-engines-") as tmp:
        inputs = Path(tmp) / "inputs.npy"
        np.save(inputs, X)
        seconds: dict[str, list[float]] = {e: [] for e in engines}
        failed: dict[str, str] = {}
        features: dict[str, np.ndarray] = {}
        for _ in range(args.rounds):
            for engine in engines:
                if engine in failed:
                    continue
                out = Path(tmp) / f"{engine}.npy"
                done = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--batch",
                                       str(args.batch), "--worker", engine, str(network.path), str(inputs), str(out)],
                                      check=False, capture_output=True, text=True,
                                      env={**os.environ, "PYTHONWARNINGS": "ignore"})
                if done.returncode != 0:
                    last = (done.stderr.strip().splitlines() or ["no message"])[-1]
                    failed[engine] = (f"killed by signal {-done.returncode}" if done.returncode < 0
                                      else f"exit {done.returncode}: {last[:120]}")
                    continue
                seconds[engine] += json.loads(out.with_suffix(".json").read_text())
                features[engine] = np.load(out)

    print(f"CPU: {cpu_model()}; {len(X)} photos of {args.images}, batch {args.batch}, {args.threads} threads; "
          f"network: the default model's ({network.runtime}, {network.path.name})")
    reference = features.get("onnxruntime")
    base = min(seconds["onnxruntime"]) if seconds.get("onnxruntime") else None
    probs = model.head.predict_proba(reference) if reference is not None else None
    print(f"{'engine':<20} {'ms/image':>9} {'speed':>6} {'features moved':>15} {'max |dp|':>9} {'class kept':>10}")
    rows, table = [], []
    for engine in engines:
        if engine in failed:
            print(f"{engine:<20} failed: {failed[engine]}")
            rows.append({"engine": engine, "failed": failed[engine]})
            table.append([engine, f"failed: {failed[engine]}", "", "", "", ""])
            continue
        best = min(seconds[engine])
        speed = f"{base / best:.2f}x" if base else "-"
        row = f"{engine:<20} {best / len(X) * 1000:>9.2f} {speed:>6}"
        result = {"engine": engine, "seconds": seconds[engine], "ms_per_image": best / len(X) * 1000}
        cells = [engine, f"{best / len(X) * 1000:.2f}", speed, "", "", ""]
        if reference is not None and engine != "onnxruntime":
            moved = float((np.abs(features[engine] - reference) > 1e-6).mean())
            other = model.head.predict_proba(features[engine])
            dp, kept = float(np.abs(other - probs).max()), float((other.argmax(1) == probs.argmax(1)).mean())
            row += f" {moved:>14.1%} {dp:>9.4f} {kept:>9.1%}"
            result.update(features_moved=moved, max_dp=dp, class_kept=kept)
            cells[3:] = [f"{moved:.1%}", f"{dp:.4f}", f"{kept:.1%}"]
        print(row)
        rows.append(result)
        table.append(cells)
    print("features moved: share of feature values that differ from ONNX Runtime's; max |dp|: the largest change of "
          "a probability of the default student; class kept: share of photos whose predicted class stays")
    save_results(args.results, rows, columns=["engine", "ms per image", "speed", "features moved", "max |dp|",
                                              "class kept"], table=table, photos=len(X), threads=args.threads,
                 batch=args.batch)


if __name__ == "__main__":
    main()
