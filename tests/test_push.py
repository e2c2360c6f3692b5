"""`expo push` / push_run against a fake HfApi.

The Hub's servers cannot be reached from here, so this is the one place with a test double:
`FakeHubApi` stands in for huggingface_hub.HfApi at that boundary. It records the calls and
"uploads" by copying the files that upload_folder's allow_patterns select into a local
folder, which we then load back with FinetunedPolicy.from_pretrained, as a user would after
snapshot_download.
"""

import fnmatch
import shutil
from pathlib import Path

import pytest
from toy_policy import BiasedMixturePolicy

from expo_sdk import FinetuneConfig, Finetuner, FinetunedPolicy
from expo_sdk.envs.toy import ReachGoalEnv
from expo_sdk.finetuned import push_run


class FakeHubApi:
    def __init__(self, root):
        self.root, self.calls = Path(root), []

    def create_repo(self, repo_id, private=False, exist_ok=False):
        self.calls.append(("create_repo", repo_id, private))
        (self.root / repo_id).mkdir(parents=True, exist_ok=exist_ok)

    def upload_folder(self, folder_path, repo_id, allow_patterns, commit_message):
        self.calls.append(("upload_folder", repo_id))
        for path in Path(folder_path).rglob("*"):
            rel = path.relative_to(folder_path).as_posix()
            if path.is_file() and any(fnmatch.fnmatch(rel, p) for p in allow_patterns):
                (self.root / repo_id / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, self.root / repo_id / rel)
        return "fake-commit"


def test_push_uploads_a_loadable_policy_and_nothing_else(tmp_path):
    run_dir = tmp_path / "run"
    cfg = FinetuneConfig(batch_size=16, utd_ratio=1, critic={"ensemble_size": 2, "hidden_dim": 16}, num_samples=2,
                         eval_episodes=3, learning_starts=20, base_mode="frozen", checkpoint_every=30)
    Finetuner(BiasedMixturePolicy(), cfg).run(ReachGoalEnv, 60, run_dir=run_dir, progress=False)
    api = FakeHubApi(tmp_path / "hub")
    with pytest.warns(UserWarning, match="local path and sha256"):
        assert push_run(run_dir, "org/expo-edit", private=True, api=api) == "fake-commit"
    assert api.calls == [("create_repo", "org/expo-edit", True), ("upload_folder", "org/expo-edit")]
    pushed = tmp_path / "hub" / "org/expo-edit"
    assert (pushed / "edit_head" / "model.safetensors").is_file() and (pushed / "README.md").is_file()
    assert not (pushed / "checkpoint").exists() and not (pushed / "metrics.jsonl").exists()
    FinetunedPolicy.from_pretrained(pushed, base=BiasedMixturePolicy())


def test_finetuned_policy_push_to_hub(tmp_path):
    cfg = FinetuneConfig(batch_size=16, utd_ratio=1, critic={"ensemble_size": 2, "hidden_dim": 16}, num_samples=2,
                         eval_episodes=2, learning_starts=10, base_mode="frozen")
    tuner = Finetuner(BiasedMixturePolicy(), cfg)
    tuner.run(ReachGoalEnv, 20, progress=False)
    api = FakeHubApi(tmp_path / "hub")
    with pytest.warns(UserWarning):
        tuner.finetuned_policy().push_to_hub("org/p", card={"task": "reach"}, api=api)
    assert "reach" in (tmp_path / "hub" / "org/p" / "README.md").read_text()


def test_push_refuses_a_directory_that_is_not_a_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a finished run directory"):
        push_run(tmp_path, "org/x", api=FakeHubApi(tmp_path / "hub"))
