"""Reading this machine's NVIDIA GPUs: which ones this process was given (an inherited
``CUDA_VISIBLE_DEVICES``), their memory and utilisation, and the processes on them.

It sits just above the foundation: the scheduler, the status views and ``pbtrun gpus`` all read
the GPUs through :func:`pbtrun.devices.inventory.read_inventory`. Importing the package loads
nothing: NVML (``pynvml``) is imported only where a driver is there to answer it.
"""
