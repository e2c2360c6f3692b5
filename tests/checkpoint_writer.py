"""Writes checkpoints back to back until killed: `python checkpoint_writer.py DIR [FSIZE_LIMIT]`.

Checkpoint i holds a tensor filled with i and `{"step": i}`, so a reader can tell a
consistent checkpoint from a torn one. With FSIZE_LIMIT (bytes), the process may not
write larger files (RLIMIT_FSIZE, SIGXFSZ ignored: writes fail with EFBIG, as on a full
disk); it then prints the error of the first write that does not fit and exits.
"""

import json
import resource
import signal
import sys

import torch

from expo_sdk.checkpoint import save_checkpoint

if __name__ == "__main__":
    run_dir = sys.argv[1]
    if len(sys.argv) > 2:
        limit = int(sys.argv[2])
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    step = 0
    while True:
        step += 1
        # 4 MB, then growing: with a size limit the later writes stop fitting.
        numel = 1_000_000 * (1 if len(sys.argv) == 2 else step)
        try:
            save_checkpoint(run_dir, {"x": torch.full((numel,), float(step))}, {"step": step})
        except OSError as exc:
            print(json.dumps({"step": step, "errno": exc.errno, "message": str(exc)}))
            sys.exit(0)
        print(step, flush=True)
