"""Implicit MAML as PyTorch users would write it (Rajeswaran et al. 2019): torch.func.functional_call, theria.sdpa
inside an nn.Module, and the meta-gradient from conjugate gradient on Hessian-vector products, which go through
theria's double backward (PyTorch's fused SDPA backends have none). Lift `implicit_meta_gradient` into your code.

The same estimator in C++: lab/meta/estimators.h (`implicit:lambda=L,cg=N,tol=T`)."""
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

import theria
from test_maml_example import TinyAttentionClassifier


def inner_solve(model, theta, support, lam, steps, lr):
    """phi ~ argmin L_support(phi) + lam/2 ||phi - theta||^2 by gradient steps from theta, with no graph."""
    phi = {k: v.detach().clone().requires_grad_() for k, v in theta.items()}
    for _ in range(steps):
        loss = F.cross_entropy(functional_call(model, phi, (support[0],)), support[1])
        loss = loss + 0.5 * lam * sum(((phi[k] - theta[k].detach()) ** 2).sum() for k in phi)
        grads = torch.autograd.grad(loss, list(phi.values()))
        phi = {k: (v - lr * g).detach().requires_grad_() for (k, v), g in zip(phi.items(), grads)}
    return phi


def conjugate_gradient(hvp, b, iterations, tol):
    """Solves A x = b for symmetric positive definite A given as a product; returns x and the relative residual."""
    x = [torch.zeros_like(t) for t in b]
    r = [t.clone() for t in b]
    p = [t.clone() for t in b]
    rs = sum((t * t).sum() for t in r)
    b_norm = rs.sqrt()
    for _ in range(iterations):
        ap = hvp(p)
        alpha = rs / sum((u * v).sum() for u, v in zip(p, ap))
        x = [u + alpha * v for u, v in zip(x, p)]
        r = [u - alpha * v for u, v in zip(r, ap)]
        rs_next = sum((t * t).sum() for t in r)
        if rs_next.sqrt() <= tol * b_norm:
            break
        p = [u + (rs_next / rs) * v for u, v in zip(r, p)]
        rs = rs_next
    residual = [u - v for u, v in zip(b, hvp(x))]
    return x, (sum((t * t).sum() for t in residual).sqrt() / b_norm).item()


def implicit_meta_gradient(model, theta, support, query, lam=2.0, inner_steps=5, inner_lr=0.1, cg_iterations=5,
                           tol=1e-10):
    """d L_query(phi*(theta)) / d theta = (I + H / lam)^-1 grad L_query(phi), H the support Hessian at phi."""
    phi = inner_solve(model, theta, support, lam, inner_steps, inner_lr)
    names = list(phi)
    b = torch.autograd.grad(F.cross_entropy(functional_call(model, phi, (query[0],)), query[1]), list(phi.values()))
    support_grad = torch.autograd.grad(F.cross_entropy(functional_call(model, phi, (support[0],)), support[1]),
                                       list(phi.values()), create_graph=True)  # keeps theria's backward graph

    def hvp(v):  # (I + H / lam) v, H v by differentiating <grad, v> again: theria's double backward
        hv = torch.autograd.grad(support_grad, list(phi.values()), grad_outputs=v, retain_graph=True)
        return [u + h / lam for u, h in zip(v, hv)]

    x, residual = conjugate_gradient(hvp, list(b), cg_iterations, tol)
    return dict(zip(names, x)), residual, support_grad


def problem(dtype=torch.float64, backend="explicit", dim=8):
    torch.manual_seed(0)
    model = TinyAttentionClassifier(dim=dim, heads=2, classes=3, backend=backend).to(dtype)
    theta = {k: v.detach().requires_grad_() for k, v in model.named_parameters()}
    # Drawn in float32 and cast: the same numbers in every dtype (randn in float64 draws other ones).
    support = (torch.randn(6, 5, dim).to(dtype), torch.randint(0, 3, (6,)))
    query = (torch.randn(6, 5, dim).to(dtype), torch.randint(0, 3, (6,)))
    return model, theta, support, query


def test_cg_on_theria_hessian_vector_products_reaches_the_dense_solve():
    model, theta, support, query = problem()
    lam = 2.0
    got, residual, _ = implicit_meta_gradient(model, theta, support, query, lam=lam, cg_iterations=200, tol=1e-13)
    assert residual <= 1e-12

    # The oracle: the same phi, the dense Hessian of the support loss from torch.func, a direct solve.
    phi = inner_solve(model, theta, support, lam, 5, 0.1)
    names = list(phi)
    shapes = [phi[k].shape for k in names]
    sizes = [phi[k].numel() for k in names]

    def unflatten(flat):
        return {k: t.view(s) for k, t, s in zip(names, torch.split(flat, sizes), shapes)}

    def support_loss(flat):
        return F.cross_entropy(functional_call(model, unflatten(flat), (support[0],)), support[1])

    flat_phi = torch.cat([phi[k].detach().reshape(-1) for k in names])
    h = torch.autograd.functional.hessian(support_loss, flat_phi)
    b = torch.autograd.grad(F.cross_entropy(functional_call(model, phi, (query[0],)), query[1]), list(phi.values()))
    x = torch.linalg.solve(torch.eye(h.shape[0], dtype=h.dtype) + h / lam, torch.cat([t.reshape(-1) for t in b]))
    flat_got = torch.cat([got[k].reshape(-1) for k in names])
    assert (flat_got - x).norm() / x.norm() <= 1e-8


def test_the_hessian_vector_products_go_through_theria_double_backward():
    model, theta, support, query = problem()
    _, _, support_grad = implicit_meta_gradient(model, theta, support, query, cg_iterations=2)
    report = theria.inspect_graph(sum(g.sum() for g in support_grad))
    assert report.sdpa_double_backward_nodes >= 1, report.describe()


def test_few_cg_iterations_leave_a_residual_that_is_reported():
    model, theta, support, query = problem()
    _, residual, _ = implicit_meta_gradient(model, theta, support, query, cg_iterations=1, tol=1e-13)
    assert residual > 1e-6


@pytest.mark.gpu
def test_on_the_fused_backend_the_products_go_through_its_double_backward_and_match_float64():
    """The same estimator on CUDA with the fused kernels (float32; head dim 32): its Hessian-vector products go
    through theria::SdpaBwdBackward (the fused backward-JVP kernels), and the meta-gradient after 5 CG steps matches
    the float64 CPU computation of the same problem."""
    model, theta, support, query = problem(torch.float32, backend="fused", dim=64)
    model = model.cuda()
    theta = {k: v.detach().cuda().requires_grad_() for k, v in theta.items()}
    on_gpu = lambda s: (s[0].cuda(), s[1].cuda())  # noqa: E731
    got, _, support_grad = implicit_meta_gradient(model, theta, on_gpu(support), on_gpu(query), cg_iterations=5)
    report = theria.inspect_graph(sum(g.sum() for g in support_grad))
    assert "theria::SdpaBwdBackward" in report.second_order_node_names, report.describe()

    model64, theta64, support64, query64 = problem(torch.float64, backend="explicit", dim=64)
    want, _, _ = implicit_meta_gradient(model64, theta64, support64, query64, cg_iterations=5)
    flat = lambda d: torch.cat([t.reshape(-1).double().cpu() for t in d.values()])  # noqa: E731
    assert (flat(got) - flat(want)).norm() / flat(want).norm() <= 1e-3
