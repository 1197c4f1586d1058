# SPDX-License-Identifier: Apache-2.0
"""Shared fixtures of the Python suite: the conformance file (../shared relative to the repository
root, or $GRPO_SHARED_DIR) and the grpo-reward CLI ($GRPO_REWARD_CLI or build/default)."""
import json
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def shared_dir() -> pathlib.Path:
    env = os.environ.get("GRPO_SHARED_DIR")
    return pathlib.Path(env) if env else ROOT.parent / "shared"


def load_cases():
    path = shared_dir() / "conformance" / "grpo_peer_cases.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


CASES = load_cases()


@pytest.fixture(scope="session")
def cases():
    if CASES is None:
        pytest.skip("conformance file not found (set GRPO_SHARED_DIR)")
    return CASES


def reward_cli():
    env = os.environ.get("GRPO_REWARD_CLI")
    for p in ([pathlib.Path(env)] if env else []) + [
            ROOT / "build" / "default" / "tools" / "grpo-reward" / "grpo-reward"]:
        if p.exists():
            return p
    return None
