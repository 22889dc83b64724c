"""Elasticity policies (issue #12): partition placement and autoscaling, as pure code."""
