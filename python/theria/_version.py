# The one version of theria: the Python package and CMake's project (and so theriaConfigVersion.cmake) read it.
__version__ = "0.1.0"
