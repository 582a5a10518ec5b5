"""pass@k and the counts behind it.

For one problem with ``n`` sampled completions of which ``c`` pass, the unbiased estimator of
the chance that at least one of ``k`` completions passes (Chen et al., 2021, "Evaluating Large
Language Models Trained on Code") is ``1 - C(n-c, k) / C(n, k)``. The binomials overflow floats
for large ``n``; the same ratio is the product ``prod_{i=n-c+1}^{n} (1 - k/i)``, computed here.
pass@k of a set of problems is the mean over problems. With greedy decoding (``n = 1``) pass@1
is the fraction of problems solved.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from plot_ray.eval.sandbox.execute import STATUSES, SandboxResult


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with ``n`` samples, ``c`` of them passing."""
    if not (n >= 1 and 0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass@k needs 1 <= k <= n and 0 <= c <= n, got n={n}, c={c}, k={k}")
    if n - c < k:  # every draw of k holds a passing sample
        return 1.0
    failing_only = 1.0
    for i in range(n - c + 1, n + 1):
        failing_only *= 1.0 - k / i
    return 1.0 - failing_only


def summarize(
    results: Mapping[str, Sequence[SandboxResult]], ks: Sequence[int] = (1,)
) -> dict[str, object]:
    """``{"pass@k": mean over problems, ..., "counts": {status: n}, "problems", "samples"}``
    from each problem's sample results. A ``k`` larger than some problem's sample count is an
    error (that problem has no pass@k)."""
    if not results:
        raise ValueError("no problems to summarize")
    counts = Counter({status: 0 for status in STATUSES})
    passed = {}
    for task_id, samples in results.items():
        counts.update(r.status for r in samples)
        passed[task_id] = (len(samples), sum(r.status == "passed" for r in samples))
    summary: dict[str, object] = {}
    for k in ks:
        scores = [pass_at_k(n, c, k) for n, c in passed.values()]
        summary[f"pass@{k}"] = sum(scores) / len(scores)
    summary["counts"] = dict(counts)
    summary["problems"] = len(results)
    summary["samples"] = sum(n for n, _ in passed.values())
    return summary
