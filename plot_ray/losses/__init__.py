"""Losses: the vanilla preference methods, the PLOT term and DEFT's, in pure PyTorch (no Ray).

docs/plot.md is the specification: every formula and config key that these modules implement.

- :mod:`~plot_ray.losses.ot`: 1-D Wasserstein-1 (:func:`wasserstein_1d`), the precomputed
  :class:`TokenGeometry`, the exact POT reference (:class:`ExactGeometry`) and
  :func:`build_geometry` (config -> geometry, normalisation included).
- :mod:`~plot_ray.losses.preference`: :func:`preference_distribution` and
  :class:`PreferenceTargets` (the data pipeline's counts -> PLOT targets).
- :mod:`~plot_ray.losses.plot`: :class:`PlotLoss` (W1 / KL / JS, sequence / token, global /
  anchored): a plain-autograd reference path and the fused path training runs.
- :mod:`~plot_ray.losses.methods`: SFT, DPO, IPO, PRO, AOT, SimPO, ORPO and their registry
  (the one list of methods; the config validates against it).
- :mod:`~plot_ray.losses.logprobs`: logits + labels -> per-token / per-sequence log-probs.
- :mod:`~plot_ray.losses.deft`: DEFT's distribution reward (:class:`DeftLoss`,
  :func:`distribution_reward`) and its data filter's selection (:func:`select_top_fraction`).
- :mod:`~plot_ray.losses.objective`: ``L_vanilla + alpha * L_PLOT + deft.weight * L_DEFT``
  (:func:`build_objective`).
- :mod:`~plot_ray.losses.chunked`: the memory-lean kernel both of the above run on, and
  :data:`IGNORE_INDEX` (-100, the label of positions no loss reads).
"""

from plot_ray.losses.chunked import IGNORE_INDEX
from plot_ray.losses.deft import (
    DeftLoss,
    distribution_reward,
    preference_scores,
    select_top_fraction,
)
from plot_ray.losses.logprobs import SequenceLogProbs, sequence_logprobs, shift_labels
from plot_ray.losses.methods import (
    METHODS,
    MethodBatch,
    MethodSpec,
    aot_loss,
    dpo_loss,
    get_method,
    ipo_loss,
    num_responses,
    orpo_loss,
    pro_loss,
    register_method,
    sft_loss,
    simpo_loss,
)
from plot_ray.losses.objective import (
    ObjectiveOutput,
    PreferenceObjective,
    ReferenceStats,
    build_objective,
)
from plot_ray.losses.ot import (
    EXACT_MAX_VOCAB,
    ExactGeometry,
    TokenGeometry,
    build_geometry,
    exact_wasserstein,
    wasserstein_1d,
)
from plot_ray.losses.plot import JSDivergence, KLDivergence, PlotLoss, anchored_target
from plot_ray.losses.preference import (
    PreferenceTargets,
    frequency_difference,
    preference_distribution,
    preference_tilt,
)

__all__ = [
    "IGNORE_INDEX",
    "wasserstein_1d",
    "build_geometry",
    "EXACT_MAX_VOCAB",
    "TokenGeometry",
    "ExactGeometry",
    "exact_wasserstein",
    "preference_distribution",
    "preference_tilt",
    "frequency_difference",
    "PreferenceTargets",
    "PlotLoss",
    "KLDivergence",
    "JSDivergence",
    "anchored_target",
    "DeftLoss",
    "distribution_reward",
    "preference_scores",
    "select_top_fraction",
    "sft_loss",
    "dpo_loss",
    "ipo_loss",
    "pro_loss",
    "aot_loss",
    "simpo_loss",
    "orpo_loss",
    "MethodBatch",
    "MethodSpec",
    "METHODS",
    "register_method",
    "get_method",
    "num_responses",
    "SequenceLogProbs",
    "sequence_logprobs",
    "shift_labels",
    "ObjectiveOutput",
    "PreferenceObjective",
    "ReferenceStats",
    "build_objective",
]
