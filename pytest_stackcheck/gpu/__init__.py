"""GPU checks: NVML readings, driver consistency and a CUDA driver-API smoke test.

The readings are taken by two self-contained scripts that run in a fresh
process on the machine that has the GPU (this one, or the stack's host over
ssh) and print JSON:

    probe_script.py   NVML, kernel module version, /dev/nvidia-uvm, kernel log
    cuda_smoke.py     cuInit, 256 MiB round trip, a PTX kernel, bandwidth

``runner`` starts them with a timeout and parses their output into the
dataclasses of ``readings``. ``judge`` compares those against the profile's
``[gpu]`` table (``settings``) and returns the problems found. ``kubernetes``
checks the GPUs a cluster advertises and runs a pod that requests one.
"""
