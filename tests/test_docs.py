"""The README and docs/ as a reader follows them.

- Every ```python block runs as written, each on its own, in a folder that holds what the
  docs name (``runs/demo/best.onnx``, ``photo.jpg``, ``photos/``, ``data/`` ...). The model
  there is the hand-built colour model of :mod:`tests.onnx_models` (no training needed);
  the Triton client talks to a stand-in server that answers from the repository
  ``tseg-export --triton`` writes.
- Every command line of a ```bash block names options its command has: the ``tseg-*``
  commands (and ``torchrun -m tseg.train.cli``) through their click commands, value
  choices and ranges included; ``python benchmarks/X.py`` and ``python -m MODULE`` by
  their source; ``make`` by the Makefile's targets. A ``--score-submission`` CSV must
  come from the split it is scored against.
- Every ``tseg-infer`` line runs for real on that folder (not ``--device cuda/tensorrt`` or ``--crf-device cuda``).
- Links and the README's length: :mod:`tests.test_docs_links`.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import shutil
import sys
import types
from importlib.metadata import entry_points
from pathlib import Path

import click
import numpy as np
import pytest
from PIL import Image

from tests.docs_pages import PAGES, README, ROOT, SHELL_WORDS, Block, all_blocks, code_blocks, command_lines
from tests.onnx_models import colour_blocks_image, colour_labels, write_colour_model
from tests.tiny_coco import write_tiny_coco

# What a real tseg-infer run cannot do here.
NEEDS_A_GPU = re.compile(r"--(crf-)?device[ =](cuda|tensorrt)")


# ---------------------------------------------------------------------------------------- a reader's folder


def _write_jpeg(path: Path, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    image = colour_blocks_image(rng, height, width)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=95)
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def reader_folder(tmp_path_factory) -> Path:
    """What the docs' examples expect to find: models, photos, a COCO dataset with a test split."""
    root = tmp_path_factory.mktemp("reader")
    for run in ("demo", "v5"):
        write_colour_model(root / "runs" / run / "best.onnx")
    write_colour_model(root / "runs" / "v5" / "best.int8.onnx")  # a stand-in: the examples compare FP32 and INT8
    rng = np.random.default_rng(18)
    photo = _write_jpeg(root / "photo.jpg", rng, 60, 80)
    labels, _ = colour_labels(photo)
    Image.fromarray(labels.astype(np.uint8)).save(root / "photo.truth.png")
    for name, (height, width) in {"a.jpg": (48, 64), "b.jpg": (70, 50)}.items():
        _write_jpeg(root / "photos" / name, rng, height, width)
    data = root / "data"
    data.mkdir()
    write_tiny_coco(data)
    test = json.loads((data / "val.json").read_text())
    test["annotations"] = []  # a test split: images, no annotations
    (data / "test.json").write_text(json.dumps(test))
    return root


@pytest.fixture
def in_reader_folder(reader_folder, tmp_path, monkeypatch) -> Path:
    """A fresh copy of the reader's folder as the working directory."""
    folder = tmp_path / "work"
    shutil.copytree(reader_folder, folder)
    monkeypatch.chdir(folder)
    monkeypatch.setenv("DATA", "data")
    return folder


# ---------------------------------------------------------------------------------------- Python blocks


class _TritonStandIn:
    """The few calls of tritonclient.http the docs make, answered from a model repository on disk."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo

    def module(self) -> types.ModuleType:
        module = types.ModuleType("tritonclient.http")
        repo = self.repo

        class InferInput:
            def __init__(self, name, shape, datatype):
                assert datatype == "FP32", datatype
                self.name, self.shape, self.data = name, list(shape), None

            def set_data_from_numpy(self, array):
                assert list(array.shape) == self.shape and array.dtype == np.float32
                self.data = array

        class Result:
            def __init__(self, outputs):
                self.outputs = outputs

            def as_numpy(self, name):
                return self.outputs[name]

        class InferenceServerClient:
            def __init__(self, url):
                self.url = url

            def get_model_config(self, name):
                from google.protobuf import json_format, text_format
                from tritonclient.grpc import model_config_pb2

                text = (repo / name / "config.pbtxt").read_text(encoding="utf-8")
                config = text_format.Parse(text, model_config_pb2.ModelConfig())
                return json_format.MessageToDict(config, preserving_proto_field_name=True)

            def infer(self, name, inputs):
                import onnxruntime

                session = onnxruntime.InferenceSession(str(repo / name / "1" / "model.onnx"),
                                                       providers=["CPUExecutionProvider"])
                feeds = {i.name: i.data for i in inputs}
                names = [o.name for o in session.get_outputs()]
                return Result(dict(zip(names, session.run(names, feeds), strict=True)))

        module.InferInput = InferInput
        module.InferenceServerClient = InferenceServerClient
        return module


def _triton_stand_in(folder: Path, monkeypatch) -> None:
    from tseg.export.triton import write_triton_model

    repo = folder / "triton_repo"
    write_triton_model(folder / "runs" / "demo" / "best.onnx", repo, name="best")
    import tritonclient

    module = _TritonStandIn(repo).module()
    monkeypatch.setitem(sys.modules, "tritonclient.http", module)
    monkeypatch.setattr(tritonclient, "http", module, raising=False)


PYTHON_BLOCKS = all_blocks("python")


def test_the_docs_have_python_examples():
    assert len(PYTHON_BLOCKS) >= 6, [b.where for b in PYTHON_BLOCKS]


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[b.where for b in PYTHON_BLOCKS])
def test_python_block_runs(block, in_reader_folder, monkeypatch):
    if "tritonclient" in block.text:
        _triton_stand_in(in_reader_folder, monkeypatch)
    code = compile(block.text, block.where, "exec")
    exec(code, {"__name__": "__docs__"})


# ---------------------------------------------------------------------------------------- shell blocks


def _declared_scripts() -> dict[str, str]:
    """The tseg-* console scripts pyproject.toml declares (name -> "module:attr"): what a fresh install
    creates, even where the installed metadata predates a new script; the installed ones before Python 3.11."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        return {e.name: e.value for e in entry_points(group="console_scripts") if e.name.startswith("tseg-")}
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    return {name: value for name, value in scripts.items() if name.startswith("tseg-")}


def _console_scripts() -> dict[str, click.Command]:
    commands = {}
    for name, value in _declared_scripts().items():
        module, _, attr = value.partition(":")
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command), name
        commands[name] = command
    return commands


@pytest.fixture(scope="module")
def clis() -> dict[str, click.Command]:
    return _console_scripts()


def check_click_args(command: click.Command, name: str, args: list[str], where: str, *,
                     partial: bool = False) -> dict[str, list[str]]:
    """Each option exists, takes the values given (choices and ranges checked); returns option -> values.

    ``partial``: the words name options in prose (`tseg-bench --json`): a value may be left out.
    """
    options = {opt: p for p in command.params if isinstance(p, click.Option) for opt in (*p.opts, *p.secondary_opts)}
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    room = sum(a.nargs if a.nargs > 0 else 10**6 for a in arguments)
    given: dict[str, list[str]] = {}
    positional, index = 0, 0
    while index < len(args):
        word = args[index]
        if not word.startswith("-") or word == "-":
            positional += 1
            assert positional <= room, f"{where}: {name} takes no argument {word!r} here"
            index += 1
            continue
        flag, equals, inline = word.partition("=")
        if partial and "/" in flag:  # prose naming several options: `tseg-infer --out/--overlay`
            missing = [f for f in flag.split("/") if f not in options]
            assert not missing, f"{where}: {name} has no option {', '.join(missing)} (see {name} --help)"
            index += 1
            continue
        param = options.get(flag)
        assert param is not None, f"{where}: {name} has no option {flag} (see {name} --help)"
        if param.is_flag or param.count:
            given[param.name] = []
            index += 1
            continue
        values = [inline] if equals else args[index + 1 : index + 1 + param.nargs]
        assert len(values) == param.nargs or (partial and not values and index == len(args) - 1), (
            f"{where}: {name} {flag} needs {param.nargs} value(s)"
        )
        for value in values:
            assert not value.startswith("--"), f"{where}: {name} {flag} needs a value, got {value}"
            if "$" in value or isinstance(param.type, click.Path):
                continue  # a shell variable, or a path of the reader's machine
            try:
                param.type.convert(value, param, None)
            except click.BadParameter as err:
                raise AssertionError(f"{where}: {name} {flag} {value}: {err.message}") from None
        given[param.name] = values
        index += 1 + (0 if equals else param.nargs)
    return given


def _module_source(module: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"no module {module}"
    return Path(spec.origin)


def _check_source_options(source: Path, args: list[str], where: str) -> None:
    text = source.read_text(encoding="utf-8")
    for word in args:
        if word.startswith("--"):
            flag = word.partition("=")[0]
            assert re.search(rf"[\"'/]{re.escape(flag)}\b", text), f"{where}: {source.name} has no option {flag}"


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z][\w-]*):", text, re.M))


def check_command(words: list[str], where: str, clis: dict[str, click.Command], *, partial: bool = False) -> None:
    head = words[0]
    if head in clis:
        check_click_args(clis[head], head, words[1:], where, partial=partial)
    elif head == "torchrun":
        import importlib

        module = words[words.index("-m") + 1]
        command = getattr(importlib.import_module(module), "main", None)  # what `python -m` runs
        assert isinstance(command, click.Command), f"{where}: {module} has no click command main"
        check_click_args(command, module, words[words.index("-m") + 2 :], where)
    elif head in ("python", "python3"):
        if words[1] == "-m":
            _check_source_options(_module_source(words[2]), words[3:], where)
        else:
            script = ROOT / words[1]
            assert script.is_file(), f"{where}: no script {words[1]}"
            _check_source_options(script, words[2:], where)
    elif head == "make":
        missing = [t for t in words[1:] if not t.startswith("-") and "=" not in t and t not in _make_targets()]
        assert not missing, f"{where}: the Makefile has no target {missing}"
    else:
        assert head in SHELL_WORDS or re.fullmatch(r"[A-Z_]+=.*", head), f"{where}: unknown command {head}"


BASH_BLOCKS = all_blocks("bash")


def test_the_docs_have_shell_examples():
    assert len(BASH_BLOCKS) >= 8, [b.where for b in BASH_BLOCKS]
    assert not [b.where for page in PAGES for b in code_blocks(page) if b.lang in ("", "sh", "shell", "console")]


@pytest.mark.parametrize("block", BASH_BLOCKS, ids=[b.where for b in BASH_BLOCKS])
def test_shell_block_parses(block, clis):
    made_from: dict[str, str] = {}  # submission CSV -> the split it was made from
    for line, words in command_lines(block):
        where = f"{block.page.relative_to(ROOT)}:{line}"
        check_command(words, where, clis)
        if words[0] == "tseg-infer":
            given = check_click_args(clis["tseg-infer"], "tseg-infer", words[1:], where)
            coco = (given.get("coco") or [None])[0]
            if "submission" in given:
                made_from[given["submission"][0]] = coco
            if "score_submission" in given:
                csv = given["score_submission"][0]
                assert made_from.get(csv, coco) == coco, (
                    f"{where}: {csv} was made from {made_from[csv]}, scored against {coco}"
                    " (--score-submission needs the annotations of the split the CSV was made from)"
                )


COMMAND_SPAN = re.compile(r"`((?:tseg-[a-z]+|python3? (?:benchmarks/|-m )|make |torchrun )[^`]*)`")


def inline_commands(page: Path) -> list[tuple[int, str]]:
    """(line, text) of the inline code spans outside code blocks that are command lines."""
    found, fenced = [], False
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            found += [(number, span) for span in COMMAND_SPAN.findall(line)]
    return found


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_inline_commands_parse(page, clis):
    """Commands quoted in the text (`tseg-infer --coco VAL --eval`, a table's command column) parse too."""
    for line, span in inline_commands(page):
        check_command(shlex.split(span), f"{page.relative_to(ROOT)}:{line}", clis, partial=True)


def test_shell_checks_catch_mistakes(clis):
    """The checker itself: a wrong option, choice, range or submission order fails."""
    for words in (
        ["tseg-infer", "--colour"],
        ["tseg-infer", "--tta", "vflip"],
        ["tseg-export", "--calib-method", "median"],
        ["tseg-bench", "--min-runs", "0"],
        ["python", "benchmarks/crf.py", "--repeats", "3"],
        ["make", "docs-please"],
    ):
        with pytest.raises(AssertionError):
            check_command(words, "test", clis)
    bad = Block(README, 1, "bash", "tseg-infer --coco data/test.json --submission s.csv\n"
                "tseg-infer --coco data/val.json --score-submission s.csv\n")
    with pytest.raises(AssertionError, match="made from"):
        test_shell_block_parses(bad, clis)


RUNTIME_COMMANDS = ("tseg-infer", "tseg-report")  # the docs' lines of these run for real, in order
INFER_BLOCKS = [b for b in BASH_BLOCKS if re.search(r"^\s*tseg-(infer|report) ", b.text, re.M)]


@pytest.mark.parametrize("block", INFER_BLOCKS, ids=[b.where for b in INFER_BLOCKS])
def test_tseg_infer_lines_run(block, in_reader_folder, clis):
    from click.testing import CliRunner

    ran = 0
    for line, words in command_lines(block):
        if words[0] not in RUNTIME_COMMANDS or NEEDS_A_GPU.search(" ".join(words)):
            continue
        args = [os.path.expandvars(w) for w in words[1:]] + (["--quiet"] if words[0] == "tseg-infer" else [])
        result = CliRunner().invoke(clis[words[0]], args, catch_exceptions=False)
        assert result.exit_code == 0, f"{block.page.name}:{line}: {shlex.join(words)}\n{result.output}"
        ran += 1
    assert ran or NEEDS_A_GPU.search(block.text)


def test_a_test_split_cannot_be_scored(in_reader_folder, clis):
    """What docs/runtime.md says of --score-submission: a split without annotations is refused."""
    from click.testing import CliRunner

    runner = CliRunner()
    made = runner.invoke(clis["tseg-infer"], ["--coco", "data/test.json", "--model", "runs/v5/best.onnx",
                                              "--submission", "test.csv", "--quiet"])
    assert made.exit_code == 0, made.output
    scored = runner.invoke(clis["tseg-infer"], ["--coco", "data/test.json", "--score-submission", "test.csv"])
    assert scored.exit_code == 1, scored.output
