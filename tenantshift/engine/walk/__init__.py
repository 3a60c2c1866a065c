"""The apply graph and its walk: typed nodes, the graph built from a plan, the walker with its
limits and per-key turns, the resource executor, the pair pool, and the context every node
gets. It knows no workload kind: ``engine/apply.py`` dispatches workload nodes to
``engine/workloads``, as Terraform's walker only asks vertices to run."""
