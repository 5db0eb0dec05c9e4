"""``python -m tusk_stack``: the ``tusk`` command, for environments without its script."""

from tusk_stack.cli import main

if __name__ == "__main__":
    main()
