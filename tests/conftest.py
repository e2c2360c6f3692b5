import os
import sys

import torch

# Small networks run fastest single-threaded, and CI's two cores are shared with
# pytest-xdist workers: one torch thread per test process.
torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(__file__))  # tests/toy_policy.py
