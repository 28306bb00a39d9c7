"""Train one AttentionClassifier data-parallel over several processes with torchrun.

Every process loads the whole training set and calls ``fit`` as usual; skattn sees
the process group that this script starts and splits each batch across the
processes. Each one ends with the same fitted classifier.

    torchrun --standalone --nproc_per_node 2 examples/distributed_fit.py        # 2 CPU processes (gloo)
    torchrun --standalone --nproc_per_node 4 examples/distributed_fit.py        # 4 GPUs (NCCL)
    torchrun ... examples/distributed_fit.py --n-train 1500 --output out/       # a subset; results as files
"""

import argparse
import json
import os
from pathlib import Path

import joblib
import torch
import torch.distributed as dist

from skattn import AttentionClassifier
from skattn.datasets import load_r8


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, help="train on the first N documents (default: all)")
    parser.add_argument("--n-test", type=int, help="score the first N test documents (default: all)")
    parser.add_argument("--params", type=json.loads, default={}, help="AttentionClassifier parameters as JSON")
    parser.add_argument("--output", help="folder for each rank's predictions and rank 0's fitted model")
    args = parser.parse_args()

    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    rank = dist.get_rank()

    X_train, y_train, X_test, y_test = load_r8()
    X_train, y_train = X_train[: args.n_train], y_train[: args.n_train]
    X_test, y_test = X_test[: args.n_test], y_test[: args.n_test]
    classifier = AttentionClassifier(random_state=0, **args.params).fit(X_train, y_train)
    predictions = classifier.predict(X_test).tolist()
    accuracy = sum(p == t for p, t in zip(predictions, y_test)) / len(y_test)
    if rank == 0:
        print(f"{dist.get_world_size()} process(es): test accuracy {accuracy:.4f}, epochs {classifier.n_iter_}")

    if args.output:
        output = Path(args.output)
        output.mkdir(parents=True, exist_ok=True)
        result = {"rank": rank, "world_size": dist.get_world_size(), "accuracy": accuracy,
                  "predictions": predictions, "loss_curve": classifier.loss_curve_,
                  "model_class": type(classifier.model_).__name__}
        (output / f"rank{rank}.json").write_text(json.dumps(result))
        if rank == 0:
            joblib.dump(classifier, output / "classifier.joblib")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
