"""``python -m robench`` (what ``torchrun -m robench`` runs) is the ``robench`` command."""

from robench.cli import main

raise SystemExit(main())
