"""The control plane in rooms, behind the thin directory actor (``fluentfn/directory.py``).

Imports run one way: ``_counters`` <- ``_hosts`` <- ``_mover`` <- ``_autoscaler``;
``_registry`` stands alone. Decisions (where partitions go, how many hosts) are the pure
policies of ``fluentfn.elastic``; these rooms carry them out.
"""
