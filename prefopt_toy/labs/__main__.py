"""``python -m prefopt_toy.labs {release,grade}``: release the labs, or grade a folder of submissions."""

from prefopt_toy.labs import main

if __name__ == "__main__":
    raise SystemExit(main())
