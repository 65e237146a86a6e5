"""``python -m hymoerec.cli``, as ``torchrun -m hymoerec.cli`` runs it (docs/scaling.md)."""

import sys

from hymoerec.cli import main

sys.exit(main())
