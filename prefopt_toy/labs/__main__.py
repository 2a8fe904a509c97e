"""``python -m prefopt_toy.labs build [--check]``: regenerate the student versions of the labs."""

from prefopt_toy.labs import main

if __name__ == "__main__":
    raise SystemExit(main())
