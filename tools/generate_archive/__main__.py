"""`python -m tools.generate_archive`: see `tools.generate_archive.cli`."""

from tools.generate_archive.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
