"""Hostile input, checked in-process where it enters: YAML files, seeds, run names, device
parameters, flags, damaged run files. Each refusal is one `UserInputError` line naming the file,
line, key or flag; the CLI turns it into exit code 2 (tests/test_robustness.py runs the process)."""

import pytest
import yaml

from pcmmeta.errors import UserInputError
from pcmmeta.recipe import load_recipe
from pcmmeta.runs import MAX_YAML_VALUES, read_yaml


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


# ---------------------------------------------------------------------------------- YAML
@pytest.mark.parametrize(
    "content, message",
    [
        (b"name: caf\xe9\n", "r.yaml:1: not UTF-8 text (byte 0xe9)"),
        ("seed: 1\ntrain:\n  iterations: 2\nseed: 2\n", "r.yaml:4: key 'seed' given twice (first on line 1)"),
        ("train:\n  iterations: 1\n  iterations: 2\n", "r.yaml:3: key 'iterations' given twice (first on line 2)"),
        ("{a: 1, a: 2}\n", "key 'a' given twice"),
        ('name: "a\\0b"\n', "r.yaml:1: a string holds a NUL character"),
        (b"name: a\x00b\n", "r.yaml:1: not valid YAML: character U+0000 is not allowed"),
        ("a: [1\n", "r.yaml:2: not valid YAML"),
    ],
    ids=["not-utf8", "duplicate-key", "duplicate-nested-key", "duplicate-flow-key", "nul-escape", "nul-byte", "syntax"],
)
def test_yaml_files_are_read_strictly(tmp_path, content, message):
    path = write(tmp_path, "r.yaml", content)
    with pytest.raises(UserInputError) as err:
        read_yaml(path)
    assert message in str(err.value)


def test_yaml_merge_keys_and_small_aliases_still_work(tmp_path):
    path = write(tmp_path, "r.yaml", "base: &b {seed: 1, name: x}\nrun:\n  <<: *b\n  seed: 2\nlists: [&l [1, 2], *l]\n")
    assert read_yaml(path) == {"base": {"seed": 1, "name": "x"}, "run": {"seed": 2, "name": "x"}, "lists": [[1, 2], [1, 2]]}


def test_alias_bomb_is_refused_before_it_expands(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):  # 10^9 values from a few hundred bytes
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    path = write(tmp_path, "r.yaml", "\n".join(lines) + "\n")
    assert path.stat().st_size < 1000
    with pytest.raises(UserInputError, match=f"aliases expand to more than {MAX_YAML_VALUES:,} values"):
        read_yaml(path)
    # just under the limit is fine: the limit counts values, not aliases
    small = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\na1: &a1 [" + ", ".join(["*a0"] * 10) + "]\n"
    assert len(read_yaml(write(tmp_path, "s.yaml", small))["a1"]) == 10


@pytest.mark.parametrize("content", ["", "# only a comment\n", "~\n", "{}\n", "[]\n"])
def test_an_empty_recipe_is_refused_not_silently_the_full_default(tmp_path, content):
    with pytest.raises(UserInputError, match="r.yaml: empty recipe; start from one in recipes/"):
        load_recipe(write(tmp_path, "r.yaml", content))


@pytest.mark.parametrize("content", ["42\n", "- a\n- b\n", "just text\n"])
def test_a_recipe_that_is_not_a_mapping_is_refused(tmp_path, content):
    with pytest.raises(UserInputError, match="r.yaml: 'recipe' must be a mapping"):
        load_recipe(write(tmp_path, "r.yaml", content))


def test_a_folder_given_as_the_recipe_is_named_as_a_folder(tmp_path):
    (tmp_path / "r.yaml").mkdir()
    with pytest.raises(UserInputError, match="r.yaml: is a folder, expected a file"):
        load_recipe(tmp_path / "r.yaml")
