# The package metadata lives in pyproject.toml; setup.py exists only because setuptools
# takes cffi_modules here.
from setuptools import setup

setup(cffi_modules=["_native/build.py:ffibuilder"])
