"""Only the C extensions live here; everything else is in pyproject.toml.

`cacheshim._fastread` and `cacheshim.snapshot._native` are optional: without a compiler the
install still succeeds and the Python twins in cacheshim/fastread.py and
cacheshim/snapshot/crc64.py and lzf.py take their place (slower, same results).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "cacheshim._fastread",
            sources=["cacheshim/_fastread.c"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
        Extension(
            "cacheshim.snapshot._native",
            sources=["cacheshim/snapshot/_native.c"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
    ]
)
