"""The restricted unpickler: River models load, hostile pickles do nothing and are refused."""

from __future__ import annotations

import doctest
import io
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from river import cluster, ensemble, facto, linear_model, optim

import riverflow.consumers.inference.model_follower
import riverflow.online_model.snapshot
import riverflow.online_model.unpickler
from riverflow.errors import ConfigError, SnapshotError
from riverflow.online_model.evaluation import Evaluator
from riverflow.online_model.presets import PRESETS, resolve
from riverflow.online_model.snapshot import EVALUATION_MODULES
from riverflow.online_model.unpickler import Allowlist, restricted_load


def restricted_loads(payload: bytes, allow: Allowlist) -> Any:
    return restricted_load(io.BytesIO(payload), allow)


# -- a tiny pickle assembler: what an attacker writes by hand ------------------------------


def glob(module: str, name: str) -> bytes:
    return f"c{module}\n{name}\n".encode()


def text(value: str) -> bytes:
    return b"V" + value.encode("raw_unicode_escape") + b"\n"


def call(fn: bytes, *args: bytes) -> bytes:
    return fn + b"(" + b"".join(args) + b"tR"


def listing(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"l"


def refused(payload: bytes, allow: Allowlist | None = None) -> SnapshotError:
    with pytest.raises(SnapshotError) as info:
        restricted_loads(payload, allow or Allowlist())
    assert info.value.reason == "forbidden_class"
    return info.value


# -- legitimate models -----------------------------------------------------------------------


def rows(n: int = 400) -> list[dict[str, float]]:
    rng = random.Random(7)
    return [{f"f{j}": rng.gauss(0, 1) for j in range(5)} for _ in range(n)]


def learned(model: Any, task: str) -> Any:
    for x in rows():
        if task == "anomaly":
            model.learn_one(x)
        elif task == "regression":
            model.learn_one(x, 2 * x["f0"] + x["f1"])
        else:
            model.learn_one(x, x["f0"] + x["f1"] > 0)
    return model


def answers(model: Any, task: str) -> list[Any]:
    probe = rows(20)
    if task == "anomaly":
        return [model.score_one(x) for x in probe]
    if task == "regression":
        return [model.predict_one(x) for x in probe]
    return [model.predict_proba_one(x) for x in probe]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_round_trips_after_learning(name: str) -> None:
    spec = PRESETS[name]
    model = learned(spec.build(), spec.task)
    back = restricted_loads(pickle.dumps(model, pickle.HIGHEST_PROTOCOL), Allowlist())
    assert type(back) is type(model)
    assert answers(back, spec.task) == answers(model, spec.task)


@pytest.mark.parametrize(
    "factory",
    [
        "tests.learner_models:counting",
        "tests.integration.inference_support:exploding",
        "tests.integration.inference_support:slow",
    ],
)
def test_the_test_suites_custom_factories_load_when_their_module_is_allowed(
    factory: str,
) -> None:
    module = factory.split(":")[0]
    spec = resolve(factory)
    model = spec.build()
    for n in range(100):
        model.learn_one({"n": n, "a": n % 7, "b": -n}, n % 3 == 0)
    blob = pickle.dumps(model, pickle.HIGHEST_PROTOCOL)
    back = restricted_loads(blob, Allowlist([module]))
    probe = {"n": 1, "a": 2, "b": 3}
    assert type(back) is type(model)
    assert back.predict_proba_one(probe) == model.predict_proba_one(probe)
    assert getattr(back, "seen", None) == getattr(model, "seen", None)
    assert f"{module}." in str(refused(blob))  # not without its module


@pytest.mark.parametrize(
    "model",
    [
        cluster.KMeans(seed=1),  # keeps rng.gauss: getattr(Random, "gauss") in the pickle
        ensemble.LeveragingBaggingClassifier(linear_model.LogisticRegression(), seed=1),
        facto.FMClassifier(seed=1),  # numpy arrays, scalars and a RandomState
    ],
    ids=type,
)
def test_river_models_with_bound_methods_and_numpy_state_load(model: Any) -> None:
    task = "anomaly" if isinstance(model, cluster.KMeans) else "classification"
    if task == "anomaly":
        for x in rows():
            model.learn_one(x)
        back = restricted_loads(pickle.dumps(model), Allowlist())
        assert [back.predict_one(x) for x in rows(20)] == [model.predict_one(x) for x in rows(20)]
        return
    learned(model, task)
    back = restricted_loads(pickle.dumps(model), Allowlist())
    assert answers(back, task) == answers(model, task)


@pytest.mark.parametrize("protocol", [4, 5])
def test_numpy_values_load_in_every_protocol(protocol: int) -> None:
    values = {
        "floats": np.arange(6.0).reshape(2, 3),
        "strided": np.arange(10.0)[::2],
        "objects": np.array([1, "a", None], dtype=object),
        "scalar": np.float64(1.5),
        "generator": np.random.default_rng(3),
        "legacy": np.random.RandomState(3),
    }
    back = restricted_loads(pickle.dumps(values, protocol), Allowlist())
    assert np.array_equal(back["floats"], values["floats"])
    assert np.array_equal(back["strided"], values["strided"])
    assert list(back["objects"]) == [1, "a", None] and back["scalar"] == 1.5
    assert back["generator"].random() == np.random.default_rng(3).random()
    assert back["legacy"].rand() == np.random.RandomState(3).rand()


# -- hostile pickles -----------------------------------------------------------------------


def test_the_marker_pickle_is_real_and_the_restricted_unpickler_refuses_it(
    tmp_path: Path,
) -> None:
    """The same bytes run a shell command under plain pickle.loads."""
    payload = call(glob("os", "system"), text(f"touch {tmp_path / 'plain'}")) + b"."
    pickle.loads(payload)  # noqa: S301 - the control: what the wall stops
    assert (tmp_path / "plain").exists()
    marker = tmp_path / "restricted"
    refused(call(glob("os", "system"), text(f"touch {marker}")) + b".")
    assert not marker.exists()


@pytest.mark.parametrize(
    "make",
    [
        lambda m: call(glob("os", "system"), text(f"touch {m}")),
        lambda m: call(glob("posix", "system"), text(f"touch {m}")),
        lambda m: call(glob("subprocess", "Popen"), listing(text("touch"), text(m))),
        lambda m: call(glob("subprocess", "getoutput"), text(f"touch {m}")),
        lambda m: call(glob("builtins", "eval"), text(f"open({m!r}, 'w')")),
        lambda m: call(glob("builtins", "exec"), text(f"open({m!r}, 'w')")),
        lambda m: call(glob("builtins", "open"), text(m), text("w")),
        lambda m: call(glob("io", "open"), text(m), text("w")),
        lambda m: call(glob("pathlib", "Path.touch"), call(glob("pathlib", "Path"), text(m))),
        lambda m: call(
            glob("builtins", "getattr"),
            call(glob("builtins", "__import__"), text("os")),
            text("system"),
        ),
        # An allowed module's own imports do not leak: river.utils.pandas imports importlib.
        lambda m: call(glob("river.utils.pandas", "importlib.import_module"), text("os")),
        # River's dataset code downloads and writes files.
        lambda m: call(glob("river.datasets.base", "RemoteDataset.download"), text(m)),
        lambda m: call(glob("numpy", "save"), text(m), call(glob("numpy", "ones"), b"I1\n")),
    ],
)
def test_hostile_pickles_are_refused_and_run_nothing(make: Any, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    refused(make(str(marker)) + b".")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("builtins", "eval"),
        ("builtins", "exec"),
        ("builtins", "compile"),
        ("builtins", "__import__"),
        ("builtins", "open"),
        ("builtins", "type"),
        ("builtins", "object"),
        ("builtins", "breakpoint"),
        ("builtins", "globals"),
        ("os", "system"),
        ("os", "execv"),
        ("nt", "system"),
        ("subprocess", "Popen"),
        ("subprocess", "run"),
        ("importlib", "import_module"),
        ("pickle", "loads"),
        ("marshal", "loads"),
        ("types", "CodeType"),
        ("types", "FunctionType"),
        ("operator", "attrgetter"),
        ("operator", "methodcaller"),
        ("copyreg", "_reconstructor"),
        ("functools", "reduce"),
        ("runpy", "run_path"),
        ("shutil", "rmtree"),
        ("socket", "socket"),
        ("ctypes", "CDLL"),
        ("numpy", "load"),
        ("numpy", "fromfile"),
        ("numpy.lib.npyio", "load"),
        ("numpy.testing", "assert_"),
        ("scipy.io", "loadmat"),
        ("river.stream", "iter_csv"),
        ("river.checks", "check_estimator"),
        ("river", "datasets.Phishing"),
        ("river.compose.pipeline", "Pipeline.__init__"),
        ("river.compose.pipeline", "Pipeline.__init__.__globals__"),
        ("river.optim.sgd", "SGD.__subclasses__"),
        ("river.optim.sgd", "SGD.__class__"),
        ("river.base.base", "typing"),  # a module, not a class or function
        ("river.base.base", "inspect.getsource"),
    ],
)
def test_dangerous_names_never_resolve(module: str, name: str) -> None:
    with pytest.raises(SnapshotError) as info:
        Allowlist().resolve(module, name)
    assert info.value.reason == "forbidden_class"


def getattr_of(target: bytes, name: str) -> bytes:
    return call(glob("builtins", "getattr"), target, text(name))


RANDOM = call(glob("random", "Random"), b"I1\n")
SGD = call(glob("river.optim.sgd", "SGD"))


@pytest.mark.parametrize(
    "payload",
    [
        getattr_of(SGD, "__class__"),
        getattr_of(SGD, "__init__"),
        getattr_of(RANDOM, "__reduce_ex__"),
        getattr_of(glob("river.optim.sgd", "SGD"), "mro"),  # a class, not an instance
        getattr_of(glob("river.optim.sgd", "SGD.step"), "__globals__"),
        getattr_of(getattr_of(SGD, "__init__"), "__globals__"),
        getattr_of(b"(dp0\n", "get"),  # a dict: not an allowed instance
        getattr_of(call(glob("numpy", "ones"), b"I2\n"), "tofile"),  # ndarray.tofile writes
        getattr_of(call(glob("functools", "partial"), glob("river.optim.sgd", "SGD")), "func"),
    ],
)
def test_getattr_gives_only_bound_methods_of_allowed_instances(payload: bytes) -> None:
    refused(payload + b".")


def test_getattr_stand_in_returns_the_bound_method_pickle_needs() -> None:
    method = restricted_loads(getattr_of(RANDOM, "gauss") + b".", Allowlist())
    assert method.__self__.__class__ is random.Random and method.__name__ == "gauss"


def short(value: str) -> bytes:
    raw = value.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def test_a_pickle_that_changes_a_class_is_refused_and_the_class_restored() -> None:
    step = optim.SGD.step
    # STACK_GLOBAL river.optim.sgd SGD, BUILD (None, {"step": 1, "planted": 2}) on the class.
    payload = (
        b"\x80\x04"
        + short("river.optim.sgd")
        + short("SGD")
        + b"\x93N}("
        + short("step")
        + b"K\x01"
        + short("planted")
        + b"K\x02u\x86b."
    )
    assert "tried to modify river.optim.sgd.SGD" in str(refused(payload))
    assert optim.SGD.step is step and not hasattr(optim.SGD, "planted")


def test_a_pickle_that_changes_a_function_is_refused_and_the_function_restored() -> None:
    fn = optim.SGD.step
    defaults = fn.__defaults__
    # BUILD (None, {"__defaults__": (1,)}) on a River function: every caller would see it.
    payload = (
        b"\x80\x04"
        + short("river.optim.sgd")
        + short("SGD.step")
        + b"\x93N}("
        + short("__defaults__")
        + b"K\x01\x85"
        + b"u\x86b."
    )
    assert "tried to modify river.optim.base.Optimizer.step" in str(refused(payload))
    assert fn.__defaults__ is defaults


# -- operator settings ---------------------------------------------------------------------


def test_snapshots_from_before_the_riverflow_namespace_still_load() -> None:
    # riverflow 0.1.0 installed online_model as a top-level package; its snapshots' evaluation
    # state names the classes there. Protocol 2 writes each as a text line (GLOBAL).
    evaluator = Evaluator("classification", window=10)
    evaluator.update(True, False, {True: 0.2, False: 0.8})
    new = pickle.dumps(evaluator, protocol=2, fix_imports=False)
    old = new.replace(b"criverflow.online_model.", b"conline_model.")
    assert old != new and b"riverflow" not in old
    loaded = restricted_load(io.BytesIO(old), Allowlist(EVALUATION_MODULES))
    assert type(loaded) is Evaluator and list(loaded.values()) == list(evaluator.values())


@pytest.mark.parametrize(
    "module",
    ["os", "builtins", "subprocess", "importlib.util", "numpy", "numpy.lib", "scipy", "pickle"]
    + ["river.datasets", "river.stream.iter_csv"],
)
def test_an_operator_cannot_allow_modules_that_reach_files_or_processes(module: str) -> None:
    with pytest.raises(ConfigError) as info:
        Allowlist(["mymodels", module])
    assert repr(module) in str(info.value)


def test_an_allowed_module_admits_what_it_defines_not_what_it_imports() -> None:
    allow = Allowlist([" tests.learner_models ", ""])
    assert allow.modules == ("tests.learner_models",)
    assert allow.resolve("tests.learner_models", "counting").__name__ == "counting"
    with pytest.raises(SnapshotError):
        allow.resolve("tests.learner_models", "base.Classifier.__init__")
    with pytest.raises(SnapshotError):
        allow.resolve("tests.learner_models", "Any")  # typing.Any, imported there


@pytest.mark.parametrize(
    "module",
    [
        riverflow.online_model.unpickler,
        riverflow.online_model.snapshot,
        riverflow.consumers.inference.model_follower,
    ],
)
def test_docstring_examples(module: Any) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
