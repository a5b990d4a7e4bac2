"""Only the C extensions live here; everything else is in pyproject.toml.

`cacheshim.protocol._fastread` serves plain GETs in C and reads canonical requests;
`cacheshim._records` reads the shape of a plain log record for apply;
`cacheshim.types._setpop` makes SPOP's picks with a count;
`cacheshim.snapshot._native` computes the snapshot file's CRC-64, decompresses LZF and loads
keys; `cacheshim.snapshot._native_write` writes a snapshot's keys; `cacheshim.scripting._lstr`
is Lua's pattern matching held to the script budget (without it, scripts keep Lua's own, which
the budget cannot stop: see cacheshim/scripting/engine.py). They are built by default,
and a failed build fails the install: without them memlog falls back to Python twins
(cacheshim/protocol/fastread.py, apply.plain_args_py, setvalue.pop_many_py,
cacheshim/snapshot/crc64.py, lzf.py and rdb.py: same results, far slower), which nobody
would notice. To go without them on purpose (no compiler), install with MEMLOG_PURE_PYTHON=1;
the tests that check the extensions are built then accept their absence, and fail on it
otherwise.
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
        ),
        Extension(
            "cacheshim._records",
            sources=["cacheshim/_records.c"],
            extra_compile_args=["-O2"],
        ),
        Extension(
            "cacheshim.types._setpop",
            sources=["cacheshim/types/_setpop.c"],
            extra_compile_args=["-O2"],
        ),
        Extension(
            "cacheshim.snapshot._native",
            sources=["cacheshim/snapshot/_native.c"],
            extra_compile_args=["-O2"],
        ),
        Extension(
            "cacheshim.scripting._lstr",
            sources=["cacheshim/scripting/_lstr.c"],
            extra_compile_args=["-O2"],
            libraries=["dl"],
        ),
        Extension(
            "cacheshim.snapshot._native_write",
            sources=["cacheshim/snapshot/_native_write.c"],
            extra_compile_args=["-O2"],
        ),
    ]
)
