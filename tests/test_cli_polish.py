"""Polish a daily user notices ([K]): `--version`, indexing something with no images in it, the same option
names everywhere, choices shown as choices, usage lines, and the plain-text output of dupes and eval."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import glimpse
from conftest import make_photo, make_photos
from glimpse.cli import app


def test_version_prints_the_package_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"glimpse {glimpse.__version__}"


def test_an_empty_folder_or_a_non_image_is_not_registered_as_a_root(open_lib, tmp_path, caplog):
    empty, text, pics = tmp_path / "empty", tmp_path / "notes.txt", tmp_path / "pics"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "readme.md").write_text("no pictures here")
    text.write_text("hello")
    make_photos(pics, 2)
    lib = open_lib()
    with caplog.at_level(logging.WARNING, logger="glimpse"):
        lib.index([empty, text, pics])
    notes = [r.getMessage() for r in caplog.records]
    assert any(f"no images found under {empty}" in n for n in notes)
    assert any(f"{text} is not an image" in n for n in notes)
    assert lib.catalog.roots() == [str(pics)]
    # a root that once held images stays a root when they are gone
    for photo in pics.iterdir():
        photo.unlink()
    lib.index([pics])
    assert lib.catalog.roots() == [str(pics)]


# -- the same option names, choices as choices, usage lines ------------------------------------------------
def _help(*args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.stdout


def test_help_imports_no_torch_numpy_or_faiss():
    code = ("import sys\nsys.argv = ['glimpse', '--help']\nfrom glimpse.cli import run\n"
            "try:\n    run()\nexcept SystemExit:\n    pass\n"
            "print('HEAVY', sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'numpy', "
            "'faiss', 'onnxruntime', 'PIL'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in done.stdout.splitlines()


_TEARDOWN_PROBE = """
import atexit, sys, threading
marker = sys.argv[1]
class Probe:  # module teardown calls __del__; os._exit skips it
    def __del__(self, open=open, name=marker + ".teardown"):  # builtins may be gone by then
        open(name, "w").close()
probe = Probe()
atexit.register(lambda: open(marker + ".atexit", "w").close())
if sys.argv[3] == "thread":  # a non-daemon thread still running: the interpreter must join it
    threading.Thread(target=__import__("time").sleep, args=(0.5,)).start()
sys.argv = ["glimpse", "--library", sys.argv[2], "models", "list", "--json"]
from glimpse.cli import main
main()
"""


@pytest.mark.parametrize("case", ["plain", "thread"])
def test_console_entry_ends_without_interpreter_teardown(tmp_path, case):
    """``main()`` ends the process once the command is done: output flushed, exit code and atexit handlers
    kept, module teardown skipped; with a non-daemon thread still running the interpreter exits as usual."""
    marker = tmp_path / "m"
    library = tmp_path / "lib"
    done = subprocess.run([sys.executable, "-c", _TEARDOWN_PROBE, str(marker), str(library), case],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) > 3  # the whole output arrived (stdout is a pipe: block-buffered)
    assert (tmp_path / "m.atexit").exists()
    assert (tmp_path / "m.teardown").exists() == (case == "thread")
    bad = subprocess.run([sys.executable, "-c", _TEARDOWN_PROBE.replace('"models", "list", "--json"', '"search", "x"'),
                          str(marker), str(tmp_path / "empty"), "plain"], capture_output=True, text=True)
    assert bad.returncode == 1 and "no library at" in bad.stderr  # a user error keeps its code and message


def test_invoked_command_skips_the_global_options():
    from glimpse.cli import invoked_command

    assert invoked_command(["--library", "search", "-m", "x", "index", "~/P"]) == "index"  # values are not commands
    assert invoked_command(["--library=/l", "-Lother", "--version", "search", "dog"]) == "search"
    assert invoked_command(["--store", "milvus://h:1", "--device", "cpu", "models", "list"]) == "models"
    assert invoked_command(["--", "status"]) == "status"
    assert invoked_command(["--help"]) is None and invoked_command([]) is None


def test_value_options_are_the_global_options_that_take_a_value():
    import typer.main

    from glimpse.cli import VALUE_OPTIONS

    group = typer.main.get_command(app)
    taking = {opt for p in group.params if not getattr(p, "is_flag", False) for opt in p.opts}
    assert taking == VALUE_OPTIONS


def test_the_command_line_builds_only_the_invoked_command(monkeypatch, capsys):
    """``run`` hands click an app holding just the named command; a wrong word and plain --help keep every
    command (click's suggestion, the full list), and the app is whole again afterwards."""
    import typer.main

    from glimpse import cli

    built: list[str] = []
    real = typer.main.get_command_from_info

    def counting(command_info, **kwargs):
        command = real(command_info, **kwargs)
        built.append(command.name)
        return command

    monkeypatch.setattr(typer.main, "get_command_from_info", counting)
    before = list(app.registered_commands), list(app.registered_groups)

    def run(*args: str) -> tuple[int, str]:
        built.clear()
        monkeypatch.setattr(sys, "argv", ["glimpse", *args])
        with pytest.raises(SystemExit) as stop:
            cli.run()
        captured = capsys.readouterr()
        return stop.value.code, captured.out + captured.err

    code, text = run("--library", "/nonexistent", "status", "--help")
    assert code == 0 and " status [OPTIONS]" in text and built == ["status"]
    code, text = run("models", "list", "--help")
    assert code == 0 and " models list [OPTIONS]" in text and "search" not in built
    code, text = run("serch", "dog")
    assert code == 2 and "No such command" in text and "search" in text and len(built) > 10
    code, text = run("--help")
    assert code == 0 and "index" in text and "similar" in text and len(built) > 10
    assert (list(app.registered_commands), list(app.registered_groups)) == before


def test_command_modules_never_import_the_cli():
    """The app imports the command modules, never the other way round (no cli <-> commands cycle)."""
    names = ["search", "understand", "tagging", "models", "scale", "common"]
    code = ("import sys\n" + "".join(f"import glimpse.commands.{n}\n" for n in names)
            + "print('CLI', 'glimpse.cli' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "CLI False" in done.stdout.splitlines()


@pytest.mark.parametrize("command", [
    ["index"], ["similar"], ["remove"], ["tag"], ["tag-calibrate"], ["tag-export"], ["export"],
    ["eval", "classify"], ["eval", "tags"], ["train", "probe"], ["dataset", "split"], ["dataset", "stats"],
    ["classify"], ["dupes"], ["search"],
])
def test_usage_lines_name_the_arguments(command):
    usage = next(line for line in _help(*command).splitlines() if "Usage:" in line)
    assert "{" not in usage and "}" not in usage
    words = usage.split("[OPTIONS]", 1)[1].split()
    assert words and all(w.strip("[].").isupper() for w in words), usage


def test_usage_line_examples():
    assert "glimpse index [OPTIONS] PATHS..." in _help("index")
    assert "glimpse export [OPTIONS] MODEL OUT" in _help("export")
    assert "glimpse dupes [OPTIONS] [PATHS]..." in _help("dupes")


@pytest.mark.parametrize("command", [["search"], ["similar"], ["classify"], ["tags"]])
def test_ranked_lists_take_k_and_top(command):
    text = _help(*command)
    assert "-k" in text and "--top" in text


@pytest.mark.parametrize(("args", "choices"), [
    (["--device", "tpu", "status"], "'cpu', 'cuda', 'mps'"),
    (["dupes", "--level", "fuzzy"], "'exact', 'perceptual', 'semantic'"),
    (["tag", "--tagger", "yolo", "x.jpg"], "'clip', 'ram'"),
    (["eval", "tags", "--tagger", "yolo", "labels.tsv"], "'clip', 'ram'"),
    (["train", "probe", "--kind", "svm", "data", "p.glimpse"], "'linear', 'prototype'"),
])
def test_choices_are_listed_and_a_bad_value_is_a_usage_error(args, choices):
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 2 and choices in result.stderr


def test_choices_show_in_help():
    assert "cpu|cuda|mps" in _help()
    assert "exact|perceptual|semantic" in _help("dupes")
    assert "clip|ram" in _help("tag")
    assert "local|ray" in _help("index")


def test_bench_batch_size_is_documented():
    line = next(line for line in _help("bench").splitlines() if "--batch-size" in line)
    assert "Images per encoder call" in line


def test_moderate_help_documents_the_policy_format():
    text = _help("moderate")
    for piece in ("[[category]]", 'name = "weapons"', "positive = ", "negative = ", "threshold = ", "action = ",
                  "flag", "reject", "examples/moderation-policy.toml"):
        assert piece in text


# -- plain-text output of dupes, eval classify, tags -------------------------------------------------------
@pytest.fixture()
def run(tmp_path, tiny_clip):
    runner = CliRunner()

    def _run(*args: str):
        return runner.invoke(app, ["--library", str(tmp_path / "lib"), "--model", str(tiny_clip), *args])

    return _run


def test_plain_dupes_lists_the_files_it_could_not_read(run, tmp_path):
    make_photos(tmp_path / "photos", 2)
    (tmp_path / "photos" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 40)
    assert run("index", str(tmp_path / "photos")).exit_code == 0
    result = run("dupes", str(tmp_path / "photos"))
    assert result.exit_code == 0, result.output
    assert "among 2 images" in result.stderr
    assert "1 file(s) could not be read" in result.stderr and "broken.jpg" in result.stderr
    # --json keeps them in "failed"
    data = json.loads(run("dupes", str(tmp_path / "photos"), "--json").stdout)
    assert [Path(f["path"]).name for f in data["failed"]] == ["broken.jpg"]


def test_plain_eval_classify_is_a_table(run, tmp_path):
    for c, name in enumerate(["red_thing", "blue_thing"]):
        for i in range(2):
            make_photo(tmp_path / "data" / name / f"{i}.png", seed=10 * c + i)
    assert run("train", "probe", str(tmp_path / "data"), str(tmp_path / "p.glimpse"), "--kind", "prototype"
               ).exit_code == 0
    report = json.loads(run("eval", "classify", str(tmp_path / "data"), "--probe", str(tmp_path / "p.glimpse"),
                            "--json").stdout)
    result = run("eval", "classify", str(tmp_path / "data"), "--probe", str(tmp_path / "p.glimpse"))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["class", "images", "zero-shot", "probe", "(prototype)"]
    rows = {line.rsplit(None, 3)[0].strip(): line.split()[-3:] for line in lines if line[:1].isalpha()}
    for name in ("blue thing", "red thing"):
        expected = [2, report["zero_shot"]["per_class"][name], report["probe"]["per_class"][name]]
        assert [int(rows[name][0]), float(rows[name][1]), float(rows[name][2])] == pytest.approx(expected, abs=1e-4)
    assert [float(v) for v in rows["overall top-1"][1:]] == pytest.approx(
        [report["zero_shot"]["top1"], report["probe"]["top1"]], abs=1e-4)
    assert "overall top-5" in rows


def test_tags_takes_k_and_the_old_n(run, tmp_path):
    make_photos(tmp_path / "photos", 1)
    assert run("index", str(tmp_path / "photos")).exit_code == 0
    for option in ("-k", "--top", "-n"):
        result = run("tags", option, "3", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == []
    assert "-n" not in _help("tags").split()


def test_train_probe_and_moderate_calibrate_take_a_relative_folder(run, tmp_path, monkeypatch):
    for c, name in enumerate(["weapons", "safe"]):
        for i in range(2):
            make_photo(tmp_path / "data" / name / f"{i}.png", seed=10 * c + i)
    monkeypatch.chdir(tmp_path)
    result = run("train", "probe", "data", "p.glimpse", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["images"] == 4
    policy = Path(__file__).resolve().parents[1] / "examples" / "moderation-policy.toml"
    result = run("moderate", "--policy", str(policy), "--calibrate", "data", "--target-precision", "0.5", "--json")
    assert result.exit_code == 0, result.output
    weapons = json.loads(result.stdout)["categories"][0]
    assert weapons["category"] == "weapons" and weapons["positives"] == 2
