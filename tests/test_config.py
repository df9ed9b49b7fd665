"""Bad input fails before anything compiles, naming the field and what is allowed."""

import json
import subprocess
import sys

import pytest

from jaxseq.cli import main
from jaxseq.config import Config, parse_value
from jaxseq.configure import make_config, validate
from jaxseq.errors import ConfigError
from jaxseq.run_folder import load_config
from jaxseq.train import make_train


@pytest.mark.parametrize(
    "overrides, field, words",
    [
        (dict(algo="qmix"), "algo", "allowed: .*'a2po'.*'mappo'"),
        (dict(env="smax:4m"), "env", "unknown smax task"),
        (dict(sharing="some"), "sharing", "allowed: \\['fups', 'paps', 'nops'\\]"),
        (dict(network="lstm"), "network", "allowed: \\['mlp', 'gru'\\]"),
        (dict(activation="gelu"), "activation", "allowed"),
        (dict(num_envs=0), "num_envs", "positive integer"),
        (dict(epochs=2.5), "epochs", "expected int"),
        (dict(gamma=1.5), "gamma", "\\[0, 1\\]"),
        (dict(gae_lambda=-0.1), "gae_lambda", "\\[0, 1\\]"),
        (dict(clip_eps=0.0), "clip_eps", "\\(0, 1\\)"),
        (dict(actor_lr=-1.0), "actor_lr", ">= 0"),
        (dict(sequence_length=7), "sequence_length", "must divide rollout_length=128"),
        (dict(num_minibatches=3), "num_minibatches", "must divide the number of training sequences"),
        (dict(total_steps=100), "total_steps", "at least one batch"),
        (dict(eval_every=-1), "eval_every", ">= 0"),
        (dict(algo="coppo", coppo_clip_others=1.5), "coppo_clip_others", "\\[0, 1\\)"),
        (dict(algo="a2po", loop_order="inner"), "loop_order", "allowed: \\['agents-outer', 'epochs-outer'\\]"),
        (dict(algo="a2po", agent_blocks=-1), "agent_blocks", ">= 0"),
        (dict(post_layers=-1), "post_layers", ">= 0"),
        (dict(algo="a2po", agent_blocks=4), "agent_blocks", "at most the number of agents of mpe:spread \\(3\\)"),
        (dict(algo="mappo", agent_blocks=2), "agent_blocks", "applies to a2po, happo.* only, got algo=mappo"),
        (
            dict(algo="mappo", loop_order="epochs-outer"),
            "loop_order",
            "applies to a2po, .*opspo.* only, got algo=mappo",
        ),
        (dict(algo="mappo_vtrace", vtrace_clip_rho=0.0), "vtrace_clip_rho", "> 0"),
        (dict(algo="opspo", opspo_eps2=0.3), "opspo_eps2", "\\(0, clip_eps=0.2\\)"),
        (dict(shared_optimizer="global"), "shared_optimizer", "allowed: \\['per-agent', 'one'\\]"),
        (dict(algo="opspo", opspo_sdc_method="dice"), "opspo_sdc_method", "allowed: \\['auto', 'bch', 'wis'\\]"),
        (dict(algo="opspo", omega_n=0), "omega_n", "positive integer"),
        (dict(algo="opspo", density_lr=0.0), "density_lr", "> 0"),
        (dict(algo="mappo", fp3o_guard=True), "fp3o_guard", "applies to fp3o only, got algo=mappo"),
        (dict(algo="mappo", selection_rule="greedy"), "selection_rule", "applies to a2po, opspo only, got algo=mappo"),
        (dict(algo="happo", opspo_sdc_method="bch"), "opspo_sdc_method", "applies to opspo only, got algo=happo"),
        (dict(algo="mappo", vtrace_clip_rho=2.0), "vtrace_clip_rho", "applies to mappo_vtrace, opspo only"),
        (dict(log_prob_reduce="mean"), "log_prob_reduce", "continuous-action envs only; mpe:spread has discrete"),
    ],
)
def test_bad_config_values_name_the_field(overrides, field, words):
    with pytest.raises(ConfigError, match=words) as err:
        make_train(Config(**overrides))
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}:")


def test_unknown_fields_and_presets():
    with pytest.raises(ConfigError, match="unknown config field") as err:
        make_config(epoch=3)
    assert err.value.field == "epoch"
    with pytest.raises(ConfigError, match="unknown preset"):
        make_config("fastest")


def test_a_renamed_field_points_to_its_new_name_and_saved_runs_still_read(tmp_path, capsys):
    with pytest.raises(ConfigError, match="chunk_length: was renamed: use sequence_length"):
        make_config(chunk_length=4)
    with pytest.raises(ConfigError, match="chunk_length: was renamed: use sequence_length"):
        parse_value("chunk_length", "4")
    assert main(["train", "--set", "chunk_length=4", "--out", str(tmp_path)]) == 2
    assert "chunk_length: was renamed: use sequence_length" in capsys.readouterr().err
    # A run folder saved before the rename is read (eval, render, resume, compare) under the new name.
    saved = json.loads(Config(sequence_length=4).to_json())
    saved["chunk_length"] = saved.pop("sequence_length")
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert load_config(tmp_path) == Config(sequence_length=4)


def test_parse_value_types():
    assert parse_value("epochs", "7") == 7
    assert parse_value("value_norm", "false") is False
    assert parse_value("actor_lr", "3e-4") == 3e-4
    with pytest.raises(ConfigError, match="boolean"):
        parse_value("value_norm", "maybe")
    with pytest.raises(ConfigError, match="expected int"):
        parse_value("epochs", "many")


def test_every_preset_is_valid():
    from jaxseq.presets import PRESETS

    for name in PRESETS:
        validate(make_config(name))


def test_cli_reports_bad_values_with_exit_code_2(capsys):
    assert main(["train", "--env", "mpe:nowhere"]) == 2
    assert "env: unknown mpe task 'nowhere'" in capsys.readouterr().err
    assert main(["train", "--set", "network=lstm"]) == 2
    assert "network:" in capsys.readouterr().err
    assert main(["train", "--set", "novalue"]) == 2
    assert "FIELD=VALUE" in capsys.readouterr().err


def test_cli_lists(capsys):
    assert main(["algos"]) == 0
    assert "mappo" in capsys.readouterr().out
    assert main(["envs"]) == 0
    out = capsys.readouterr().out
    assert "smax:3m" in out and "mpe:spread" in out
    assert main(["config"]) == 0
    assert "clip_eps" in capsys.readouterr().out


def test_every_config_field_has_its_help(capsys):
    """``python -m jaxseq config`` prints each field's ``#:`` comment, also where the formatter
    wrapped the definition over several lines (it once missed 3 of 66 fields that way)."""
    from jaxseq.config import field_docs, field_types

    docs = field_docs()
    assert set(docs) == set(field_types())
    assert all(docs.values()), [name for name, doc in docs.items() if not doc]
    assert docs["selection_rule"].startswith("A2PO agent order") and "Gorsane" in docs["eval_episodes"]
    main(["config"])
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line and line[0] != " "}
    assert docs["agent_blocks"] in lines["agent_blocks"]


# -m slow: tests/test_scale.py runs `python -m jaxseq train` end to end in subprocesses (a sweep
# over two processes, then a resume in one) and checks the folder and the printed summary.
@pytest.mark.slow
def test_cli_train_writes_a_run_folder(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "jaxseq",
        "train",
        "--env",
        "mpe:spread",
        "--total-steps",
        "128",
        "--num-seeds",
        "1",
        "--out",
        str(tmp_path),
        "--no-progress",
        "--set",
        "num_envs=4",
        "--set",
        "rollout_length=8",
        "--set",
        "updates_per_chunk=2",
        "--set",
        "hidden_size=8",
        "--set",
        "sequence_length=4",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    (run_dir,) = tmp_path.iterdir()
    assert (run_dir / "summary.json").exists() and "final_return_mean" in res.stdout


def test_sequential_fields_are_validated():
    with pytest.raises(ConfigError, match="allowed") as err:
        make_train(Config(algo="a2po", selection_rule="best-first"))
    assert err.value.field == "selection_rule"
    with pytest.raises(ConfigError, match="\\[0, 1\\]") as err:
        make_train(Config(algo="a2po", clip_c=1.5))
    assert err.value.field == "clip_c"


def test_the_default_job_is_a2po_on_mpe_spread():
    cfg = Config()
    assert (cfg.algo, cfg.env) == ("a2po", "mpe:spread")
    validate(cfg)


def test_opspo_smac_presets_follow_seed_003_table_2():
    cfg = make_config("opspo-smax-5m_vs_6m")
    assert (cfg.algo, cfg.env, cfg.epochs, cfg.gae_lambda, cfg.clip_eps, cfg.opspo_eps2) == (
        "opspo",
        "smax:5m_vs_6m",
        10,
        0.93,
        0.1,
        0.05,
    )
    assert make_config("opspo-smax-6h_vs_8z").network == "gru"  # the rest from A2PO's SMAX preset


def test_experiment_variants_parse_and_bad_ones_name_the_field():
    from jaxseq.experiment import parse_variant

    assert parse_variant("a2po@loop_order=epochs-outer@adaptive_clip=false") == {
        "algo": "a2po",
        "loop_order": "epochs-outer",
        "adaptive_clip": False,
    }
    with pytest.raises(ConfigError, match="expected FIELD=VALUE") as err:
        parse_variant("a2po@cyclic")
    assert err.value.field == "cyclic"
    with pytest.raises(ConfigError, match="unknown config field") as err:
        parse_variant("a2po@order=cyclic")
    assert err.value.field == "order"


def test_fp3o_smac_presets_follow_seed_002_tables_6_and_7():
    from jaxseq.presets import PRESETS

    cfg = make_config("fp3o-smax-5m_vs_6m-paps")  # Tab. 7: clip 0.05, rnn, 10e6 steps under PaPS
    assert (cfg.algo, cfg.env, cfg.sharing, cfg.clip_eps, cfg.network, cfg.total_steps) == (
        "fp3o",
        "smax:5m_vs_6m",
        "paps",
        0.05,
        "gru",
        10_000_000,
    )
    assert make_config("fp3o-smax-5m_vs_6m-fups").total_steps == 8_000_000
    cfg = make_config("fp3o-smax-6h_vs_8z-nops")  # Tab. 7: clip 0.2, mlp, 20e6 steps under NoPS
    assert (cfg.clip_eps, cfg.network, cfg.total_steps) == (0.2, "mlp", 20_000_000)
    # Tab. 6: 8 threads x episode length 400 = batch 3200, 1 minibatch, 5 epochs, entropy 0.01, lr 5e-4.
    assert (cfg.num_envs, cfg.rollout_length, cfg.batch_size, cfg.num_minibatches, cfg.epochs) == (8, 400, 3200, 1, 5)
    assert (cfg.ent_coef, cfg.actor_lr, cfg.critic_lr, cfg.huber_delta, cfg.max_grad_norm) == (
        0.01,
        5e-4,
        5e-4,
        10.0,
        10.0,
    )
    # Maps SMAX lacks have no preset; Tab. 7 has FuPS only for 10m_vs_11m and 3s5z_vs_3s6z.
    names = {k for k in PRESETS if k.startswith("fp3o-smax-")}
    assert len(names) == 3 * 3 + 2 and "fp3o-smax-10m_vs_11m-fups" in names and "fp3o-smax-10m_vs_11m-paps" not in names
    assert not any(m in k for k in names for m in ("bane", "2c_vs_64zg", "corridor"))
    for name in names:  # under every algorithm of FP3O paper Tab. 2
        for algo in ("fp3o", "happo", "mappo", "ippo"):
            validate(make_config(name, algo=algo))


def test_opspo_eps2_is_checked_for_opspo_only():
    validate(make_config(algo="mappo", clip_eps=0.05))  # opspo_eps2 = 0.1 is not read
    with pytest.raises(ConfigError, match="\\(0, clip_eps=0.05\\)"):
        validate(make_config(algo="opspo", clip_eps=0.05))


def test_mamujoco_presets_follow_the_papers_tables():
    from jaxseq.presets import PRESETS

    # A2PO paper Tab. 8-9: A2PO, parameter-independent, batch 4000, entropy 0; Hopper 8 epochs,
    # lr 1e-4, lambda 0.95, eps 0.1; Humanoid 17x1 in blocks of 5.
    cfg = make_config("a2po-mamujoco-Hopper-3x1")
    assert (cfg.algo, cfg.env, cfg.sharing, cfg.batch_size, cfg.ent_coef_continuous) == (
        "a2po",
        "mamujoco:Hopper-3x1",
        "nops",
        4000,
        0.0,
    )
    assert (cfg.epochs, cfg.actor_lr, cfg.critic_lr, cfg.gae_lambda, cfg.clip_eps) == (8, 1e-4, 1e-4, 0.95, 0.1)
    assert make_config("a2po-mamujoco-Humanoid-17x1").agent_blocks == 5
    assert make_config("a2po-mamujoco-Ant-8x1").agent_blocks == 4
    assert (
        len([k for k in PRESETS if k.startswith("a2po-mamujoco-")]) == 15
    )  # A2PO paper's 14 tasks + HumanoidStandup 17x1 (Tab. 9 gives its block)
    # OPSPO paper Tab. 3: OPSPO on Humanoid 9|8: 8 epochs, 0.90, eps1 0.2, eps2 0.05, omega_e 10, f_e 5, omega_n 20.
    cfg = make_config("opspo-mamujoco-Humanoid-9|8")
    assert (cfg.algo, cfg.epochs, cfg.gae_lambda, cfg.clip_eps, cfg.opspo_eps2) == ("opspo", 8, 0.90, 0.2, 0.05)
    assert (cfg.omega_e, cfg.f_e, cfg.omega_n, cfg.sharing, cfg.actor_lr) == (10, 5, 20, "nops", 3e-4)
    # FP3O paper Tab. 4-5: FP3O, obsk 5, 32 minibatches, entropy 0.001, Walker 2x3 clip 0.05.
    cfg = make_config("fp3o-mamujoco-Walker2d-2x3-paps")
    assert (cfg.env, cfg.sharing, cfg.clip_eps, cfg.num_minibatches, cfg.ent_coef_continuous) == (
        "mamujoco:Walker2d-2x3?obsk=5",
        "paps",
        0.05,
        32,
        0.001,
    )
    assert (cfg.actor_lr, cfg.critic_lr, cfg.batch_size, cfg.total_steps) == (1e-5, 3e-4, 4000, 10_000_000)


def test_grf_presets_follow_the_papers_tables():
    # A2PO paper Tab. 11: 10 epochs, chunk 10, entropy 0.001, lr 5e-4, lambda 0.95, eps 0.25, gamma 0.995.
    for algo in ("a2po", "mappo"):
        cfg = make_config(f"{algo}-grf-5_vs_5")
        assert (cfg.algo, cfg.env, cfg.sharing, cfg.epochs, cfg.sequence_length, cfg.ent_coef) == (
            algo,
            "grf:5_vs_5",
            "nops",
            10,
            10,
            0.001,
        )
        assert (cfg.actor_lr, cfg.critic_lr, cfg.gae_lambda, cfg.clip_eps, cfg.gamma) == (5e-4, 5e-4, 0.95, 0.25, 0.995)
    # OPSPO paper Tab. 4: OPSPO 15 epochs, 0.95, eps1 0.2, eps2 0.1, omega_e 5, f_e 5, omega_n 10.
    cfg = make_config("opspo-grf-5_vs_5")
    assert (cfg.epochs, cfg.gae_lambda, cfg.clip_eps, cfg.opspo_eps2, cfg.omega_e, cfg.f_e, cfg.omega_n) == (
        15,
        0.95,
        0.2,
        0.1,
        5,
        5,
        10,
    )
    assert (cfg.gamma, cfg.ent_coef, cfg.actor_lr) == (0.995, 0.001, 5e-4)


#: How each paper preset runs the sequential update, with the line of the paper that says so:
#: (sharing, loop order, critic fit, citation). Keys are preset name prefixes.
PAPER_LOOPS = {
    "a2po-smax": ("fups", "epochs-outer", "per-unit", "A2PO App. B: sharing is Alg. 2; Alg. 2 line 12 refits V"),
    "a2po-mpe": ("fups", "epochs-outer", "per-unit", "A2PO App. B: sharing is Alg. 2; Alg. 2 line 12 refits V"),
    "opspo-smax-": ("fups", "epochs-outer", "per-unit", "OPSPO App. B: as A2PO; OPSPO Alg. 1 line 11 refits V"),
    "a2po-mamujoco-": ("nops", "agents-outer", "per-unit", "A2PO App. B.2.2: no sharing, Alg. 1; line 12 refits V"),
    "opspo-mamujoco-": ("nops", "agents-outer", "per-unit", "OPSPO App. B: as A2PO; OPSPO Alg. 1 line 11"),
    "a2po-grf-": ("nops", "agents-outer", "per-unit", "A2PO Alg. 1 (no sharing); line 12 refits V"),
    "opspo-grf-": ("nops", "agents-outer", "per-unit", "OPSPO Alg. 1 line 11; the rest as A2PO"),
}


def test_every_a2po_and_opspo_preset_runs_the_papers_loop_and_critic():
    from jaxseq.ordering import block_sizes
    from jaxseq.presets import PRESETS
    from jaxseq.schemes import unit_epochs

    for name in [p for p in PRESETS if p.startswith(("a2po", "opspo"))]:
        (prefix,) = [k for k in PAPER_LOOPS if name.startswith(k)]
        sharing, loop_order, critic_fit, cite = PAPER_LOOPS[prefix]
        cfg = make_config(name)
        assert (cfg.sharing, cfg.loop_order, cfg.critic_fit) == (sharing, loop_order, critic_fit), (name, cite)
        units = len(block_sizes(8, cfg.agent_blocks))  # with 8 agents, say
        passes, epochs = unit_epochs(cfg.loop_order, cfg.epochs, units)
        # Alg. 2 (lines 3-12): ceil(P / n) passes of one epoch per agent; Alg. 1: each agent all P epochs.
        want = (-(-cfg.epochs // units), 1) if sharing != "nops" else (1, cfg.epochs)
        assert (passes, epochs) == want, (name, cite)
    # The same preset with another algorithm: the A2PO-only fields do not apply (and are not refused).
    for algo in ("mappo", "fp3o", "happo"):
        cfg = make_config("a2po-smax", algo=algo)
        validate(cfg)
        assert cfg.critic_fit == "once" and (algo == "happo" or cfg.loop_order == "agents-outer")
    assert make_config("a2po-smax", algo="happo").loop_order == "epochs-outer"  # HAPPO's scheme reads it
    with pytest.raises(ConfigError, match="critic_fit: applies to a2po, happo_preopc, opspo only, got algo=mappo"):
        validate(make_config("a2po-smax", algo="mappo", critic_fit="per-unit"))  # set by the user: refused
    assert make_config("opspo-mamujoco-Ant-8x1").agent_blocks == 4  # as A2PO (Tab. 9's agent block row)


def test_the_functions_that_moved_to_configure_say_where():
    import jaxseq.config

    for name in ("make_config", "validate"):
        with pytest.raises(AttributeError, match=f"jaxseq.configure.{name}"):
            getattr(jaxseq.config, name)
