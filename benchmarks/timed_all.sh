#!/usr/bin/env bash
# Every timed harness of the issues' speed goals, one after another, for a machine with nothing
# else running (wall time follows the neighbours on a shared one): ~8 minutes once the captures
# exist. Usage: benchmarks/timed_all.sh [DATA_DIR]   (captures made there if missing; logs in
# DATA_DIR/timed/*.txt). benchmarks/README.md, "Timed with nothing else running", has its figures.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.."
B=${1:-benchmarks/data}; PY=.venv/bin/python; mkdir -p "$B/timed"
capture() { [ -e "$B/$1" ] || $PY benchmarks/make_capture.py "$B/$1" "${@:2}" > /dev/null; }
capture synth-10M.pcap --packets 10000000 --flows 600000 --seed 1
capture bench2m.pcap --packets 2000000 --flows 120000 --seed 7
capture 1m.pcap --packets 1000000 --flows 60000
run() {
    local name=$1; shift
    echo "== $(date +%T) $name: $*"
    timeout 900 "$@" > "$B/timed/$name.txt" 2>&1; echo "rc=$?" >> "$B/timed/$name.txt"
    tail -25 "$B/timed/$name.txt"
}
run run10m $PY benchmarks/run.py --capture "$B/synth-10M.pcap" --features --extra --read-ahead --repeat 3 \
    --nfstream-packets 1000000
run plugins $PY benchmarks/plugins_bench.py "$B/bench2m.pcap" --repeat 3 --modes terminated,read,read_frame,read_arrow
run plugins_features $PY benchmarks/plugins_bench.py "$B/bench2m.pcap" --repeat 3 --modes terminated,read_frame,read_arrow \
    --options '{"statistics": true, "splt": 20}'
run zeek $PY benchmarks/zeek_meters.py "$B/bench2m.pcap" --repeat 3
run workers $PY benchmarks/workers_bench.py "$B/1m.pcap" --rounds 3 --workers 2
run dissect $PY benchmarks/dissect_bench.py --runs 3
run flowtools $PY benchmarks/flowtools_bench.py --mode all
