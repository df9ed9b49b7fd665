"""An environment family registered from outside the package: the worked example of
docs/adding-an-environment.md, run as the page prints it, then trained on through the ordinary run
loop (`train_run`), and the registration's refusals."""

import json
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseq.cli import main
from jaxseq.envs import FAMILIES, EnvFamily, EnvParam, make_env, register_env_family
from jaxseq.run import train_run

from support.helpers import tiny

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "adding-an-environment.md"


@pytest.fixture(scope="module", autouse=True)
def matching():
    """The guide's first code block, executed as it stands (it registers ``matching``)."""
    block = re.search(r"```python\n(.*?)```", GUIDE.read_text(), re.S).group(1)
    exec(compile(block, str(GUIDE), "exec"), {"__name__": "guide"})
    yield
    FAMILIES.pop("matching")


def test_the_registered_family_builds_steps_and_is_listed(capsys):
    env = make_env("matching:game?agents=3&actions=2&max_steps=4")
    assert (env.spec.num_agents, env.spec.num_actions, env.spec.max_steps) == (3, 2, 4)
    state, obs = env.reset(jax.random.PRNGKey(0))
    assert obs.obs.shape == (3, 2) and obs.avail.shape == (3, 2)
    state, out = env.step(jax.random.PRNGKey(1), state, jnp.array([1, 1, 1]))
    np.testing.assert_array_equal(out.reward, 1.0)
    for _ in range(3):
        state, out = env.step(jax.random.PRNGKey(1), state, jnp.array([0, 1, 1]))
        np.testing.assert_array_equal(out.reward, 0.0)
    assert bool(out.truncated) and not bool(out.terminated)  # the 4th step, reset by AutoReset
    assert main(["envs"]) == 0
    assert "matching:game" in capsys.readouterr().out


def test_training_on_it_learns_a_convention(tmp_path):
    """A2PO through the run loop: the sampled team return (10 steps; 3 agents with 3 actions match
    with probability 1/9 at random) rises from about random to most steps matched, and the greedy
    policy matches at every step. (Greedy alone would not show learning: under FuPS the initial
    agents' logits are nearly equal, so their argmaxes may agree by construction.)"""
    cfg = tiny(env="matching:game?agents=3", algo="a2po", num_seeds=1, actor_lr=3e-3, total_steps=4 * 8 * 24)
    run = train_run(cfg.replace(eval_every=12), out=tmp_path, progress=False)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["first_return_mean"] < 3.0 and summary["final_return_mean"] >= 7.0, summary
    assert summary["final_test_return_mean"] >= 9.0, summary


def test_registration_refuses_a_taken_name_and_a_malformed_declaration():
    good = FAMILIES["matching"]
    with pytest.raises(ValueError, match="registered already"):
        register_env_family("matching", good)
    with pytest.raises(ValueError, match="identifier"):
        register_env_family("my:env", good)
    with pytest.raises(ValueError, match=r"params\['n'\].default is not a int"):
        register_env_family("other", EnvFamily(good.names, {"n": EnvParam(int, "3")}, good.build, "help"))
    with pytest.raises(ValueError, match="build must be a function"):
        register_env_family("other", EnvFamily(good.names, {}, None, "help"))
    assert "other" not in FAMILIES
