"""Allow ``python -m mitokit``."""

from mitokit.cli import main

if __name__ == "__main__":
    main()
