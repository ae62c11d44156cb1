"""dQ in CTA pairs: which key blocks' contributions a wrong dQ holds. For each (head, 64-row step, 32-row half,
64-column half) block of dQ that is off against float64, the least-squares coefficients c_j of its error over the
float64 contributions dq_j of the key blocks j (e = sum_j c_j dq_j: -1 a block's contribution missing, +1 doubled)."""
import os
import sys
import torch
sys.path.insert(0, "python")
import theria  # noqa: E402

torch.manual_seed(0)
cases = [(77, 250), (128, 256), (64, 256), (256, 512), (77, 640)]
if os.environ.get("PAIR_CASES"):
    cases = [cases[int(i)] for i in os.environ["PAIR_CASES"].split(",")]
for L, S in cases:
    B, H, D = 1, 2, 128
    q, k, v, do = (torch.randn(B, H, n, D, device="cuda", dtype=torch.bfloat16) for n in (L, S, S, L))
    x = [t.clone().requires_grad_() for t in (q, k, v)]
    out = theria.sdpa(*x, backend="fused")
    g = torch.autograd.grad(out, x, do)
    torch.cuda.synchronize()
    qd, kd, vd, dod = (t.double() for t in (q, k, v, do))
    scale = D ** -0.5
    p = torch.softmax(qd @ kd.transpose(-1, -2) * scale, -1)
    o = p @ vd
    dp = dod @ vd.transpose(-1, -2)
    ds = p * (dp - (dod * o).sum(-1, keepdim=True))
    dq = ds @ kd * scale
    dk = ds.transpose(-1, -2) @ qd * scale
    dv = p.transpose(-1, -2) @ dod
    nblk = (S + 127) // 128
    parts = [ds[..., j * 128:(j + 1) * 128] @ kd[..., j * 128:(j + 1) * 128, :] * scale for j in range(nblk)]
    rel = lambda a, b: ((a.double() - b).abs().max() / b.abs().max()).item()
    print(f"L={L} S={S} ({nblk} key blocks): err dq {rel(g[0], dq):.3g} dk {rel(g[1], dk):.3g} dv {rel(g[2], dv):.3g}")
    e = g[0].double() - dq
    top = dq.abs().max()
    shown = 0
    for h in range(H):
        for r0 in range(0, L, 32):
            for c0 in (0, 64):
                blk = (slice(r0, min(r0 + 32, L)), slice(c0, c0 + 64))
                eb = e[0, h][blk]
                if eb.abs().max() < 0.02 * top:
                    continue
                A = torch.stack([pj[0, h][blk].flatten() for pj in parts], 1)
                c = torch.linalg.lstsq(A, eb.flatten().unsqueeze(1)).solution.flatten()
                res = (eb.flatten() - A @ c).abs().max() / eb.abs().max()
                if shown < 24:
                    print(f"  head {h} rows {r0}-{blk[0].stop - 1} cols {c0}-{c0 + 63}: max err "
                          f"{(eb.abs().max() / top).item():.3f}, coeffs {[round(x, 2) for x in c.tolist()]}, "
                          f"residual {res.item():.2f}")
                shown += 1
    if shown > 24:
        print(f"  ... {shown} blocks off")
