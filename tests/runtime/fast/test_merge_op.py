"""loraplan::merge_lowrank (and its backward twin): operators torch.compile keeps whole (CPU: addmm)."""

from __future__ import annotations

import pytest
import torch

from loraplan.runtime.fast.merge_op import merge_lowrank, merge_lowrank_again


def _operands(dtype=torch.float32):
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(12, 20, generator=gen).to(dtype)
    return w, torch.randn(12, 3, generator=gen), torch.randn(3, 20, generator=gen)  # fp32 adapter masters


@pytest.mark.parametrize("op", [merge_lowrank, merge_lowrank_again])
def test_value_and_operator_contract(op):
    w, b, a = _operands()
    assert torch.allclose(op(w, b, a, 0.5), w + 0.5 * b @ a, atol=1e-6)
    torch.library.opcheck(op, (w, b, a, 0.5))
    low = op(w.double(), b, a, 2.0)
    assert low.dtype == torch.float64 and torch.allclose(low, w.double() + 2.0 * b.double() @ a.double())


def test_traced_as_one_node_without_graph_breaks():
    w, b, a = _operands()
    seen = []

    def backend(gm, example_inputs):
        seen.extend(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm

    fn = torch.compile(lambda w, b, a: torch.ops.loraplan.merge_lowrank(w, b, a, 0.25) * 2, fullgraph=True,
                       backend=backend)  # fmt: skip
    assert torch.allclose(fn(w, b, a), 2 * (w + 0.25 * b @ a), atol=1e-5)
    assert any("merge_lowrank" in t for t in seen)
