"""What people see: the human plan, live apply progress, the DOT graph, journal status.

Views render what the engine returns; they never decide anything (Terraform's
``command/views``). JSON is rendered by the layers that own the contract (``plans.render``).
"""
