"""The process layer: what this builder process holds on the machine, below both the cache and the image engine.

- `signals`: SIGINT/SIGTERM held while a resource is taken, and turned into an unwinding exception;
- `procfs`: what /proc and /sys say (mount points, chrooted processes, loop backing files, live pids);
- `record`: the per-process resource record under /run/clusterbake, and scratch directories;
- `recovery`: releasing what a dead builder's record lists.
"""
