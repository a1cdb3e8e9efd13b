#!/usr/bin/env bash
# The GPU checks of the supernet issue in one run on one CUDA machine, their processes sharing
# the card (one MobileViT at CIFAR-10 sizes leaves most of a GPU idle between its kernels):
#
#   bench/gpu_checks.sh ARCHIVE OUTDIR [DEADLINE_S] [STANDALONE_SHARDS] [PROXY_SHARDS]
#
# * bench/supernet_ranking.py at a stronger fidelity than the CPU run: one process trains the
#   supernet on the GPU and scores every architecture with its inherited weights; STANDALONE_SHARDS
#   processes train the standalone references (2 seeds each);
# * bench/proxy_fidelity.py's GPU rung ("proxy_gpu"): the 19 fixed points over PROXY_SHARDS
#   processes.
#
# Each process writes its results file after every step and is stopped at DEADLINE_S seconds;
# what finished by then is kept. OUTDIR gets one archive of the results files and logs. Combine
# them where the repository is:
#   python bench/supernet_ranking.py --merge ranking_*.json --out RESULTS.json
#   python bench/proxy_fidelity.py --merge proxy_*.json   (adds the proxy_gpu rung)
set -u
archive=${1:?the CIFAR-10 archive}
out=${2:?a folder for the results}
deadline=${3:-470}
shards=${4:-6}
pshards=${5:-3}
work=$(mktemp -d)
mkdir -p "$out"
py=${PYTHON:-python3}
device=${DEVICE:-cuda}
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
# the fidelity (SMOKE=1: a few images and epochs, to try the script itself on a CPU)
if [[ ${SMOKE:-0} == 1 ]]; then
    sizes=(--images-per-class 20 --val-per-class 10 --epochs 1 --supernet-epochs 1 --sampled 1)
    psizes=(--proxy-images 10 --epochs 1)
else
    sizes=(--images-per-class 1000 --val-per-class 200 --epochs 10 --supernet-epochs 16
           --sampled 9)
    psizes=(--proxy-images 1000 --epochs 10)
fi
ranking=(--data "$archive" --device "$device" "${sizes[@]}" --resolution 32 --batch-size 128
         --seeds 2 --threads 1)
pids=()
timeout "$deadline" "$py" bench/supernet_ranking.py "${ranking[@]}" --part supernet \
    --threads 4 --out "$work/ranking_supernet.json" >"$work/ranking_supernet.log" 2>&1 &
pids+=($!)
for k in $(seq 0 $((shards - 1))); do
    timeout "$deadline" "$py" bench/supernet_ranking.py "${ranking[@]}" --part standalone \
        --shard "$k/$shards" --out "$work/ranking_standalone_$k.json" \
        >"$work/ranking_standalone_$k.log" 2>&1 &
    pids+=($!)
done
models=$("$py" -c 'import mobilevit; print(" ".join(mobilevit.list_models()))')
read -r -a all <<<"$models"
for k in $(seq 0 $((pshards - 1))); do
    mine=()
    for i in "${!all[@]}"; do
        if (( i % pshards == k )); then mine+=("${all[$i]}"); fi
    done
    list=$(IFS=,; echo "${mine[*]}")
    timeout "$deadline" "$py" bench/proxy_fidelity.py --data "$archive" --rungs proxy \
        --label proxy_gpu --device "$device" "${psizes[@]}" --resolution 64 \
        --batch-size 128 --threads 1 --models "$list" --out "$work/proxy_$k.json" --fresh \
        >"$work/proxy_$k.log" 2>&1 &
    pids+=($!)
done
# A process that fails at once (an import, a CUDA error) stops the run while it is cheap.
sleep "${EARLY_S:-60}"
for pid in "${pids[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null && ! wait "$pid"; then
        echo "a process failed early; stopping" >&2
        kill "${pids[@]}" 2>/dev/null
        tail -n 30 "$work"/*.log >&2
        tar -czf "$out/gpu_checks.tar.gz" --exclude=supernet_ranking_store -C "$work" .
        exit 3
    fi
done
nvidia-smi --query-gpu=name,utilization.gpu,memory.used --format=csv >"$work/nvidia_smi.txt" 2>&1
wait
tail -n 4 "$work"/*.log
tar -czf "$out/gpu_checks.tar.gz" --exclude=supernet_ranking_store -C "$work" .
echo "wrote $out/gpu_checks.tar.gz"
