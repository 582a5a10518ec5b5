"""Memory measurement shared by the benchmarks and the memory tests."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["peak_live_bytes"]


def peak_live_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes of tensor memory allocated and still live at any point while ``fn()`` runs
    (CPU), from the PyTorch profiler's allocation events, in the order they happened.

    Memory held before ``fn`` starts is not counted, so this is what ``fn`` itself adds.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
        key=lambda e: e.start_ns(),
    )
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return peak
