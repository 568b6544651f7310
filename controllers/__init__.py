"""Reconcilers, one module per kind: observe actual state, decide, act through drivers, report.

Depends on the core (``nebula``) only; the kopf registrations live together in one module here.
"""
