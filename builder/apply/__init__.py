"""Day two: compare running nodes with the cluster file's plan (`status`) and bring them to it (`apply`).

The plan is the image build's own render plan, per node (`desired.py`); the node is read and
written by a small agent script run with sudo over SSH (`node_agent.py`, `transport.py`); the
comparison (`drift.py`) and the restart order (`restarts.py`) are ours.
"""
