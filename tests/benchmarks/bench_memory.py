"""Peak memory (RSS) of `retail-agent run` on the sample clip, per model, with what it is made of.

    python tests/benchmarks/bench_memory.py [--video PATH] [--yolox PATH] [--realtime]

Every figure comes from a fresh Python process, measured in this run:

1. imports: the RSS each library adds, imported one after the other in one process;
2. ONNX Runtime options: peak RSS and CPU ms/frame of a bare session per model with the CPU arena
   and memory patterns on and off (the agent's choice is the row marked *);
3. `retail-agent run` on the clip (the demo's lines and zone, counted to the end; ``--realtime``
   at its native 10 fps, else as fast as it decodes) per model: as the agent runs it, without the
   single malloc arena (``agent.runtime.memory``), and with pandas hidden (sqlite-utils
   imports pandas when it is installed; a device install does not have it, this dev environment
   does). The baseline is a bare Python importing the same libraries, measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
SSD = REPO / "models" / "ssdlite_mobilenet_v2_pedestrian.onnx"

LIBRARIES = [
    "numpy",
    "cv2",
    "onnxruntime",
    "pydantic",
    "agent.config",
    "sqlite_utils",
    "cryptography.hazmat.primitives.asymmetric.ed25519",
    "paho.mqtt.client",
    "zxingcpp",
    "agent.runtime.run",
]

IMPORTS = """
import importlib, sys
def rss():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024
last = rss()
print(f"python\\t{last:.1f}")
for name in sys.argv[1:]:
    importlib.import_module(name)
    now = rss()
    print(f"{name}\\t{now - last:.1f}")
    last = now
print(f"total\\t{last:.1f}")
"""

SESSION = """
import sys, time
import cv2, numpy as np, onnxruntime as ort
model, family, arena, pattern, video = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4] == "1", sys.argv[5]
options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
options.enable_cpu_mem_arena = arena
options.enable_mem_pattern = pattern
options.add_session_config_entry("session.intra_op.allow_spinning", "0")
session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
capture = cv2.VideoCapture(video)
def blob(image):
    if family == "ssd":
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)[None]
    scale = min(416 / image.shape[0], 416 / image.shape[1])
    canvas = np.full((416, 416, 3), 114, np.uint8)
    small = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)))
    canvas[: small.shape[0], : small.shape[1]] = small
    return np.ascontiguousarray(canvas.transpose(2, 0, 1)[None], dtype=np.float32)
session.run(None, {name: blob(capture.read()[1])})
cpu = 0.0
for _ in range(30):
    image = capture.read()[1]
    started = time.process_time()
    session.run(None, {name: blob(image)})
    cpu += time.process_time() - started
print(cpu / 30 * 1000)
"""

RUN = """
import sys
if "--no-pandas" in sys.argv:
    sys.modules["pandas"] = None  # import pandas now fails, as on a device install
if "--default-malloc" in sys.argv:
    import agent.runtime.memory
    agent.runtime.memory.limit_malloc_arenas = lambda *args: False
from agent.cli import main
sys.exit(main(["run", "--config", sys.argv[1]]))
"""

BASELINE = """
import sys
if "--no-pandas" in sys.argv:
    sys.modules["pandas"] = None
import numpy, cv2, onnxruntime, pydantic, sqlite_utils, paho.mqtt.client, zxingcpp
import cryptography.hazmat.primitives.asymmetric.ed25519
"""


def measure(args: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Peak RSS (MB), CPU seconds (user + system) and stdout of a child process."""
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO)
    assert process.stdout is not None
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(args[:3])}... failed with exit code {process.returncode}")
    return usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, out


def write_config(folder: Path, video: Path, model: str, family: str | None, realtime: bool) -> Path:
    demo = (REPO / "agent" / "demo.toml").read_text()
    detector = f'\n[detector]\nmodel = "{model}"\n' + (f'family = "{family}"\n' if family else "")
    text = demo.replace(
        "[camera]\n", f'[camera]\nsource = "{video}"\nrealtime = {"true" if realtime else "false"}\n', 1
    ).replace("[device]\n", f'[device]\nstate_dir = "{folder / "state"}"\n', 1)
    path = folder / f"{Path(model).stem}.toml"
    path.write_text(text + detector)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=SHARED / "data" / "vtest.avi")
    parser.add_argument("--yolox", type=Path, default=SHARED / "models" / "yolox_nano.onnx")
    parser.add_argument("--realtime", action="store_true", help="at the clip's 10 fps (80 s per run)")
    args = parser.parse_args()
    python = sys.executable

    print("1. RSS each import adds (MB), in this order, in one process")
    _, _, out = measure([python, "-c", IMPORTS, *LIBRARIES])
    for line in out.splitlines():
        name, mb = line.split("\t")
        print(f"   {name:<52}{float(mb):>7.1f}")

    models: list[tuple[str, Path, str]] = [("ssdlite-pedestrian", SSD, "ssd")]
    if args.yolox.is_file():
        models.append(("yolox_nano", args.yolox, "yolox"))
    print("\n2. ONNX Runtime session options: peak RSS (MB) and CPU ms/frame over 30 frames (* = the agent's)")
    print(f"   {'model':<22}{'cpu arena':>10}{'mem pattern':>12}{'peak MB':>9}{'ms/frame':>10}")
    for name, path, family in models:
        for arena in (True, False):
            for pattern in (True, False):
                peak, _, out = measure(
                    [python, "-c", SESSION, str(path), family, str(int(arena)), str(int(pattern)), str(args.video)]
                )
                mark = " *" if arena and not pattern else ""
                print(f"   {name:<22}{arena!s:>10}{pattern!s:>12}{peak:>9.1f}{float(out):>10.1f}{mark}")

    print("\n3. retail-agent run on the clip: peak RSS (MB) and CPU s")
    baseline, base_cpu, _ = measure([python, "-c", BASELINE])
    print(f"   {'baseline: python importing the same libraries':<58}{baseline:>8.1f}{base_cpu:>8.1f}")
    bare, bare_cpu, _ = measure([python, "-c", BASELINE, "--no-pandas"])
    print(f"   {'baseline without pandas':<58}{bare:>8.1f}{bare_cpu:>8.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, path, family in models:
            config = write_config(Path(tmp), args.video, name if family == "ssd" else str(path), family, args.realtime)
            variants = [
                ("as it runs", []),
                ("with glibc's default malloc arenas", ["--default-malloc"]),
                ("without pandas (a device install)", ["--no-pandas"]),
            ]
            for label, flags in variants:
                env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
                peak, cpu, _ = measure([python, "-c", textwrap.dedent(RUN), str(config), *flags], env=env)
                row = f"{name}: {label}"
                base = bare if "--no-pandas" in flags else baseline
                print(f"   {row:<58}{peak:>8.1f}{cpu:>8.1f}   {peak - base:+.1f} MB over its baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
