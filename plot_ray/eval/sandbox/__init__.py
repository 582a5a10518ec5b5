"""Coding evaluation by execution: completions run against hidden tests in a sandbox.

    execute.py   run_program / run_programs: one child process per program, limits, status
    launcher.py  the child: namespaces, read-only root, limits (a script, not imported)
    harness.py   runs the program inside and reports how it ended (a script, not imported)
    problems.py  code extraction; HumanEval and MBPP problems → programs
    passk.py     pass@k (unbiased estimator) and counts per status

What the sandbox contains and what it does not: README.md beside this file.
"""
