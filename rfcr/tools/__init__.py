"""The console entry points (``rfcr-*``, listed in setup.py).

For the commands only (importing :mod:`rfcr` changes no warning filter), the third-party
deprecation warnings every command would print before its own output are silenced, each
by a filter on its exact message: every other warning still shows.
"""
import warnings

# setuptools warns at each import of pkg_resources, which mmengine 0.10.7 makes when it
# resolves ``mmdet::`` config bases (mmengine/utils/package_utils.py, lazily: after this).
warnings.filterwarnings('ignore', message=r'pkg_resources is deprecated as an API',
                        category=UserWarning)
