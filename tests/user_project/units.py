"""Imported by mymodel: the user's modules import each other."""


def scaled(x):
    return 2.0 * x
