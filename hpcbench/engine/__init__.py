"""One run: site configuration, suites and baselines, the plan, the lock, the runner and its child,
verdicts, the record and where records live.
"""
