"""Only the C extension lives here; everything else is in pyproject.toml.

`cacheshim._fastread` is optional: without a compiler the install still succeeds and the
shim uses the Python twin in cacheshim/fastread.py (slower, same bytes).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "cacheshim._fastread",
            sources=["cacheshim/_fastread.c"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
