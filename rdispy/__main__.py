"""``python -m rdispy`` runs the command line."""

from rdispy.cli import main

if __name__ == "__main__":
    main()
