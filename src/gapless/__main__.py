"""Allow ``python -m gapless``."""

from gapless.cli.quick import main

main()
