"""The course's speed bench: ``make bench`` (``python -m bench``) prints one table of ratios.

Each figure compares two ways of doing the same work, timed in the same process, taking
turns, as the median of several repeats — so a ratio survives a machine that is busier
or slower than the one the figures in bench/results.json came from. See bench/README.md.
"""
