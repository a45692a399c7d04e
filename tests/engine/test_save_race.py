"""Saving is exclusive and crash-safe: two processes (or threads) saving one name — exactly one gets it, the
other's model is kept under a free name or refused before writing, never lost; kill -9 during a save leaves
no half-written model listed, and start-up clean-up removes its temporaries."""
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

from cnn.store import registry as reg
from tests.conftest import ROOT

SAVER = r"""
import json, sys, time
from pathlib import Path
from cnn.model.builder import build_model
from cnn.core.errors import RegistryError
from cnn.store.registry import save_model, using_models_dir
from cnn.model.spec import Conv2D, Flatten, ModelSpec

spec = ModelSpec(layers=[Conv2D(int(sys.argv[1]), 3), Flatten()])
model = build_model(spec)
print("ready", flush=True)
for line in sys.stdin:  # one command a line
    command, *args = line.split()
    if command == "race":  # ROUNDS START INTERVAL: save race-<r> at START + r·INTERVAL (the clock's time)
        rounds, start, interval = int(args[0]), float(args[1]), float(args[2])
        for r in range(rounds):
            time.sleep(max(0.0, start + r * interval - time.time()))
            if_taken = "rename" if r % 2 == 0 else "error"
            try:
                info = save_model(f"race-{r}", model, spec, {"epoch": [1]}, {"epochs": 1}, if_taken=if_taken)
                print(json.dumps({"round": r, "name": info.name, "params": info.params}), flush=True)
            except RegistryError as exc:
                print(json.dumps({"round": r, "refused": str(exc)}), flush=True)
        print("done", flush=True)
    elif command == "forever":  # FOLDER: save one model after another there until killed
        with using_models_dir(Path(args[0])):
            i = 0
            while True:
                save_model(f"k-{i}", model, spec, {"epoch": [1]}, {"epochs": 1}, if_taken="rename")
                if i == 0:
                    print("saving", flush=True)  # one whole model is there: the kill may come
                i += 1
"""
ROUNDS = 8  # race rounds: even ones keep the loser under a free name, odd ones refuse it


@pytest.fixture(scope="module")
def savers(tmp_path_factory):
    """Three saver processes (a model of 2, 3 and 2 filters) for both process tests, started together so that
    their TensorFlow imports overlap: the first two race for one registry, then all three are killed while
    saving. {"registry": the race's registry, "procs": [process, …]}."""
    registry = tmp_path_factory.mktemp("savers") / "race"
    env = {**os.environ, "CNN_MODELS_DIR": str(registry), "TF_CPP_MIN_LOG_LEVEL": "3"}
    procs = [subprocess.Popen([sys.executable, "-c", SAVER, str(filters)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
             for filters in (2, 3, 2)]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        yield {"registry": registry, "procs": procs}
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdin.close(), proc.stdout.close(), proc.stderr.close()


def tell(proc, line: str) -> None:
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def replies(proc) -> list[dict]:
    """What a saver printed for its last race, up to its "done"."""
    lines = []
    while (line := proc.stdout.readline()) and line.strip() != "done":
        lines.append(json.loads(line))
    assert line, f"the saver ended early: {proc.stderr.read()[-3000:]}"
    return lines


def test_two_processes_saving_one_name_exactly_one_gets_it(savers, monkeypatch):
    """(Before the kill test, which ends the savers: the module runs in file order, one process per file.)"""
    registry = savers["registry"]
    monkeypatch.setenv("CNN_MODELS_DIR", str(registry))
    racers = dict(zip((2, 3), savers["procs"][:2]))  # by their models' filters
    start = time.time() + 0.5
    for proc in racers.values():
        tell(proc, f"race {ROUNDS} {start} 0.5")  # a tiny model saves in ~0.1 s
    results = {filters: {r["round"]: r for r in replies(proc)} for filters, proc in racers.items()}
    params = {f: reg.model_info(next(r["name"] for r in results[f].values() if "name" in r)).params for f in (2, 3)}
    outcomes = []
    for r in range(ROUNDS):
        got = {f: results[f][r] for f in (2, 3)}
        winners = [f for f in got if got[f].get("name") == f"race-{r}"]
        assert len(winners) == 1, got  # exactly one takes the name
        loser = got[5 - winners[0]]
        if "name" in loser:  # kept under a free name, intact
            assert loser["name"] == f"race-{r}-2" and reg.model_info(loser["name"]).params == params[5 - winners[0]]
            outcomes.append("renamed")
        else:  # refused before writing anything ("error" rounds when the name was already taken)
            assert r % 2 == 1 and "already exists" in loser["refused"]
            outcomes.append("refused")
        assert reg.model_info(f"race-{r}").params == params[winners[0]]
    print(f"\n{ROUNDS} rounds: the name went to exactly one saver each time; the other was {outcomes}")
    assert sorted(p.name for p in registry.iterdir() if p.name.startswith(".")) == []


def test_two_threads_saving_one_name(registry, small_spec):
    from cnn.model.builder import build_model

    models = [build_model(small_spec) for _ in range(4)]
    barrier, names = threading.Barrier(len(models)), [None] * len(models)

    def save(i):
        barrier.wait()
        names[i] = reg.save_model("same", models[i], small_spec, {}, {"epochs": i}, if_taken="rename").name

    threads = [threading.Thread(target=save, args=(i,)) for i in range(len(models))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(names) == ["same", "same-2", "same-3", "same-4"]
    assert sorted(reg.model_info(n).epochs for n in names) == [0, 1, 2, 3]  # four models, none replaced


def test_kill_during_save_leaves_no_half_model_and_start_up_cleans(savers, tmp_path):
    from cnn.store.housekeeping import clean_up_at_start

    rng, left_behind = random.Random(0), 0
    for i, proc in enumerate(savers["procs"]):
        folder = tmp_path / f"run-{i}"
        tell(proc, f"forever {folder}")
        assert proc.stdout.readline().strip() == "saving", proc.stderr.read()[-3000:]
        time.sleep(rng.uniform(0.3, 1.5))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        with reg.using_models_dir(folder):
            temporaries = [p for p in folder.iterdir() if p.name.startswith(".tmp-")]
            left_behind += len(temporaries)
            for info in reg.list_models():  # every listed model is whole
                assert info.usable and not info.damaged, info.problems
                assert all((info.path / f).is_file() for f in reg.FILES)
            removed = clean_up_at_start()
            assert sorted(removed) == sorted(temporaries)
            assert not [p for p in folder.iterdir() if p.name.startswith(".")]
            assert reg.load_model(reg.list_models()[-1].name) is not None
    assert left_behind >= 1  # the kills did land inside saves


def test_a_trained_model_whose_name_was_taken_meanwhile_is_kept_and_the_user_told(registry, trained, tmp_path,
                                                                                   monkeypatch):
    from cnn.run.workflows import evaluate_and_save, saved_as_message

    result, spec, data = trained
    reg.save_model("mine", result.model, spec, {}, {"epochs": 1})  # another run took the name meanwhile
    _, info = evaluate_and_save(result, spec, data, name="mine")
    assert info.name == "mine-2" and reg.model_info("mine").epochs == 1
    assert saved_as_message("mine", info.name) == ("the name 'mine' was taken by another model while this one "
                                                   "trained, so it was saved as 'mine-2'")
    assert saved_as_message("mine", "mine") == "saved as 'mine'"
    # A shipped model's name is never free: the message says so instead of blaming another save.
    monkeypatch.setenv("CNN_SHIPPED_DIR", str(tmp_path))
    (tmp_path / reg.SHIPPED_LIST).write_text('{"models": ["mnist-default"]}')
    assert saved_as_message("mnist-default", "mnist-default-2") == (
        "the name 'mnist-default' belongs to a model that ships with the app, so this one was saved as "
        "'mnist-default-2'")
