#!/usr/bin/env python3
"""Include lint for blockserve's layering rules that the compiler cannot see.

CMake's per-layer include paths already make a lower layer's include of a higher layer fail
to compile (tests/layering). This lint adds the source-level rules:
  * no relative "../" includes (they would bypass the per-layer include paths);
  * kernels/cpu/ and kernels/cuda/ headers are seen only by kernels/ and by models/, which
    wires the backends (and tools/, tests/);
  * engine/api/ (the ModelRunner interface) is the one part of engine/ that models/ sees;
  * generated protos (*.pb.h) are included only in server/ (and tools/, tests/);
  * each layer includes only the layers DESIGN.md allows.
Usage: check_includes.py ROOT | check_includes.py --self-test
"""
import os
import re
import sys
import tempfile

LAYERS = ["base", "kernels", "engine_api", "models", "engine", "server", "trainer", "proto"]
ALLOWED = {
    "base": {"base"},
    "kernels": {"base", "kernels"},
    "engine_api": {"base", "engine_api"},
    "models": {"base", "kernels", "engine_api", "models"},
    "engine": {"base", "engine_api", "engine"},
    "server": {"base", "engine_api", "engine", "server", "models", "kernels"},  # models/kernels: wiring only
    "trainer": {"base", "kernels", "models", "trainer"},
}
SERVER_WIRING_FILES = ("server/main.cc", "server/model_loading.cc")
INCLUDE_RE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
SOURCE_EXT = (".h", ".cc", ".cu", ".cuh")


def check_file(root, rel):
    errors = []
    layer = rel.split("/", 1)[0]
    if rel.startswith("engine/api/"):
        layer = "engine_api"
    with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            m = INCLUDE_RE.match(line)
            if not m:
                continue
            inc = m.group(1)
            where = f"{rel}:{lineno}: #include \"{inc}\""
            if ".." in inc.split("/"):
                errors.append(f"{where}: relative '..' include bypasses the layer include paths")
                continue
            target = "engine_api" if inc.startswith("engine/api/") else inc.split("/", 1)[0]
            if inc.endswith(".pb.h") and layer not in ("server", "tools", "tests"):
                errors.append(f"{where}: generated protos stay inside server/")
            if target == "kernels" and (inc.startswith("kernels/cpu/") or inc.startswith("kernels/cuda/")):
                if layer not in ("kernels", "models", "tools", "tests") and not rel.startswith("server/main"):
                    errors.append(f"{where}: kernels/cpu and kernels/cuda are private to kernels/ and models/")
            if layer in ALLOWED and target in LAYERS and target not in ALLOWED[layer]:
                errors.append(f"{where}: layer '{layer}' must not include layer '{target}'")
            if layer == "server" and target in ("models", "kernels") and rel not in SERVER_WIRING_FILES:
                errors.append(f"{where}: only server wiring files may include {target}/")
    return errors


def check_tree(root):
    errors = []
    for top in [l for l in ALLOWED if l != "engine_api"] + ["tools", "tests"]:
        base = os.path.join(root, top)
        for dirpath, _, files in os.walk(base):
            for name in sorted(files):
                if name.endswith(SOURCE_EXT):
                    rel = os.path.relpath(os.path.join(dirpath, name), root)
                    errors.extend(check_file(root, rel))
    return errors


def self_test():
    cases = {
        "base/bad1.h": '#include "engine/engine.h"\n',
        "models/bad2.cc": '#include "../engine/engine.h"\n',
        "engine/bad3.cc": '#include "kernels/cpu/rms_norm.h"\n',
        "models/bad4.cc": '#include "blockserve/v1/model_info.pb.h"\n',
        "server/bad5.cc": '#include "models/model_dir.h"\n',
        "trainer/ok.cc": '#include "models/model_config.h"\n#include "base/status.h"\n',
        "models/ok2.cc": '#include "engine/api/model_runner.h"\n#include "kernels/cpu/matvec.h"\n',
        "models/bad6.cc": '#include "engine/sampler.h"\n',
        "engine/api/bad7.h": '#include "engine/sampler.h"\n',
    }
    with tempfile.TemporaryDirectory() as root:
        for rel, text in cases.items():
            os.makedirs(os.path.join(root, os.path.dirname(rel)), exist_ok=True)
            with open(os.path.join(root, rel), "w") as f:
                f.write(text)
        errors = check_tree(root)
    flagged = {e.split(":", 1)[0] for e in errors}
    want = {rel for rel in cases if "bad" in rel}
    if flagged != want:
        print(f"self-test FAILED: flagged {sorted(flagged)}, expected {sorted(want)}")
        return 1
    print(f"self-test ok: {len(errors)} violations found in {len(want)} bad files, clean file passed")
    return 0


def main():
    if len(sys.argv) == 2 and sys.argv[1] == "--self-test":
        return self_test()
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    errors = check_tree(sys.argv[1])
    for e in errors:
        print(e)
    print(f"include lint: {len(errors)} violation(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
