"""Runtimes (stateful and FaaS) behind the ``Invoker`` interface, and cluster start-up."""
