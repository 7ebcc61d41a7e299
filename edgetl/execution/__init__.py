"""Where measurements run: the SSH transport to a device (``ssh``) and the runner copied to it (``device_runner``).

Import-light on purpose: nothing here is imported until a caller asks for ``edgetl.execution.ssh``.
"""
