"""The local stack and its operations: ``make run`` (supervisord, nginx, Flower, Redis),
the compose container entry point, fault injection (``make chaos``) and the ops CLIs.

It starts the other folders' programs by their command lines; ``loadtest`` starts a stack
only through ``stack.cluster.Cluster``'s public interface.
"""
