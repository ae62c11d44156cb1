// Shared-memory barriers (mbarrier, sm_90) and register hand-over (setmaxnreg) for the warp-specialised
// pipelines: producer threads fill a stage and arrive on its "full" barrier; the consumers wait for that phase,
// read the stage, and arrive on its "empty" barrier, which the producers wait for before filling it again. A
// barrier completes a phase when its expected number of arrivals is reached; waits name the phase by its parity
// (the k-th use of a stage waits for parity k & 1).
//
// Ordering: an arrive releases and a completed wait acquires at CTA scope, so generic-proxy writes before an
// arrive are visible after the wait. Tiles copied with cp.async and then read by wgmma (the async proxy) also
// need the copying thread's fence_proxy_async() (wgmma.cuh) between the copy's completion and its arrive.
#pragma once

#include "fused/mma.cuh"

#include <cstdint>

namespace theria::kernels::cuda {

// One thread initialises; a __syncthreads() must follow before any other thread uses the barrier.
__device__ __forceinline__ void mbarrier_init(uint64_t* bar, int arrivals) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(arrivals) : "memory");
}

__device__ __forceinline__ void mbarrier_arrive(uint64_t* bar) {
  asm volatile("{\n.reg .b64 state;\nmbarrier.arrive.shared::cta.b64 state, [%0];\n}\n" ::"r"(smem_addr(bar))
               : "memory");
}

// Spins until the phase of the given parity has completed.
__device__ __forceinline__ void mbarrier_wait(uint64_t* bar, uint32_t parity) {
  const uint32_t addr = smem_addr(bar);
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(addr), "r"(parity)
        : "memory");
  } while (!done);
}

// Moves registers between the warpgroups of a CTA (setmaxnreg, sm_90a): every warp of a warpgroup executes the same
// call; an increase waits until decreases elsewhere have freed enough. The kernel's launch bounds fix the count each
// thread starts with.
template <int kRegs>
__device__ __forceinline__ void warpgroup_regs_increase() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}
template <int kRegs>
__device__ __forceinline__ void warpgroup_regs_decrease() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}

}  // namespace theria::kernels::cuda
