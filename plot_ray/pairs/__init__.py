"""On-policy preference pairs for problems with checkable answers (``plot-ray make-pairs``).

``runner`` drives it (problems → samples on the engine pool → graded pairs on disk);
``grading`` holds the pure part: grading samples and pairing them.
"""

from plot_ray.pairs.runner import pairs_dir, run_make_pairs

__all__ = ["pairs_dir", "run_make_pairs"]
