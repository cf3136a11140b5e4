"""``python -m muselens`` is the ``muselens`` command."""

from muselens.cli import main

raise SystemExit(main())
