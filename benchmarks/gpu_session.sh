#!/usr/bin/env bash
# The GPU session of 2026-11-26 (benchmarks/RESULTS.md, "On a GPU"), for the device tool of the workplace:
# run ../shared/gpu/prepare.sh in the checkout, copy this file to .device/, then run `bash .device/gpu_session.sh`
# there with carry [".device"]. In one call: Dreamer's throughput alone, then side by side the project's GPU check
# (.device/check.sh), every agent on cuda at the smoke tier, the four recurrent SSMs at full size, and PlaNet, Dreamer
# and state-based PETS on pixel cart-pole for BUDGET seconds each. Results land in $OUT (logs and two tarballs).
# A dry run here: DEV=cpu TIER=smoke BUDGET=20 STEPS=3 OUT=/tmp/out bash benchmarks/gpu_session.sh
# What the 2026-11-26 run taught: the full tier's video data takes minutes to render on the CPU and 13 processes on
# one GPU slow each several times; keep the call's timeout above BUDGET + 200 s.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
exec > >(tee "$OUT/session.log") 2>&1
DEV=${DEV:-cuda}; TIER=${TIER:-full}; BUDGET=${BUDGET:-240}; STEPS=${STEPS:-1500}; L=/tmp/logs; mkdir -p $L
if [ "$DEV" = cuda ]; then
  for f in .device/gl/*.deb; do [ -e "$f" ] && dpkg -x "$f" /; done; ldconfig 2>/dev/null
  export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .device/whl/*.whl || exit 3
  export PYTHONPATH=/tmp/site:$PWD; PY=python3; nvidia-smi -L
else export PYTHONPATH=$PWD; PY=.venv/bin/python; fi
export MUJOCO_GL=egl PYTHONUNBUFFERED=1 TQDM_DISABLE=1 OMP_NUM_THREADS=1
CP=mbrl_course/CartPoleSwingUp-v0
echo "== $(date +%T) Dreamer throughput, alone ($TIER tier, then default)"
for t in $TIER default; do
  timeout 150 $PY benchmarks/pixels.py --tier $t --env $CP --algos "" --random-episodes 2 --throughput --device $DEV --summary thr_$t.json 2>&1 | grep -i "throughput\|error\|Traceback" 
done
echo "== $(date +%T) parallel phase"
if [ "$DEV" = cuda ]; then
  (timeout 420 bash .device/check.sh > $L/check.log 2>&1 &)
  for a in planet dreamer; do  # check.sh trains each agent without --pixels, which these two refuse
    (SECONDS=0; MBRL_COURSE_BUDGET=smoke timeout 120 $PY -m mbrl_course.cli train $a --pixels --episodes 2 --device cuda \
       --out /tmp/gpu_run_px_$a --overwrite --quiet > $L/agent_$a.log 2>&1; echo "train $a --pixels on cuda: rc=$? ${SECONDS}s" >> $L/agents.txt) &
  done
fi
for m in rnn ssm vrnn rssm; do
  timeout $((BUDGET + 150)) $PY benchmarks/recurrent_ssm.py --tier $TIER --envs pendulum --models $m --device $DEV --steps $STEPS --out /tmp/rssm > $L/rssm_$m.log 2>&1 &
done
for a in planet dreamer pets; do for s in 0 1 2; do
  timeout $((BUDGET + 120)) $PY benchmarks/pixels.py --tier $TIER --env $CP --algos $a --seeds $s --episodes 500 --time-budget $BUDGET \
     --eval-episodes 5 --random-episodes 20 --device $DEV --summary summary_${a}_s$s.json > $L/px_${a}_$s.log 2>&1 &
done; done
sleep 5; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv 2>/dev/null
wait
echo "== $(date +%T) results"
for f in $L/px_*.log; do echo "-- $f"; grep -v "it/s\|episode/s\|s/episode" $f | tail -4; done
for f in $L/rssm_*.log; do echo "-- $f"; tail -12 $f; done
cat $L/agents.txt 2>/dev/null; echo "-- check.log so far"; tail -40 $L/check.log 2>/dev/null
(cd benchmarks/out/pixels && tar czf $OUT/pixels.tgz --exclude=checkpoint.pt --exclude='*.gif' .)
tar czf $OUT/rssm.tgz -C /tmp rssm; tar czf $OUT/logs.tgz -C /tmp logs   # check.sh may still run: it writes $OUT/gpu_check.log
ls -la $OUT
