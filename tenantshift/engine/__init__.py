"""The engine: planning, the apply graph, the walker, the journal and the apply lock."""
