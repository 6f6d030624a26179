#!/usr/bin/env bash
# predict.sh DATA_DIR OUT.json: a class index for every image of every dataset -> OUT.json.
# Exit codes: 0 ok, 1 user error (one line on stderr), 2 usage error, 3 setup.sh not run yet.
# Environment: ZSCLIP_THREADS overrides the thread count (default: the CPUs this process may
# use: affinity mask and cgroup quota, not the host's core count).
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [ -x "$HERE/.venv/bin/python" ]; then
    PY=("$HERE/.venv/bin/python" -s)
elif [ -d "$HERE/site" ]; then
    PY=("${PYTHON:-python3}" -s)
    export PYTHONPATH="$HERE/site${PYTHONPATH:+:$PYTHONPATH}"
else
    echo "predict.sh: run setup.sh first" >&2
    exit 3
fi

if [ "${1:-}" = "--check" ]; then
    exec "${PY[@]}" -c '
import sys
from pathlib import Path
import click, numpy, onnxruntime, PIL, tokenizers
from zsclip.classifier import ZeroShotModel
model = ZeroShotModel(Path(sys.argv[1]))
size = model.manifest.preprocess.image_size
model.score(model.encode_images(numpy.zeros((1, 3, size, size), numpy.float32)), model.build_class_embeddings(["кот"]))
print("zsclip bundle ready: onnxruntime %s, numpy %s, pillow %s" % (onnxruntime.__version__, numpy.__version__, PIL.__version__))
' "$HERE/model"
fi
if [ $# -ne 2 ]; then
    echo "usage: predict.sh DATA_DIR OUT.json" >&2
    exit 2
fi

THREADS="${ZSCLIP_THREADS:-$("${PY[@]}" -m zsclip.workers)}"
# numpy's BLAS only does tiny matmuls here: keep its threads out of onnxruntime's way.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
exec "${PY[@]}" -c 'import sys; from zsclip.cli import predict_main; predict_main(sys.argv[1:], prog_name="zsclip-predict")' \
    "$1" "$2" --model "$HERE/model" --threads "$THREADS" @DECODE_WORKERS_ARG@
