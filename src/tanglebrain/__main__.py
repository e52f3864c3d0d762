"""``python -m tanglebrain``."""

from tanglebrain.cli import main

if __name__ == "__main__":
    main()
