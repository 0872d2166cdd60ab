"""The plugin contract: pluggy hooks, the codec and keyframe-policy registries, blocking,
lazy factories, option validation and an externally installed plugin."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import onedc_media
import onedc_media_plugins.classic as classic
from onedc_media import (
    Codec,
    CodecInfo,
    CodecOption,
    KeyframePolicy,
    PolicyInfo,
    hookimpl,
    load_plugins,
)
from onedc_media.cli.main import main
from onedc_media.codec import CodecRegistry
from onedc_media.errors import (
    CodecNotFoundError,
    CodecOptionError,
    DuplicateCodecError,
    OdcError,
    PluginError,
)
from onedc_media.hooks import BLOCK_ENV, ENTRY_POINT_GROUP

REPO = Path(__file__).resolve().parents[1]
CLASSIC = {"jpeg", "webp", "png", "avif", "hevc-intra"}
#: Modules that listing codecs must never import.
HEAVY = ("torch", "diffusers", "compressai", "cv2", "av", "PIL")


def make_plugin(name: str, **hooks) -> types.ModuleType:
    """A plugin module called *name* whose attributes are *hooks* (marked as impls)."""
    module = types.ModuleType(name)
    for hook_name, func in hooks.items():
        setattr(module, hook_name, hookimpl(func))
    return module


def codec_plugin(plugin_name: str, *codec_names: str) -> types.ModuleType:
    def register_codecs(registry):
        for codec_name in codec_names:
            registry.add(info(codec_name))

    return make_plugin(plugin_name, register_codecs=register_codecs)


def info(name: str = "fake", **kw) -> CodecInfo:
    kw.setdefault("factory", "no_such_module_xyz:Codec")
    kw.setdefault("quality_option", "quality" if "options" in kw else None)
    return CodecInfo(name=name, long_name=f"{name} codec", kind="image", lossy=True, **kw)


@pytest.fixture
def clean_env(monkeypatch):
    """No block list from the environment; undo what ``main()`` writes to it."""
    monkeypatch.setenv(BLOCK_ENV, "")
    onedc_media.default_plugins.cache_clear()
    yield
    onedc_media.default_plugins.cache_clear()


# --- loading -----------------------------------------------------------------------


def test_explicit_loading_without_entry_points():
    plugins = load_plugins(entry_points=False, plugins=[classic], blocked=[])
    assert set(plugins.codecs.names()) == CLASSIC
    assert plugins.plugin_names() == [classic.__name__]
    assert {i.plugin for i in plugins.codecs} == {classic.__name__}

    empty = load_plugins(entry_points=False, blocked=[])
    assert len(empty.codecs) == 0 and len(empty.policies) == 0


def test_bundled_plugins_load_through_the_entry_point_group(clean_env):
    from importlib.metadata import entry_points

    names = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert names.get("classic") == "onedc_media_plugins.classic"
    plugins = load_plugins()
    assert CLASSIC <= set(plugins.codecs.names())
    assert plugins.codecs.get("jpeg").plugin == "classic"  # the entry-point name
    assert "classic" in plugins.plugin_names()


def test_two_plugins_and_the_same_codec_name():
    one, two = codec_plugin("plugin_one", "dup"), codec_plugin("plugin_two", "dup")
    with pytest.raises(DuplicateCodecError) as err:
        load_plugins(entry_points=False, plugins=[one, two], blocked=[])
    assert "'dup'" in str(err.value)
    assert "plugin_one" in str(err.value) and "plugin_two" in str(err.value)


def test_a_plugin_shadowing_a_bundled_codec(clean_env):
    shadow = codec_plugin("my_jpeg_plugin", "jpeg")
    with pytest.raises(DuplicateCodecError, match="classic.*my_jpeg_plugin"):
        load_plugins(plugins=[shadow])
    # blocking the bundled plugin resolves the clash
    plugins = load_plugins(plugins=[shadow], blocked=["classic"])
    assert plugins.codecs.get("jpeg").plugin == "my_jpeg_plugin"


def test_misspelled_hook_fails_check_pending():
    typo = make_plugin("typo_plugin", register_codec=lambda registry: None)
    with pytest.raises(PluginError, match="typo_plugin"):
        load_plugins(entry_points=False, plugins=[typo], blocked=[])


def test_hookimpl_with_an_argument_the_spec_lacks():
    extra = make_plugin("extra_arg_plugin", register_codecs=lambda registry, config: None)
    with pytest.raises(PluginError, match="extra_arg_plugin"):
        load_plugins(entry_points=False, plugins=[extra], blocked=[])


def test_failing_and_misbehaving_hooks_name_the_plugin():
    def boom(registry):
        raise RuntimeError("kaboom")

    failing = make_plugin("boom_plugin", register_codecs=boom)
    with pytest.raises(PluginError, match="boom_plugin.*kaboom"):
        load_plugins(entry_points=False, plugins=[failing], blocked=[])
    not_info = make_plugin("dict_plugin", register_codecs=lambda registry: registry.add({}))
    with pytest.raises(PluginError, match="expected CodecInfo"):
        load_plugins(entry_points=False, plugins=[not_info], blocked=[])


# --- blocking ----------------------------------------------------------------------


def test_block_by_name(clean_env):
    plugins = load_plugins(blocked=["classic"])
    assert not CLASSIC & set(plugins.codecs.names())
    assert "classic" not in plugins.plugin_names()
    extra = codec_plugin("extra_plugin", "extra")
    plugins = load_plugins(entry_points=False, plugins=[extra], blocked=["extra_plugin"])
    assert "extra" not in plugins.codecs


def test_block_by_environment(monkeypatch, clean_env):
    monkeypatch.setenv(BLOCK_ENV, " classic , someone_else ")
    assert not CLASSIC & set(load_plugins().codecs.names())
    assert load_plugins(blocked=[]).codecs.get("png")  # an explicit list wins over the env


def test_block_from_the_cli(capsys, clean_env):
    assert main(["codecs"]) == 0
    listed = capsys.readouterr().out
    assert "jpeg" in listed and "hevc-intra" in listed and "classic" in listed

    assert main(["--block-plugin", "classic", "codecs"]) == 0
    listed = capsys.readouterr().out
    assert not any(f"  {name} " in listed for name in CLASSIC)
    assert "classic" not in listed.split("Plugins:")[-1]


def test_codecs_json_lists_options_and_capabilities(capsys, clean_env):
    assert main(["codecs", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    by_name = {c["name"]: c for c in out["codecs"]}
    assert CLASSIC <= set(by_name)
    assert by_name["png"]["capabilities"] == {"batch": False, "cuda": False, "lossless": True}
    quality = next(o for o in by_name["jpeg"]["options"] if o["name"] == "quality")
    assert (quality["default"], quality["min"], quality["max"]) == (75, 1, 100)
    assert by_name["hevc-intra"]["kind"] == "intra-video"


def test_listing_codecs_imports_nothing_heavy():
    code = (
        "import json, sys, io, contextlib\n"
        "import onedc_media\n"
        "from onedc_media.cli.main import main\n"
        "names = onedc_media.load_plugins().codecs.names()\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['codecs'])\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(json.dumps({'names': names, 'heavy': heavy}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != BLOCK_ENV}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert CLASSIC <= set(result["names"])
    assert result["heavy"] == []


# --- declarations, options and lazy factories ------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        {"name": "bad name"},
        {"name": ""},
        {"kind": "audio"},
        {"factory": "module_without_colon"},
        {"options": (CodecOption("q", "int", 1), CodecOption("q", "int", 2))},
        {"options": (CodecOption("level", "int", 1),), "quality_option": "quality"},
    ],
)
def test_invalid_declarations(kw):
    base = {"name": "x", "long_name": "x", "kind": "image", "lossy": True, "factory": "m:C"}
    with pytest.raises(PluginError):
        CodecInfo(**{**base, "quality_option": None, **kw})


def test_option_validation():
    q = CodecOption("quality", "int", 50, min=1, max=100)
    assert q.validate("7") == 7 and q.validate(7.0) == 7
    for bad in (0, 101, "seven", 7.5, True, None, "7.5"):
        with pytest.raises(CodecOptionError, match="quality"):
            q.validate(bad)
    f = CodecOption("gain", "float", 1.0, min=0)
    assert f.validate("0.25") == 0.25
    for bad in ("nan", -1, "x"):
        with pytest.raises(CodecOptionError):
            f.validate(bad)
    b = CodecOption("fast", "bool", False)
    assert b.validate("yes") is True and b.validate("off") is False and b.validate(1) is True
    with pytest.raises(CodecOptionError):
        b.validate("maybe")
    s = CodecOption("mode", "str", "a", choices=("a", "b"))
    assert s.validate("b") == "b"
    with pytest.raises(CodecOptionError, match="one of a, b"):
        s.validate("c")
    with pytest.raises(CodecOptionError):  # a default outside the range is a plugin bug
        CodecOption("quality", "int", 0, min=1)
    with pytest.raises(PluginError):
        CodecOption("not an identifier", "int", 1)
    assert q.describe() == "quality=50 (int, 1..100)"
    unset = CodecOption("quality", "int", None, min=1, max=16)  # the codec decides (OneDC: its model)
    assert unset.validate(None) is None and unset.validate("3") == 3
    assert unset.describe() == "quality=(model) (int, 1..16)"
    with pytest.raises(CodecOptionError):
        q.validate(None)  # None is "unset" only where the default is unset


def test_resolve_options_fills_defaults_and_rejects_unknown_names():
    codec = info(options=(CodecOption("quality", "int", 50, min=1, max=100),))
    assert codec.resolve_options(None) == {"quality": 50}
    assert codec.resolve_options({"quality": "80"}) == {"quality": 80}
    with pytest.raises(CodecOptionError, match="no option 'qualty'.*quality"):
        codec.resolve_options({"qualty": 80})


def test_factories_are_imported_only_on_use():
    registry = CodecRegistry()
    registry.scoped("lazy_plugin").add(info("lazy"))  # the factory module does not exist
    assert registry.names() == ["lazy"]  # declaring and listing never import it
    with pytest.raises(PluginError, match="'lazy'.*lazy_plugin.*no_such_module_xyz"):
        registry.create("lazy")
    with pytest.raises(PluginError, match="not a Codec subclass"):
        info("wrong", factory="json:dumps").load()
    with pytest.raises(CodecNotFoundError, match="'nope'.*lazy"):
        registry.get("nope")


# --- keyframe policies ------------------------------------------------------------------


class EveryNth(KeyframePolicy):
    def is_keyframe(self, index, frame, *, source_keyframe):
        return index % self.options["n"] == 0


@pytest.fixture
def policy_module(monkeypatch):
    module = types.ModuleType("fake_policies")
    module.EveryNth = EveryNth
    monkeypatch.setitem(sys.modules, "fake_policies", module)
    return module


def policy_plugin(plugin_name: str, policy_name: str) -> types.ModuleType:
    def register_keyframe_policies(registry):
        registry.add(
            PolicyInfo(
                name=policy_name,
                description="every n-th frame",
                factory="fake_policies:EveryNth",
                options=(CodecOption("n", "int", 10, min=1),),
            )
        )

    return make_plugin(plugin_name, register_keyframe_policies=register_keyframe_policies)


def test_keyframe_policies(policy_module):
    plugins = load_plugins(
        entry_points=False, plugins=[policy_plugin("policy_plugin", "every-n")], blocked=[]
    )
    pol = plugins.policies.get("every-n")
    assert pol.plugin == "policy_plugin"
    policy = pol.create({"n": "3"})
    frame = np.zeros((2, 2, 3), np.uint8)
    assert [policy.is_keyframe(i, frame, source_keyframe=False) for i in range(4)] == [
        True,
        False,
        False,
        True,
    ]
    with pytest.raises(OdcError, match="'m'"):
        pol.create({"m": 3})
    with pytest.raises(CodecOptionError):
        pol.create({"n": 0})
    with pytest.raises(CodecNotFoundError):
        plugins.policies.get("scene-cut-xyz")


def test_duplicate_keyframe_policies_name_both_plugins(policy_module):
    one, two = policy_plugin("pol_one", "same"), policy_plugin("pol_two", "same")
    with pytest.raises(DuplicateCodecError, match="'same'.*pol_one.*pol_two"):
        load_plugins(entry_points=False, plugins=[one, two], blocked=[])


# --- an external plugin, installed like a user would --------------------------------------


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory) -> Path:
    """``examples/plugin_example`` pip-installed into a private target directory."""
    tmp = tmp_path_factory.mktemp("plugin_example")
    source = tmp / "src"
    shutil.copytree(REPO / "examples" / "plugin_example", source)  # keep build files out
    target = tmp / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--no-build-isolation", "--no-index", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return target


def run_with(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != BLOCK_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_external_plugin_is_listed(installed_example):
    proc = run_with(installed_example, "-m", "onedc_media.cli.main", "codecs")
    assert proc.returncode == 0, proc.stderr
    assert "example-zlib" in proc.stdout and "example" in proc.stdout.split("Plugins:")[-1]
    assert "jpeg" in proc.stdout  # alongside the bundled ones

    proc = run_with(installed_example, "-m", "onedc_media.cli.main", "-p", "example", "codecs")
    assert proc.returncode == 0, proc.stderr
    assert "example-zlib" not in proc.stdout


def test_external_plugin_round_trips(installed_example):
    code = (
        "import numpy as np, onedc_media\n"
        "info = onedc_media.default_plugins().codecs.get('example-zlib')\n"
        "assert info.plugin == 'example', info.plugin\n"
        "codec = info.create()\n"
        "enc = codec.encoder(info.resolve_options({'level': '9'}))\n"
        "frames = [np.random.default_rng(i).integers(0, 256, (23 + i, 37, 3), dtype=np.uint8)\n"
        "          for i in range(3)]\n"
        "packets = enc.encode(frames)\n"
        "out = codec.decoder(enc.params).decode(packets)\n"
        "assert all(np.array_equal(a, b) for a, b in zip(frames, out))\n"
        "try:\n"
        "    codec.decoder(enc.params).decode([packets[0][:-1]])\n"
        "except onedc_media.errors.BitstreamError:\n"
        "    print('OK', sum(map(len, packets)))\n"
    )
    proc = run_with(installed_example, "-c", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("OK")


def test_docs_show_the_example_verbatim():
    doc = (REPO / "docs" / "plugins.md").read_text()
    example = REPO / "examples" / "plugin_example"
    files = ("pyproject.toml", "onedc_example_plugin/__init__.py", "onedc_example_plugin/codec.py")
    for path in files:
        assert (example / path).read_text() in doc, f"docs/plugins.md is out of date: {path}"


def test_external_plugin_through_the_cli(installed_example, tmp_path):
    """`onedc-media encode/decode --codec NAME` with a separately installed plugin."""
    src = REPO / "tests" / "data" / "chelsea.png"
    odc, png = tmp_path / "c.odc", tmp_path / "c.png"
    proc = run_with(installed_example, "-m", "onedc_media.cli.main", "encode", str(src), "-o", str(odc),
                    "-c", "example-zlib", "--opt", "level=6")
    assert proc.returncode == 0, proc.stderr
    proc = run_with(installed_example, "-m", "onedc_media.cli.main", "decode", str(odc), "-o", str(png))
    assert proc.returncode == 0, proc.stderr
    from onedc_media.imageio import read_image

    assert np.array_equal(read_image(png), read_image(src))  # the example codec is lossless
    proc = run_with(installed_example, "-m", "onedc_media.cli.main", "-p", "example", "decode", str(odc),
                    "-o", str(tmp_path / "d.png"))
    assert proc.returncode == 1 and "example-zlib" in proc.stderr and "Traceback" not in proc.stderr
