"""The `theria` console command of an installed package: runs the `theria` program installed beside the library."""
import importlib.util
import os
import sys
from pathlib import Path


def main():
    program = Path(__file__).resolve().parent / "bin" / "theria"
    if not program.is_file():
        sys.exit(f"theria: {program} not found (a package installed without its program?); "
                 "reinstall with pip install --no-build-isolation .")
    # torch's libraries where this Python finds torch (the program's RPATH names torch/lib beside the package, which
    # is where pip puts it, but not where a torch from another site-packages lives).
    torch = importlib.util.find_spec("torch")
    if torch is not None and torch.origin:
        torch_lib = str(Path(torch.origin).parent / "lib")
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (torch_lib, os.environ.get("LD_LIBRARY_PATH")) if p)
    # The figures are drawn by this Python (it has the package's dependencies), unless THERIA_PYTHON says otherwise.
    os.environ.setdefault("THERIA_PYTHON", sys.executable)
    os.execv(program, [str(program), *sys.argv[1:]])
