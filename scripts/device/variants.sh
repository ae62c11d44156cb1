#!/usr/bin/env bash
# Kernel variants (compile-time launch shapes: the THERIA_* macros of src/fused/tile_policy.h) compared
# in one device call without building there:
#   here:    bash scripts/device/variants.sh build NAME "-DTHERIA_BJ_MIN_BLOCKS=3 ..." [NAME FLAGS ...]
#            rebuilds the CUDA objects of build/ with those flags and packs .device/variants/NAME.tar.xz
#            (the same torch 2.11.0+cu130 as the GPU machine); build/ is left with the default flags.
#   here:    bash scripts/device/variants.sh objects NAME "-DTHERIA_DQ_BY_TMA=0" sdpa_bwd_tc_hdim64.cu ...
#            a variant of a built build/ in which only the named generated kernel sources (build/src/fused/) are
#            compiled again with those flags, in a copy (build-var-NAME), relinked and packed as NAME.tar.xz: minutes
#            where `build` recompiles every kernel. Only for flags that the named sources alone read.
#   device:  bash scripts/device/variants.sh run [op_times.py args]
#            per packed variant: the per-op times and errors of scripts/device/op_times.py, then
#            `theria bench --mode jvp,hvp`.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
case ${1:-} in
  build)
    shift
    mkdir -p .device/variants
    while [ $# -ge 2 ]; do
      name=$1 flags=$2; shift 2
      cmake -S . -B build -DCMAKE_CUDA_FLAGS="$flags" >/dev/null || exit 1
      cmake --build build -j "${THERIA_JOBS:-2}" --target theria_lib theria_cli >/tmp/variant_$name.log 2>&1 ||
        { grep -m5 -E 'error' /tmp/variant_$name.log; echo "variant $name failed to build"; continue; }
      tar -C build -cJf ".device/variants/$name.tar.xz" libtheria.so theria
      echo "packed $name ($flags)"
    done
    cmake -S . -B build -DCMAKE_CUDA_FLAGS="" >/dev/null && cmake --build build -j "${THERIA_JOBS:-2}" >/dev/null
    ;;
  objects)
    name=$2 flags=$3; shift 3
    copy=build-var-$name
    bash scripts/device/check_build_deps.sh build || exit 1  # (stale objects would be copied into the variant)
    rm -rf "$copy" && cp -a build "$copy" || exit 1
    # THERIA_JOBS (default 2) sources at a time; each one's ptxas report in build-var-NAME/TU.log.
    jobs=${THERIA_JOBS:-2} failed=0
    compile() {
      local obj=src/CMakeFiles/theria_fused_kernels.dir/fused/$1.o cmd
      cmd=$(ninja -C build -t commands "$obj" | tail -n 1)
      [[ "$cmd" == *nvcc* ]] || { echo "no nvcc command for $obj"; return 1; }
      (cd "$copy" && eval "${cmd/nvcc /nvcc $flags }") >"$copy/$1.log" 2>&1 || { echo "variant $name: $1 failed"; return 1; }
    }
    for tu in "$@"; do
      while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || failed=1; done
      compile "$tu" &
    done
    while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || failed=1; done
    cat "$copy"/*.cu.log
    [ "$failed" = 0 ] || exit 1
    link=$(ninja -C build -t commands libtheria.so | tail -n 1)
    (cd "$copy" && eval "$link") || exit 1
    mkdir -p .device/variants
    tar -C "$copy" -cJf ".device/variants/$name.tar.xz" libtheria.so theria
    echo "packed $name ($flags: $*)"
    ;;
  run)
    shift
    out=${OUT:-$root/.device/out}
    mkdir -p "$out"
    torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
    for pack in .device/variants/*.tar.xz; do
      name=$(basename "$pack" .tar.xz)
      dir=build-var-$name
      mkdir -p "$dir" && tar -C "$dir" -xJf "$pack"
      echo "==== variant $name"
      export LD_LIBRARY_PATH="$root/$dir:$torch_lib:/usr/local/cuda/lib64" THERIA_LIBRARY="$root/$dir/libtheria.so"
      PYTHONPATH="$root/python" python3 scripts/device/op_times.py "$@" 2>&1 | tee "$out/ops_$name.txt" | grep -E 'worst|times|Error|error'
      for d in ${THERIA_VARIANT_DIMS:-64 128}; do
        "$dir/theria" bench --preset medium --head-dim "$d" --mode jvp,hvp --impl theria --iters 15 --warmup 3 \
          2>&1 | grep -E '^[0-9]' | cut -c1-60
      done
    done
    ;;
  *)
    sed -n 2,12p "$0"
    exit 2
    ;;
esac
