#!/usr/bin/env bash
# A time-boxed GPU run of the default detector's recipe, for a lent GPU machine that has PyTorch, transformers and
# accelerate but neither the shared data nor internet (issue 10). Everything it needs travels with the repository:
#
#   runs/device/pack   the four datasets of scripts/train_default.py packed with JPEG crops (about 47 MB):
#                      mesofcn prepare pack runs/default-model/{ffpp_c23,blends,tools,validation} \
#                          --out runs/device/pack --jpeg-quality 90
#   runs/device/whl    wheels of what that machine lacks (datasets, dill, multiprocess, evaluate; about 1 MB)
#
# and it runs as   bash scripts/train_default_gpu.sh   with both folders carried. It trains from scratch (or from
# $INIT) for $MINUTES minutes, validating on the unseen-tool split every $EVAL_STEPS steps, and leaves the best and
# final weights, the validation log and the training log in $OUT (or runs/device/out). Install the chosen weights
# with `python scripts/train_default.py --ship` after copying them into a run folder here.
# A CPU dry run of the same path: DEVICE_DRY_RUN=1 bash scripts/train_default_gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE_DIR=runs/device
OUT=${OUT:-$DEVICE_DIR/out}
RUN=${RUN:-/tmp/mesofcn-gpu-run}
MINUTES=${MINUTES:-7}
EVAL_STEPS=${EVAL_STEPS:-200}
BATCH=${BATCH:-256}
WORKERS=${WORKERS:-$(($(nproc) - 2))}
PRECISION=${PRECISION:-bf16}
STEPS=${STEPS:-100000}
if [[ -n "${DEVICE_DRY_RUN:-}" ]]; then  # the same command on this CPU, a few small steps
    MINUTES=0.5 EVAL_STEPS=2 BATCH=8 WORKERS=0 PRECISION=no STEPS=4
fi
mkdir -p "$OUT"
if [[ -d $DEVICE_DIR/whl ]] && ! python3 -c "import datasets, evaluate" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        $DEVICE_DIR/whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
set +e
python3 -m mesofcn.cli train --dataset_dir $DEVICE_DIR/pack --output_dir "$RUN" \
    --task sbi-any-all --augment --online_self_blend --seg_loss_weight 0.3 \
    --per_device_train_batch_size "$BATCH" --learning_rate 1e-3 --lr_decay 0.98 \
    --max_train_steps "$STEPS" --max_train_minutes "$MINUTES" \
    --eval_steps "$EVAL_STEPS" --metric_for_best_model auc --checkpointing_steps eval \
    --mixed_precision "$PRECISION" --dataloader_num_workers "$WORKERS" --logging_steps 50 --disable_tqdm \
    --report_to none --seed 42 ${INIT:+--init_model "$INIT"} 2>&1 | tee "$OUT/train.log"
status=${PIPESTATUS[0]}
set -e
for name in best final; do
    if [[ -f $RUN/$name/model.safetensors ]]; then
        cp "$RUN/$name/model.safetensors" "$OUT/$name.safetensors"
        cp "$RUN/$name/eval_results.json" "$OUT/$name-eval_results.json" 2>/dev/null || true
    fi
done
cp "$RUN/eval_log.jsonl" "$OUT/" 2>/dev/null || true
ls -la "$OUT"
exit "$status"
