"""EPITOME classifiers (Sharma et al. 2020) for DIFF-EPITOME: the data and its fixed split (`data`), the bi- and
cross-encoder classifiers (`model`), and the training/evaluation recipe (`train`). Nothing heavy is imported
here; see README.md in this folder for the recipe and its numbers."""

MECHANISMS = ("ER", "IP", "EX")
