#!/bin/bash
# Fill a list, a hash and 10,000 keys at PORT, then run redis-benchmark LRANGE_100, MGET of
# 10 random keys and HGETALL with -c 50, -P 1 and -P 16 (docs/bench-shim.md, issue 18).
# usage: bench/fast_reads.sh PORT LABEL [REQUESTS, default 50000]
P=$1
redis-cli -p $P del mylist myhash >/dev/null
redis-cli -p $P rpush mylist $(seq 1 100) >/dev/null
redis-cli -p $P hset myhash f1 v1 f2 v2 f3 v3 f4 v4 f5 v5 f6 v6 f7 v7 f8 v8 f9 v9 f10 v10 >/dev/null
redis-cli -p $P mset $(for i in $(seq 0 9999); do echo key:$(printf %012d $i) xxx; done) >/dev/null
for pp in 1 16; do
  redis-benchmark -p $P -c 50 -P $pp -n ${3:-50000} -q --csv -t lrange_100 2>/dev/null | tail -1 | sed "s/^/$2 P$pp /"
  redis-benchmark -p $P -c 50 -P $pp -n ${3:-50000} -r 10000 -q --csv mget key:__rand_int__ key:__rand_int__ key:__rand_int__ key:__rand_int__ key:__rand_int__ key:__rand_int__ key:__rand_int__ key:__rand_int__ key:__rand_int__ key:__rand_int__ 2>/dev/null | tail -1 | sed "s/^/$2 P$pp /"
  redis-benchmark -p $P -c 50 -P $pp -n ${3:-50000} -q --csv hgetall myhash 2>/dev/null | tail -1 | sed "s/^/$2 P$pp /"
done
