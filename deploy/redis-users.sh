#!/bin/sh
# Prints the Redis ACL users of the three processes, one `user ...` line each (ACL file syntax).
# docker-compose.yml's Redis loads them at start (after `user default off`: no anonymous
# access); `just docker-smoke` applies the same lines to a shared Redis with ACL SETUSER, under
# run-unique names, so the containers it starts prove that these rules are enough.
#
# Each process reaches only its own keys: the API the cache, rate-limit and event-log keys
# under REDIS_PREFIX; the consumer arq's queue and job keys (it enqueues) and the users' event
# logs (`<prefix>sse:*`, it feeds them); the worker both of the first (it runs jobs and
# refreshes the cache). Pub/sub: only the event logs' notice channel, the consumer publishing
# and the API subscribing (`&<prefix>sse:notices`). No process may run administrative or dangerous commands
# (CONFIG, FLUSHALL, FLUSHDB, KEYS, DEBUG, ACL, ...) except INFO, which arq's worker logs at
# start. Nor what reaches past its own keys, which key patterns cannot stop: SCAN and
# RANDOMKEY (other keys' names), SCRIPT FLUSH and SCRIPT KILL (every client's scripts),
# FUNCTION and FCALL (server-wide code). What the app does run stays: EVALSHA with SCRIPT
# LOAD on a miss (redis-py's register_script: the limiter, the order cache, the worker's
# claim and the reconciler), MULTI/WATCH (arq's enqueue).
#
# Input (environment): REDIS_API_PASSWORD, REDIS_CONSUMER_PASSWORD, REDIS_WORKER_PASSWORD
# (required, no spaces), REDIS_PREFIX (default orders:), ARQ_QUEUE (default arq:queue),
# REDIS_USER_PREFIX (default empty: users api, consumer, worker).
set -eu

prefix=${REDIS_PREFIX:-orders:}
queue=${ARQ_QUEUE:-arq:queue}
# arq's own keys (arq:job:, arq:in-progress:, arq:result:, arq:retry:) and the queue with its
# health-check key.
arq_keys="~arq:* ~${queue}*"
commands="-@all +@read +@write +@scripting +@transaction +@connection +@keyspace +@string +@list +@hash +@set +@sortedset +@stream +@pubsub -@admin -@dangerous +info -scan -randomkey -script|flush -script|kill -function -fcall -fcall_ro"

user() {  # name, password, key patterns
    case "$2" in
        "" | *" "*) echo "redis-users.sh: the password of $1 is empty or has a space" >&2; exit 1 ;;
    esac
    echo "user ${REDIS_USER_PREFIX:-}$1 reset on >$2 $3 $commands"
}

notices="&${prefix}sse:notices"
user api "${REDIS_API_PASSWORD:-}" "~${prefix}* $notices"
user consumer "${REDIS_CONSUMER_PASSWORD:-}" "$arq_keys ~${prefix}sse:* $notices"
user worker "${REDIS_WORKER_PASSWORD:-}" "~${prefix}* $arq_keys"
