"""Only the C extension lives here; everything else is in pyproject.toml.

`cacheshim.protocol._fastread` serves plain GETs in C. It is built by default, and a failed build
fails the install: a memlog without it serves GET on the slower Python twin
(cacheshim/protocol/fastread.py, same bytes), which nobody would notice. To go without it on purpose
(no compiler), install with MEMLOG_PURE_PYTHON=1; tests/cacheshim/protocol/test_fastread.py then
accepts its absence, and fails on it otherwise.
"""

import os

from setuptools import Extension, setup

PURE_PYTHON = os.environ.get("MEMLOG_PURE_PYTHON") == "1"

setup(
    ext_modules=[]
    if PURE_PYTHON
    else [
        Extension(
            "cacheshim.protocol._fastread",
            sources=["cacheshim/protocol/_fastread.c"],
            extra_compile_args=["-O2"],
        )
    ]
)
