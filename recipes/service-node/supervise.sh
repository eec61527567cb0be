#!/bin/sh
# Keeps a service node's daemon running: `supervise.sh COMMAND [ARG...]` runs the command and
# runs it again when it dies of a crash or a signal, after a backoff (0.5 s, doubled up to 8 s;
# back to 0.5 s once a run lasted 30 s). Exit 0 (a clean stop) or 2 (bad input: a restart would
# fail the same way) ends the supervision with that code. SIGTERM/SIGINT stop the daemon, then
# the supervisor: teardown and the recipe's stop step need only the supervisor's pid.
child=
stop() {
  [ -n "$child" ] && kill "$child" 2>/dev/null && wait "$child"
  exit 0
}
trap stop TERM INT
delay=0.5
while :; do
  started=$(date +%s)
  "$@" &
  child=$!
  # `wait` returns early on a trapped signal: the trap then stops the daemon.
  wait "$child"
  code=$?
  child=
  if [ "$code" -eq 0 ] || [ "$code" -eq 2 ]; then exit "$code"; fi
  echo "supervise: $1 exited with code $code; restarting in $delay s" >&2
  if [ $(($(date +%s) - started)) -ge 30 ]; then delay=0.5; fi
  sleep "$delay"
  case $delay in 0.5) delay=1 ;; 1) delay=2 ;; 2) delay=4 ;; *) delay=8 ;; esac
done
