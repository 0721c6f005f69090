"""Training engine: configuration, shard streaming, Lightning modules, fit/resume, loading."""

import csv
import logging
import pickle
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from astrolearn.config import deep_merge, dump_config, load_config, parse_override, read_yaml
from astrolearn.errors import UserError
from astrolearn.io.shards import write_shard
from astrolearn.training import (
    ShardDataset,
    example_config,
    find_checkpoint,
    load_model,
    resolve_config,
    select_columns,
)

LENGTH = 12


def write_dataset(directory, n_shards=2, per_shard=24, seed=0):
    """Tiny data set: ``flux``/``noise`` (N, LENGTH); ``a`` linear in flux, ``b`` noisy, ``cls`` from flux."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(n_shards):
        flux = rng.normal(size=(per_shard, LENGTH)).astype(np.float32)
        noise = rng.uniform(0.5, 1.5, size=(per_shard, LENGTH)).astype(np.float32)
        a = flux[:, :4].sum(axis=1)
        params = np.stack([a, 100 + 10 * flux[:, 4] + rng.normal(size=per_shard), (a > 0).astype(int) + (a > 2)], axis=1)
        write_shard(directory / f"shard-{i:05d}.h5", {"flux": flux, "noise": noise}, params,
                    ["a", "b", "cls"], {"domain": "test"})
    return directory


def tiny_config(head, **sections):
    """A small, fast configuration (no dropout, so that reruns are reproducible)."""
    model = {"dim": 1, "blocks": [{"type": "conv", "filters": 4, "kernel": 3}, {"type": "dense", "units": 8}],
             "head": head}
    base = {"model": model, "data": {"batch_size": 8, "val_fraction": 0.25},
            "trainer": {"max_epochs": 2, "accelerator": "cpu", "devices": 1, "log_every_n_steps": 1}}
    return resolve_config(deep_merge(base, sections))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("shards"))


def regression_setup(data_dir, config=None, **data_kw):
    from astrolearn.training import ShardDataModule, build_module

    config = config or tiny_config({"type": "regression", "uncertainty": True})
    data = ShardDataModule(data_dir, "flux", select_columns("a", "b"), target_names=["a", "b"],
                           **{**config["data"], **data_kw})
    return config, data, build_module(config, data)


def weights(module):
    return {k: v.clone() for k, v in module.model.state_dict().items()}


# --- configuration -------------------------------------------------------------------------

def test_config_merge_overrides_and_dump(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("optimizer:\n  lr: 1e-3\nmodel: {dim: 1}\n")
    config = load_config(path, ["optimizer.name=sgd", "model.blocks=[]", {"trainer": {"max_epochs": 3}}],
                         defaults={"optimizer": {"name": "adam", "lr": 0.1}, "model": None, "trainer": {"max_epochs": 1}})
    assert config == {"optimizer": {"name": "sgd", "lr": 1e-3}, "model": {"dim": 1, "blocks": []},
                      "trainer": {"max_epochs": 3}}
    assert read_yaml(dump_config({"shape": (1, 2), **config}, tmp_path / "out.yaml")) == {"shape": [1, 2], **config}


@pytest.mark.parametrize("action, message", [
    (lambda p: load_config({"optimiser": {}}, defaults={"optimizer": {}}), "unknown configuration key 'optimiser'"),
    (lambda p: load_config({"optimizer": {"rate": 1}}, defaults={"optimizer": {"lr": 1}}), "'optimizer.rate'"),
    (lambda p: resolve_config({"model": {}, "scheduler": "cosine"}), "'scheduler' must be a mapping"),
    (lambda p: read_yaml(p / "missing.yaml"), "no such configuration file"),
    (lambda p: read_yaml(p), "not a readable YAML file"),
    (lambda p: parse_override("optimizer.lr"), "expected section.key=value"),
    (lambda p: parse_override("a=[1"), "not valid YAML"),
    (lambda p: resolve_config({}), "no model section"),
])
def test_config_errors_are_user_errors(tmp_path, action, message):
    with pytest.raises(UserError, match=message):
        action(tmp_path)


def test_resolving_twice_changes_nothing():
    config = tiny_config({"type": "regression"})
    assert resolve_config(config) == config and config["optimizer"]["name"] == "adamw"


# --- shard dataset -------------------------------------------------------------------------

def test_dataset_reads_samples_across_shards(data_dir):
    dataset = ShardDataset(data_dir, "flux", select_columns("b", "a"))
    assert len(dataset) == 48 and dataset.targets.shape == (48, 2) and dataset.targets.dtype == np.float32
    x, y = dataset[30]
    assert x.shape == (1, LENGTH) and x.dtype == torch.float32
    from astrolearn.io.shards import read_shard

    second = read_shard(data_dir / "shard-00001.h5")
    np.testing.assert_allclose(x[0].numpy(), second.arrays["flux"][6])
    np.testing.assert_allclose(y.numpy(), second.params[6, [1, 0]], rtol=1e-6)


def test_dataset_inputs_transform_and_labels(data_dir):
    stacked = ShardDataset(data_dir, ["flux", "noise"], lambda p, n: p[:, n.index("cls")].astype(int))
    x, label = stacked[0]
    assert x.shape == (2, LENGTH) and label.dtype == torch.int64 and stacked.targets.shape == (48,)
    weighted = ShardDataset(data_dir, ["flux", "noise"], transform=lambda a: (a["flux"] / a["noise"])[None])
    np.testing.assert_allclose(weighted[0].numpy(), (x[0] / x[1]).numpy()[None], rtol=1e-6)


def test_dataset_never_pickles_hdf5_handles(data_dir):
    dataset = ShardDataset(data_dir, "flux", select_columns("a"))
    first = dataset[0][0]
    assert dataset._files  # opened lazily by the read
    clone = pickle.loads(pickle.dumps(dataset))  # what a spawned data-loader worker receives
    assert clone._files == {}
    torch.testing.assert_close(clone[0][0], first)
    clone._pid = -1  # as in a forked worker: inherited handles are dropped, files reopened
    torch.testing.assert_close(clone[0][0], first)


@pytest.mark.parametrize("make, message", [
    (lambda d: ShardDataset(d, "images"), "no array 'images'"),
    (lambda d: ShardDataset(d, "flux", select_columns("r0")), "no column r0"),
    (lambda d: ShardDataset(d / "nowhere", "flux"), "no such data directory"),
])
def test_dataset_errors(data_dir, make, message):
    with pytest.raises(UserError, match=message):
        make(data_dir)


def test_datamodule_split_and_epoch_order_are_seeded(data_dir):
    _, data, _ = regression_setup(data_dir)
    assert len(data.val_indices) == 12 and len(data.train_indices) == 36
    assert not set(data.val_indices) & set(data.train_indices)
    _, again, _ = regression_setup(data_dir)
    np.testing.assert_array_equal(data.val_indices, again.val_indices)

    def order(dm, epoch):
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        return torch.cat([y for _, y in loader])

    torch.manual_seed(123)  # the order must not depend on the global random state
    first = order(data, 1)
    torch.manual_seed(456)
    torch.testing.assert_close(order(again, 1), first)
    assert not torch.equal(order(data, 0), first)
    assert data.input_shape == (1, LENGTH)


def test_datamodule_with_worker_process(data_dir):
    _, data, _ = regression_setup(data_dir, num_workers=1)
    x, y = next(iter(data.val_dataloader()))
    assert x.shape == (8, 1, LENGTH) and y.shape == (8, 2)


# --- modules and fit -----------------------------------------------------------------------

def test_regression_module_normalises_with_training_statistics(data_dir):
    _, data, module = regression_setup(data_dir)
    targets = data.train_targets()
    np.testing.assert_allclose(module.model.target_mean.numpy(), targets.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(module.model.target_std.numpy(), targets.std(axis=0), rtol=1e-5)
    assert module.model.names == ["a", "b"] and module.model.net.uncertainty


def test_classification_module_balanced_weights_and_names(data_dir):
    from astrolearn.training import ShardDataModule, build_module

    config = tiny_config({"type": "classification", "classes": ["low", "mid", "high"]},
                         loss={"class_weights": "balanced"})
    data = ShardDataModule(data_dir, "flux", lambda p, n: p[:, 2].astype(int), **config["data"])
    module = build_module(config, data)
    counts = np.bincount(data.train_targets(), minlength=3)
    np.testing.assert_allclose(module.model.class_weights.numpy(), 36 / (3 * counts), rtol=1e-6)
    assert module.model.names == ["low", "mid", "high"]
    with pytest.raises(UserError, match="gives class labels"):
        build_module(tiny_config({"type": "regression"}), data)


def file_probe(path):
    """Callback recording in ``existed`` whether ``path`` existed when training started."""
    import lightning as L

    class Probe(L.Callback):
        existed = None

        def on_train_start(self, trainer, module):
            self.existed = path.is_file()

    return Probe()


@pytest.fixture(scope="module")
def trained_run(data_dir, tmp_path_factory):
    """A finished regression run (2 epochs) and the module that was trained."""
    from astrolearn.training import fit

    run = tmp_path_factory.mktemp("run")
    config, data, module = regression_setup(data_dir)
    probe = file_probe(run / "config.yaml")
    trainer = fit(config, data, module, run, callbacks=[probe])
    return run, config, module, trainer, probe


def test_fit_writes_config_checkpoints_and_logs(trained_run):
    run, config, module, trainer, probe = trained_run
    assert probe.existed  # written before training started
    assert read_yaml(run / "config.yaml") == yaml.safe_load(yaml.safe_dump(config))
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert find_checkpoint(run).name.startswith("best-")
    logged = list(csv.DictReader(open(run / "csv" / "version_0" / "metrics.csv")))
    val = {int(r["epoch"]): float(r["val/loss"]) for r in logged if r.get("val/loss")}
    assert sorted(val) == list(range(config["trainer"]["max_epochs"]))  # one validation loss per epoch
    # The best checkpoint is the epoch of the lowest logged validation loss.
    assert find_checkpoint(run).name == f"best-epoch={min(val, key=val.get):03d}.ckpt"
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    metrics = trainer.callback_metrics
    assert {"val/loss", "val/mae/a", "val/mae/b", "val/mae_norm"} <= set(metrics)


def test_load_model_predicts_in_physical_units(trained_run, data_dir):
    run, config, module, trainer, _ = trained_run
    model = load_model(run, which="last")
    assert model.config == read_yaml(run / "config.yaml") and model.names == ["a", "b"]
    x = torch.randn(5, 1, LENGTH)
    module.eval()
    expected = module.model.outputs(module(x))
    out = model.predict(x.numpy(), batch_size=2)
    np.testing.assert_allclose(out["mean"], expected["mean"].detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["std"], expected["std"].detach().numpy(), rtol=1e-5)
    assert out["mean"][:, 1].mean() > 50  # target b is around 100: predictions are un-normalised
    with pytest.raises(UserError, match="trained on"):
        model.predict(np.zeros((2, 1, LENGTH + 1)))


def test_load_model_does_not_import_lightning(trained_run):
    code = ("import sys, numpy as np; from astrolearn.training import load_model; "
            f"m = load_model({str(trained_run[0])!r}); m.predict(np.zeros((2, 1, {LENGTH}))); "
            "bad = [n for n in sys.modules if n.split('.')[0] in ('lightning', 'pytorch_lightning', 'torchmetrics')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_existing_run_needs_resume_or_overwrite(trained_run, data_dir):
    from astrolearn.training import fit

    run = trained_run[0]
    config, data, module = regression_setup(data_dir)
    with pytest.raises(UserError, match="previous training run"):
        fit(config, data, module, run)
    other = deep_merge(config, {"model": {"blocks": [{"type": "dense", "units": 3}]}})
    with pytest.raises(UserError, match="model section differs"):
        fit(other, data, regression_setup(data_dir, other)[2], run, resume=True)
    with pytest.raises(UserError, match="nothing to resume"):
        fit(config, data, module, run / "fresh", resume=True)


def test_init_from_starts_from_a_runs_weights(trained_run, data_dir, tmp_path):
    from astrolearn.training import ShardDataModule, build_module, fit, load_model

    run = trained_run[0]
    config = deep_merge(trained_run[1], {"init_from": str(run), "optimizer": {"lr": 0.0}})
    _, data, module = regression_setup(data_dir, config)
    fit(config, data, module, tmp_path / "tuned", max_epochs=1)  # lr 0: the weights stay the loaded ones
    best = dict(load_model(run).named_parameters())
    tuned = dict(load_model(tmp_path / "tuned").named_parameters())
    assert tuned.keys() == best.keys()
    for key, value in tuned.items():
        torch.testing.assert_close(value, best[key], msg=key)
    other = deep_merge(config, {"model": {"blocks": [{"type": "dense", "units": 3}]}})
    with pytest.raises(UserError, match="another model section"):
        fit(other, data, regression_setup(data_dir, other)[2], tmp_path / "other", max_epochs=1)
    # Same network, other targets: a one-line error, and no run directory left behind.
    one = ShardDataModule(data_dir, "flux", select_columns("a"), target_names=["a"], **config["data"])
    with pytest.raises(UserError, match="init_from weights do not fit"):
        fit(config, one, build_module(config, one), tmp_path / "one", max_epochs=1)
    assert not (tmp_path / "one").exists()


def test_overwrite_replaces_previous_run(data_dir, tmp_path):
    from astrolearn.training import fit

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "best-epoch=009.ckpt").write_text("stale")
    (tmp_path / "notes.txt").write_text("kept")
    config, data, module = regression_setup(data_dir)
    fit(config, data, module, tmp_path, overwrite=True, max_epochs=1)
    assert [p.name for p in (tmp_path / "checkpoints").glob("best-*")] == ["best-epoch=000.ckpt"]
    assert (tmp_path / "notes.txt").read_text() == "kept"
    assert read_yaml(tmp_path / "config.yaml")["trainer"]["max_epochs"] == 1


def test_resume_matches_uninterrupted_training(data_dir, tmp_path):
    from astrolearn.training import fit

    sections = {"optimizer": {"name": "sgd", "lr": 0.05}, "scheduler": {"name": "step", "step_size": 1}}
    config = tiny_config({"type": "regression"}, **sections)
    _, data, module = regression_setup(data_dir, config)
    fit(config, data, module, tmp_path / "direct", max_epochs=2)

    _, data, first = regression_setup(data_dir, config)
    fit(config, data, first, tmp_path / "resumed", max_epochs=1)
    _, data, resumed = regression_setup(data_dir, config)
    trainer = fit(config, data, resumed, tmp_path / "resumed", max_epochs=2, resume=True)
    assert trainer.current_epoch == 2
    assert len(list((tmp_path / "resumed" / "csv").iterdir())) == 2  # one CSV log per start
    direct, after = weights(module), weights(resumed)
    assert not torch.allclose(weights(first)["net.3.weight"], after["net.3.weight"])
    for key in direct:
        torch.testing.assert_close(after[key], direct[key], rtol=1e-5, atol=1e-6)


def test_interrupted_fit_raises_keyboard_interrupt(data_dir, tmp_path, capsys):
    import lightning as L

    from astrolearn.training import fit

    class CtrlC(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            raise KeyboardInterrupt

    config, data, module = regression_setup(data_dir)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        fit(config, data, module, tmp_path, callbacks=[CtrlC()])
    assert signal.getsignal(signal.SIGINT) is handler  # Ctrl+C works again afterwards
    assert (tmp_path / "config.yaml").is_file()
    assert capsys.readouterr().out.splitlines()[-1] == \
        "stopped: interrupted during epoch 0; no epoch completed with a finite val/loss"


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_fit_says_why_it_stopped_without_lightning_banner(data_dir, tmp_path, capsys):
    from astrolearn.training import fit

    records = _Records()
    logging.getLogger("lightning.pytorch").addHandler(records)
    try:
        config, data, module = regression_setup(data_dir)
        fit(config, data, module, tmp_path / "max", max_epochs=2)
        # Frozen weights (learning rate 0, no batch-norm statistics) never improve val/loss: early
        # stopping after `patience` epochs.
        frozen = tiny_config({"type": "regression"}, optimizer={"lr": 0.0}, scheduler={"name": "none"},
                             trainer={"patience": 1, "max_epochs": 5}, model={"defaults": {"norm": "none"}})
        _, data, module = regression_setup(data_dir, frozen)
        fit(frozen, data, module, tmp_path / "early")
    finally:
        logging.getLogger("lightning.pytorch").removeHandler(records)
    assert not [m for m in records.messages if "available" in m or "Tip" in m or "Trainable params" in m]
    out = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("training ", "stopped: "))]
    assert out[0] == "training RegressionModel (456 trainable parameters) on 1 cpu device(s)"
    assert out[1].startswith("stopped: reached max_epochs=2; best epoch ")
    assert out[3].startswith("stopped: early stopping at epoch 1 (no improvement of val/loss for 1 epoch(s)); "
                             "best epoch 0 (val/loss=")
    assert out[3].endswith(", best-epoch=000.ckpt)")


def test_classification_fit_logs_accuracy(data_dir, tmp_path):
    from astrolearn.training import ShardDataModule, build_module, fit

    config = tiny_config({"type": "classification"}, scheduler={"name": "onecycle"},
                         loss={"class_weights": [1.0, 2.0, 1.0]})
    data = ShardDataModule(data_dir, ["flux", "noise"], lambda p, n: p[:, 2].astype(int), **config["data"])
    trainer = fit(config, data, build_module(config, data), tmp_path)
    assert {"val/acc", "val/recall/class0", "val/recall/class2", "lr-AdamW"} <= set(trainer.callback_metrics)
    out = load_model(tmp_path).predict(np.zeros((3, 2, LENGTH)))
    np.testing.assert_allclose(out["probs"].sum(axis=1), 1, rtol=1e-5)
    assert out["label"].dtype == np.int64


@pytest.mark.parametrize("scheduler", ["cosine", "step", "plateau", "onecycle"])
def test_optimizers_and_schedulers_from_config(scheduler):
    from astrolearn.training.optim import build_optimizer, build_scheduler

    params = [torch.nn.Parameter(torch.zeros(2))]
    for name in ("adam", "adamw", "sgd"):
        cfg = resolve_config({"model": {}, "optimizer": {"name": name, "lr": 0.01}})
        assert build_optimizer(params, cfg["optimizer"]).defaults["lr"] == 0.01
    cfg = resolve_config({"model": {}, "scheduler": {"name": scheduler}})
    sched = build_scheduler(build_optimizer(params, cfg["optimizer"]), cfg["scheduler"], 5, lambda: 20, "val/loss")
    assert sched["interval"] == ("step" if scheduler == "onecycle" else "epoch")
    with pytest.raises(UserError, match="optimizer.name"):
        build_optimizer(params, {**cfg["optimizer"], "name": "lbfgs"})


@pytest.mark.parametrize("name, shape, head", [("psf_cnn", (1, 128, 128), 20), ("zpdf_cnn", (1, 10000), 3)])
def test_example_configs_build(name, shape, head):
    from astrolearn.training import ClassificationModel, RegressionModel

    config = resolve_config(example_config(name))
    cls = RegressionModel if config["model"]["head"]["type"] == "regression" else ClassificationModel
    model = cls(config, shape, [str(i) for i in range(head)]).eval()
    raw = model(torch.randn(2, *shape))
    assert raw.shape == (2, head * (2 if model.net.uncertainty else 1))
    with pytest.raises(UserError, match="no example configuration"):
        example_config("nope")


def test_training_package_imports_without_lightning():
    code = ("import sys, astrolearn.training, astrolearn.training.run, astrolearn.config; "
            "assert 'lightning' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def _regression(config_loss, names=("a", "b", "c"), uncertainty=True):
    from astrolearn.training.tasks import RegressionModel

    config = resolve_config({"model": {"dim": 1, "blocks": [], "head": {"type": "regression",
                                                                          "uncertainty": uncertainty}},
                             "loss": config_loss})
    return RegressionModel(config, (1, 4), names, target_mean=[0.0, 1.0, 2.0], target_std=[1.0, 2.0, 4.0])


@pytest.mark.parametrize("uncertainty", [False, True])
def test_sign_free_loss_ignores_the_common_sign_of_its_group(uncertainty):
    model = _regression({"sign_free": ["a", "c"]}, uncertainty=uncertainty)
    raw = torch.randn(5, 6 if uncertainty else 3)
    y = torch.randn(5, 3)
    flipped = y * torch.tensor([-1.0, 1.0, -1.0])
    assert torch.allclose(model.loss(raw, y), model.loss(raw, flipped))
    plain = _regression({}, uncertainty=uncertainty)
    assert model.loss(raw, y) <= plain.loss(raw, y) + 1e-6
    # align() gives back the prediction with the sign nearest the truth.
    pred = torch.tensor([[1.0, 5.0, 2.0]])
    assert torch.allclose(model.align(pred, torch.tensor([[-1.0, 5.0, -2.0]])), torch.tensor([[-1.0, 5.0, -2.0]]))
    assert torch.allclose(model.align(pred, pred), pred)


def test_sign_free_names_must_be_targets():
    with pytest.raises(UserError, match="unknown targets"):
        _regression({"sign_free": ["z"]})


def test_beta_nll_weighs_each_term_by_its_variance():
    raw = torch.tensor([[0.5, 1.0, 2.0, np.log(4.0), 0.0, np.log(0.25)]], dtype=torch.float32)
    y = torch.tensor([[0.0, 1.0, 2.0]])
    plain, weighted = _regression({}), _regression({"nll_beta": 0.5})
    z = (y - plain.target_mean) / plain.target_std
    mean, log_var = raw.chunk(2, dim=1)
    terms = 0.5 * (log_var + (z - mean) ** 2 * torch.exp(-log_var))
    assert torch.isclose(plain.loss(raw, y), terms.mean())
    assert torch.isclose(weighted.loss(raw, y), (terms * torch.tensor([2.0, 1.0, 0.5])).mean())


def test_last_checkpoint_is_the_last_epoch_even_without_improvement(data_dir, tmp_path):
    """--resume continues from the last completed epoch, not from the best one."""
    from astrolearn.training import fit

    config = tiny_config({"type": "regression"}, optimizer={"lr": 0.0}, model={"defaults": {"norm": "none"}})
    _, data, module = regression_setup(data_dir, config)
    fit(config, data, module, tmp_path, max_epochs=3)  # frozen network: the validation loss never improves
    assert [p.name for p in (tmp_path / "checkpoints").glob("best-*")] == ["best-epoch=000.ckpt"]
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["epoch"] == 2


def test_start_guard_travels_to_spawned_processes(tmp_path):
    """ddp_spawn pickles the callbacks: training begun in a child is known to the parent's guard."""
    from astrolearn.training.guard import StartGuard

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("previous")
    guard = StartGuard(run)
    child = pickle.loads(pickle.dumps(guard.callback))
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_text("written after training began")
    child.guard.began()
    guard.undo()  # the parent, after the child failed mid-training: keep what training wrote
    assert (run / "checkpoints" / "last.ckpt").read_text() == "written after training began"
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.yaml"]
    # Before training begins, undo removes what the start wrote.
    fresh = StartGuard(tmp_path / "new")
    (tmp_path / "new" / "checkpoints").mkdir(parents=True)
    fresh.undo()
    assert not (tmp_path / "new").exists()
