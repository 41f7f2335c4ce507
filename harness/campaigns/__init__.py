"""Campaigns over many runs of the suite: the seeded-defect (mutant) campaign and the
first-bad-patch bisection."""
