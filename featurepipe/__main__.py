"""``python -m featurepipe``: the same as the ``featurepipe`` command."""

from featurepipe.cli import main

if __name__ == "__main__":
    main()
