"""The type registry's durable copy, in Ray's key-value store (the GCS).

A directory that Ray restarts after a crash finds its types here, keyed by the cluster's
id (so a new cluster on the same namespace never inherits an old one's types), including
those no host had loaded yet and, in FaaS mode, all of them (there are no hosts to ask).
The GCS is inside Ray's trust boundary: Ray itself keeps pickled code there.
"""

from __future__ import annotations

import pickle

from .placement import ActorOptions

Entry = tuple[bytes, ActorOptions, frozenset[str]]
"""(pickled class and options, options, method names)."""

_KV_NAMESPACE = "fluentfn"


def _prefix(cluster_id: str) -> bytes:
    return f"types/{cluster_id}/".encode()


def keep(cluster_id: str, name: str, entry: Entry) -> None:
    """Write ``name``'s registration (blocking: call from a worker thread)."""
    from ray.experimental import internal_kv

    internal_kv._internal_kv_put(_prefix(cluster_id) + name.encode(), pickle.dumps(entry), namespace=_KV_NAMESPACE)


def kept(cluster_id: str) -> dict[str, Entry]:
    """Every registration kept for the cluster (blocking)."""
    from ray.experimental import internal_kv

    prefix = _prefix(cluster_id)
    found: dict[str, Entry] = {}
    for key in internal_kv._internal_kv_list(prefix, namespace=_KV_NAMESPACE):
        value = internal_kv._internal_kv_get(key, namespace=_KV_NAMESPACE)
        if value is not None:
            found[key[len(prefix) :].decode()] = pickle.loads(value)  # written by this cluster's directory
    return found


def drop(cluster_id: str) -> None:
    """Forget the cluster's registrations (at shutdown; blocking)."""
    from ray.experimental import internal_kv

    for key in internal_kv._internal_kv_list(_prefix(cluster_id), namespace=_KV_NAMESPACE):
        internal_kv._internal_kv_del(key, namespace=_KV_NAMESPACE)
