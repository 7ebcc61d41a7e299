"""``python -m edgetl.cli`` (and ``torchrun -m edgetl.cli``): the same entry point as the ``edgetl`` script."""

from edgetl.cli import main

main()
