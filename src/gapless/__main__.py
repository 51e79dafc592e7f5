"""Allow ``python -m gapless``."""

from gapless.cli.main import main

main()
