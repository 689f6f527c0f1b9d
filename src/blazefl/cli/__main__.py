"""``python -m blazefl.cli``: the same as the ``blazefl`` command."""

from blazefl.cli import main

if __name__ == "__main__":
    main()
