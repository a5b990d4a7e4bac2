"""memlog's own nemesis suite (issue 21): real `logsvc serve` and `cacheshim serve`
processes, faults injected by PID (kill -9, SIGSTOP/SIGCONT, SIGTERM, a slow fsync, a
whole-cluster crash), list-append / counter / register / 1 MB workloads through redis-py, and
checkers that look for lost, duplicated, phantom and reordered values and for register
histories that no linearization explains.

    make nemesis SEED=7         # python -m tests.nemesis --profile long --seed 7: the table
    pytest tests/nemesis        # the checkers on hand-made histories, and a short run
"""
