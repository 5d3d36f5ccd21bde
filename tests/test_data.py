"""MedMNIST .npz fixture matrix (every 2-D flag, every error case), optional-download path, to_rgb properties,
from_hf / image-folder edge cases, and the to_trl round trip. No file is ever downloaded: fixtures are written
in MedMNIST's exact format into tmp dirs."""
import sys, types
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings, strategies as st
from PIL import Image

import datasets
from vrft_aug import data as D
from vrft_aug.data import (MEDMNIST_INFO, MEDMNIST_SIZES, medmnist, medmnist_filename, write_fake_medmnist, synthmed,
                           to_trl, to_rgb, plain_prompt, from_hf, from_image_folder, SYNTHMED_TASKS)

FLAGS = sorted(MEDMNIST_INFO)
OFFICIAL_TASK = {"pathmnist": "multi-class", "chestmnist": "multi-label, binary-class", "dermamnist": "multi-class",
                 "octmnist": "multi-class", "pneumoniamnist": "binary-class", "retinamnist": "ordinal-regression",
                 "breastmnist": "binary-class", "bloodmnist": "multi-class", "tissuemnist": "multi-class",
                 "organamnist": "multi-class", "organcmnist": "multi-class", "organsmnist": "multi-class"}
OUR_TASK = {"multi-class": "classification", "binary-class": "binary", "ordinal-regression": "grading",
            "multi-label, binary-class": "multilabel"}
NUM_CLASSES = {"pathmnist": 9, "chestmnist": 14, "dermamnist": 7, "octmnist": 4, "pneumoniamnist": 2, "retinamnist": 5,
               "breastmnist": 2, "bloodmnist": 8, "tissuemnist": 8, "organamnist": 11, "organcmnist": 11, "organsmnist": 11}


@pytest.fixture(autouse=True)
def no_medmnist_package(monkeypatch):
    "The medmnist package must not be importable in these tests (so nothing can download), unless a test fakes it."
    monkeypatch.setitem(sys.modules, "medmnist", None)
    monkeypatch.delenv("VRFT_MEDMNIST_ROOT", raising=False)


def arrays(flag, n=5, px=28, rgb=False, seed=0):
    "The six official arrays of a valid file."
    rng, K = np.random.default_rng(seed), NUM_CLASSES[flag]
    out = {}
    for s in ("train", "val", "test"):
        out[f"{s}_images"] = rng.integers(0, 256, (n, px, px, 3) if rgb else (n, px, px), dtype=np.uint8)
        out[f"{s}_labels"] = (rng.integers(0, 2, (n, K)) if flag == "chestmnist" else rng.integers(0, K, (n, 1))).astype(np.uint8)
    return out


def save(tmp_path, flag, arrs, size=None, compressed=True):
    p = tmp_path / medmnist_filename(flag, size)
    (np.savez_compressed if compressed else np.savez)(p, **arrs)
    return p


# ---------------------------------------------------------------- official facts
def test_info_matches_official_medmnist():
    assert sorted(MEDMNIST_INFO) == sorted(OFFICIAL_TASK)
    for flag, info in MEDMNIST_INFO.items():
        assert info.name == flag
        assert info.task == OUR_TASK[OFFICIAL_TASK[flag]], flag
        assert len(info.class_names) == NUM_CLASSES[flag], flag
        assert len(set(info.class_names)) == len(info.class_names), flag
        assert info.description and info.modality
    assert MEDMNIST_INFO["retinamnist"].class_names == ["0", "1", "2", "3", "4"]
    assert MEDMNIST_INFO["breastmnist"].class_names == ["malignant", "normal, benign"]
    assert MEDMNIST_INFO["pathmnist"].class_names[-1] == "colorectal adenocarcinoma epithelium"
    assert MEDMNIST_INFO["tissuemnist"].class_names[0] == "Collecting Duct, Connecting Tubule"


@pytest.mark.parametrize("flag", FLAGS)
def test_info_agrees_with_knowledge_file(flag):
    "The knowledge base (written separately) and the loader must use the same names in the same order."
    p = Path(D.__file__).parent / "knowledge" / f"{flag}.yaml"
    if not p.exists(): pytest.skip(f"no knowledge file {p.name}")
    kb = yaml.safe_load(p.read_text())
    assert [str(c["name"]) for c in kb["classes"]] == MEDMNIST_INFO[flag].class_names
    assert kb["task"] == MEDMNIST_INFO[flag].task


def test_file_names():
    assert medmnist_filename("pathmnist") == "pathmnist.npz"
    assert medmnist_filename("pathmnist", 28) == "pathmnist.npz"
    assert [medmnist_filename("octmnist", s) for s in MEDMNIST_SIZES[1:]] == ["octmnist_64.npz", "octmnist_128.npz", "octmnist_224.npz"]


# ---------------------------------------------------------------- valid files: every flag
@pytest.mark.parametrize("flag", FLAGS)
@pytest.mark.parametrize("size,rgb", [(None, False), (64, True)])
def test_every_flag_loads(tmp_path, flag, size, rgb):
    px = size or 28
    arrs = arrays(flag, n=4, px=px, rgb=rgb)
    save(tmp_path, flag, arrs, size)
    for split in ("train", "val", "test"):
        ds = medmnist(flag, split, root=tmp_path, size=size, image_size=32)
        info = MEDMNIST_INFO[flag]
        assert len(ds) == 4 and ds.split == split and ds.info is info
        s = ds[3]
        assert s.image.mode == "RGB" and s.image.size == (32, 32)
        assert s.dataset == flag and s.task == info.task and s.class_names == info.class_names
        assert s.id == f"{flag}/{split}/3"
        y = arrs[f"{split}_labels"][3]
        if info.task == "multilabel":
            assert s.label == y.tolist() and len(s.label) == 14
        else:
            assert s.label == int(y[0])
        if info.task == "grading": assert (s.grade, s.num_grades) == (s.label, 5)
        else: assert s.grade is None and s.num_grades is None
    native = medmnist(flag, "test", root=tmp_path, size=size)[0].image
    assert native.size == (px, px)
    a = np.asarray(native)
    src = arrs["test_images"][0]
    assert np.array_equal(a, src if rgb else np.repeat(src[..., None], 3, -1))  # pixels are not altered at native size


def test_env_var_and_default_root(tmp_path, monkeypatch):
    write_fake_medmnist(tmp_path, "pneumoniamnist")
    monkeypatch.setenv("VRFT_MEDMNIST_ROOT", str(tmp_path))
    assert len(medmnist("pneumoniamnist", "val")) == 6
    monkeypatch.delenv("VRFT_MEDMNIST_ROOT")
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".medmnist").mkdir()
    write_fake_medmnist(tmp_path / ".medmnist", "breastmnist", n=3)
    assert len(medmnist("breastmnist", "test")) == 3


def test_one_dimensional_labels_and_uncompressed_npz(tmp_path):
    arrs = arrays("octmnist")
    arrs["val_labels"] = arrs["val_labels"][:, 0].astype(np.int64)
    save(tmp_path, "octmnist", arrs, compressed=False)
    assert medmnist("octmnist", "val", root=tmp_path).labels == arrs["val_labels"].tolist()


# ---------------------------------------------------------------- missing files
@pytest.mark.parametrize("flag", FLAGS)
def test_missing_file_names_what_was_looked_for(tmp_path, flag):
    for size, name in [(None, f"{flag}.npz"), (128, f"{flag}_128.npz")]:
        with pytest.raises(FileNotFoundError) as e:
            medmnist(flag, root=tmp_path, size=size)
        msg = str(e.value)
        assert repr(name) in msg and str(tmp_path) in msg and "VRFT_MEDMNIST_ROOT" in msg


def test_download_only_through_medmnist_package_and_only_when_missing(tmp_path, monkeypatch):
    calls = []
    class FakeBreast:
        def __init__(self, split, download, root, size):
            calls.append((split, download, root, size))
            write_fake_medmnist(root, "breastmnist", size=size, n=2)
    fake = types.SimpleNamespace(INFO={"breastmnist": {"python_class": "BreastMNIST"}}, BreastMNIST=FakeBreast)
    monkeypatch.setitem(sys.modules, "medmnist", fake)
    root = tmp_path / "new"
    ds = medmnist("breastmnist", "train", root=root, size=64)
    assert len(ds) == 2 and calls == [("test", True, str(root), 64)]
    medmnist("breastmnist", "val", root=root, size=64)  # present now: no second download
    assert len(calls) == 1
    with pytest.raises(FileNotFoundError):               # download=False never downloads
        medmnist("breastmnist", root=root, download=False)
    assert len(calls) == 1


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown MedMNIST flag 'organmnist3d'"): medmnist("organmnist3d", root=tmp_path)
    with pytest.raises(ValueError, match="unknown split 'dev'"): medmnist("pathmnist", "dev", root=tmp_path)
    with pytest.raises(ValueError, match="size must be None or one of"): medmnist("pathmnist", root=tmp_path, size=32)


# ---------------------------------------------------------------- corrupt files: every error case, every flag
def _err_missing_key(a, flag): a.pop("val_labels"); return "val", "missing array 'val_labels'"
def _err_length(a, flag): a["val_labels"] = a["val_labels"][:-1]; return "val", "has 5 images but val_labels has 4 labels"
def _err_label_high(a, flag):
    a["val_labels"][2] = 2 if flag == "chestmnist" else NUM_CLASSES[flag]
    return "val", f"val_labels contains {2 if flag == 'chestmnist' else NUM_CLASSES[flag]}, expected values in 0.."
def _err_label_negative(a, flag): a["val_labels"] = a["val_labels"].astype(np.int64); a["val_labels"][0] = -1; return "val", "val_labels contains -1"
def _err_image_dtype(a, flag): a["val_images"] = a["val_images"].astype(np.float32); return "val", "val_images has dtype float32, expected uint8"
def _err_image_shape(a, flag): a["val_images"] = np.zeros((5, 28, 28, 2), np.uint8); return "val", "val_images has shape (5, 28, 28, 2)"
def _err_image_size(a, flag): a["val_images"] = np.zeros((5, 64, 64), np.uint8); return "val", "val_images has shape (5, 64, 64), expected (N, 28, 28)"
def _err_label_dtype(a, flag): a["val_labels"] = a["val_labels"].astype(np.float64); return "val", "val_labels has dtype float64, expected an integer"
def _err_label_shape(a, flag):
    a["val_labels"] = np.zeros((5, 3), np.uint8)
    return "val", f"val_labels has shape (5, 3), expected (N, {14 if flag == 'chestmnist' else 1})"
def _err_object(a, flag):
    a["val_labels"] = np.array([[1], [0], ["x"], [0], [1]], dtype=object)
    return "val", "'val_labels' cannot be loaded without pickle"

ERRORS = [_err_missing_key, _err_length, _err_label_high, _err_label_negative, _err_image_dtype, _err_image_shape,
          _err_image_size, _err_label_dtype, _err_label_shape, _err_object]


@pytest.mark.parametrize("flag", FLAGS)
@pytest.mark.parametrize("corrupt", ERRORS, ids=[f.__name__[5:] for f in ERRORS])
def test_corrupt_file_errors_name_file_and_field(tmp_path, flag, corrupt):
    a = arrays(flag)
    split, expected = corrupt(a, flag)
    p = save(tmp_path, flag, a)
    with pytest.raises(ValueError) as e:
        medmnist(flag, split, root=tmp_path)
    msg = str(e.value)
    assert str(p) in msg, msg
    assert expected in msg, msg
    # the other splits of the same file are still fine
    assert len(medmnist(flag, "train", root=tmp_path)) == 5


def test_not_an_npz(tmp_path):
    p = tmp_path / "dermamnist.npz"
    p.write_bytes(b"this is not a zip file")
    with pytest.raises(ValueError, match="not a readable .npz file") as e: medmnist("dermamnist", root=tmp_path)
    assert str(p) in str(e.value)


def test_chest_multilabel_values_must_be_binary(tmp_path):
    a = arrays("chestmnist"); a["test_labels"][1, 5] = 3
    save(tmp_path, "chestmnist", a)
    with pytest.raises(ValueError, match=r"test_labels contains 3, expected values in 0..1 for chestmnist"):
        medmnist("chestmnist", "test", root=tmp_path)


# ---------------------------------------------------------------- to_rgb properties
DTYPES = [np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64]

@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), ch=st.sampled_from([None, 1, 3, 4]), dtype=st.sampled_from(DTYPES),
       size=st.integers(1, 30), fit=st.sampled_from(["pad", "crop", "stretch"]), seed=st.integers(0, 2**16))
def test_to_rgb_any_array_gives_rgb_of_size(h, w, ch, dtype, size, fit, seed):
    rng = np.random.default_rng(seed)
    shape = (h, w) if ch is None else (h, w, ch)
    a = (rng.uniform(-1e4, 1e4, shape) if np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.signedinteger)
         else rng.uniform(0, np.iinfo(dtype).max, shape)).astype(dtype)
    out = to_rgb(a, size, fit)
    assert out.mode == "RGB" and out.size == (size, size)


@settings(max_examples=40, deadline=None)
@given(mode=st.sampled_from(["1", "L", "P", "RGB", "RGBA", "LA", "La", "PA", "CMYK", "YCbCr", "I", "I;16", "I;16B", "F"]),
       w=st.integers(1, 50), h=st.integers(1, 50), size=st.integers(1, 40))
def test_to_rgb_any_mode(mode, w, h, size):
    out = to_rgb(Image.new(mode, (w, h)), size)
    assert out.mode == "RGB" and out.size == (size, size)


def test_to_rgb_16bit_file_round_trip(tmp_path):
    a = (np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 60)
    Image.fromarray(a).save(tmp_path / "ct.png")
    im = Image.open(tmp_path / "ct.png")
    assert im.mode.startswith("I")
    out = np.asarray(to_rgb(im))
    assert out.min() == 0 and out.max() == 255 and (out[..., 0] == out[..., 1]).all()


# ---------------------------------------------------------------- from_hf / image folders
def test_from_hf_saved_to_disk_dict_and_multilabel(tmp_path):
    feats = datasets.Features({"img": datasets.Image(), "y": datasets.List(datasets.ClassLabel(names=["a", "b", "c"]))})
    dd = datasets.DatasetDict({"test": datasets.Dataset.from_dict(
        {"img": [Image.new("L", (10, 10), 9), Image.new("RGB", (10, 10))], "y": [[1, 2], []]}, features=feats)})
    # List(ClassLabel) holds the indices of the present classes (the Hub's convention)
    dd.save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(ValueError, match="split 'train' not in the DatasetDict"):
        from_hf(str(tmp_path / "ds"), image_column="img", label_column="y", task="multilabel")
    ds = from_hf(str(tmp_path / "ds"), image_column="img", label_column="y", task="multilabel", split="test", name="toy")
    assert ds.info.class_names == ["a", "b", "c"] and ds.labels == [[0, 1, 1], [0, 0, 0]]
    assert ds[0].answer == ["b", "c"] and ds[1].answer == [] and ds[0].image.mode == "RGB"
    # 0/1 vectors with explicit names work too, and bad vectors are refused with the row
    vec = datasets.Dataset.from_dict({"img": [Image.new("RGB", (4, 4))] * 2, "y": [[1, 0, 1], [1, 0]]})
    with pytest.raises(ValueError, match=r"row 1: label \[1, 0\] is not a 0/1 list of length 3"):
        from_hf(vec, image_column="img", label_column="y", class_names=["a", "b", "c"], task="multilabel")
    with pytest.raises(FileNotFoundError, match="no dataset folder"): from_hf(str(tmp_path / "nope"))


def test_from_hf_paths_and_unreadable_files(tmp_path):
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(good)
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    hf = datasets.Dataset.from_dict({"path": [str(good), str(bad), str(tmp_path / "gone.png")], "label": [0, 1, 1]})
    ds = from_hf(hf, image_column="path", class_names=["x", "y"], task="binary", image_size=16)
    assert ds[0].image.getpixel((0, 0)) == (1, 2, 3) and ds[0].meta["file"] == str(good)
    with pytest.raises(ValueError, match="bad.png"): ds[1]
    with pytest.raises(ValueError, match="gone.png"): ds[2]
    with pytest.raises(ValueError, match=r"row 2: label 3 is not a class index"):
        from_hf(datasets.Dataset.from_dict({"path": ["a", "b", "c"], "label": [0, 1, 3]}), image_column="path", class_names=["x", "y"])


def test_from_image_folder_grading_natural_order(tmp_path):
    for g in ("0", "1", "2", "10"):
        (tmp_path / g).mkdir()
        Image.new("RGB", (5, 5)).save(tmp_path / g / "img.JPG")
    (tmp_path / "0" / "notes.txt").write_text("not an image")
    ds = from_image_folder(tmp_path, task="grading")
    assert ds.info.class_names == ["0", "1", "2", "10"] and len(ds) == 4
    assert (ds[3].grade, ds[3].num_grades, ds[3].answer) == (3, 4, "10")
    with pytest.raises(ValueError, match="supports classification, binary and grading"): from_image_folder(tmp_path, task="multilabel")


# ---------------------------------------------------------------- to_trl round trip
TRL_COLUMNS = {"prompt", "image", "solution", "choices", "task", "dataset", "bbox", "grade", "num_grades", "knowledge", "id"}

@pytest.mark.parametrize("task", SYNTHMED_TASKS)
def test_to_trl_round_trip_synthmed(tmp_path, task):
    src = synthmed(task, "test", n=5, seed=1)
    t = to_trl(src)
    assert set(t.column_names) == TRL_COLUMNS
    t.save_to_disk(str(tmp_path / "t"))
    back = datasets.load_from_disk(str(tmp_path / "t"))
    for i, s in enumerate(src):
        r = back[i]
        assert np.array_equal(np.asarray(r["image"].convert("RGB")), np.asarray(s.image))
        assert r["solution"] == s.answer and r["choices"] == s.class_names and r["id"] == s.id
        assert r["bbox"] == (s.bbox or []) and r["grade"] == (-1 if s.grade is None else s.grade)
        assert r["num_grades"] == (s.num_grades or 0) and r["knowledge"] == "" and r["dataset"] == s.dataset
        assert r["prompt"] == [{"role": "user", "content": [{"type": "image", "text": None},
                                                             {"type": "text", "text": plain_prompt(s)[0]["content"][1]["text"]}]}]
    # two exports of the same task concatenate (typed columns, no `null` type)
    both = datasets.concatenate_datasets([t, to_trl(synthmed(task, "val", n=2))])
    assert len(both) == 7


@pytest.mark.parametrize("flag", ["chestmnist", "retinamnist", "breastmnist", "pathmnist"])
def test_to_trl_medmnist(tmp_path, flag):
    write_fake_medmnist(tmp_path, flag, n=4)
    ds = medmnist(flag, "test", root=tmp_path, image_size=28)
    t = to_trl(ds, prompt_fn=lambda s: (plain_prompt(s), f"knowledge for {s.id}"))
    for i in range(4):
        assert t[i]["solution"] == ds[i].answer and t[i]["knowledge"] == f"knowledge for {ds[i].id}"
    if flag == "retinamnist": assert t[0]["grade"] == ds[0].label and t[0]["num_grades"] == 5
    if flag == "chestmnist": assert t.features["solution"] == datasets.List(datasets.Value("string"))


def test_to_trl_rejects_mixed_tasks_and_empty():
    mixed = synthmed("cells", n=1)[:] + synthmed("fundus", n=1)[:]
    with pytest.raises(ValueError, match="one task per dataset"): to_trl(mixed)
    with pytest.raises(ValueError, match="empty"): to_trl(synthmed("cells", n=0))


def test_trl_formats_the_prompt_with_qwen_template():
    "The prompt, as stored, goes through TRL's multimodal preparation and Qwen2.5-VL's chat template."
    from pathlib import Path as P
    import jinja2, trl
    from trl.data_utils import prepare_multimodal_messages
    tpl = sorted((P(trl.__file__).parent / "chat_templates").glob("qwen2_5_vl.jinja"))
    if not tpl: pytest.skip("TRL ships no Qwen2.5-VL template in this version")
    row = to_trl(synthmed("cells", n=1))[0]
    msgs = prepare_multimodal_messages(row["prompt"], images=[row["image"]])
    text = jinja2.Environment().from_string(tpl[0].read_text()).render(messages=msgs, add_generation_prompt=True)
    assert text.count("<|image_pad|>") == 1 and "Which of the following classes" in text and text.rstrip().endswith("assistant")


def test_paper_medmnist_is_the_forks_eight():
    "The GPU grid's default eight are the sets the authors' likely code describes (EasyR1_Medical math_FR.py/regress_FR.py)."
    from vrft_aug.data import PAPER_MEDMNIST, MEDMNIST_INFO
    from vrft_aug.knowledge import available_knowledge
    assert len(set(PAPER_MEDMNIST)) == 8 and set(PAPER_MEDMNIST) <= set(MEDMNIST_INFO) <= set(available_knowledge())
    assert "tissuemnist" in PAPER_MEDMNIST and "pathmnist" not in PAPER_MEDMNIST and "chestmnist" not in PAPER_MEDMNIST


def test_grid_cli_expands_paper(monkeypatch, tmp_path):
    "`vrft-aug grid --datasets paper,synthmed-cells` passes the eight flags, then the rest, to grid()."
    from vrft_aug import cli
    from vrft_aug.data import PAPER_MEDMNIST
    seen = {}
    monkeypatch.setattr(cli, "grid", lambda presets, datasets, *a, **k: seen.update(datasets=datasets))
    monkeypatch.setattr(cli, "report", lambda root: (tmp_path / "results.md").write_text("ok") and tmp_path)
    cli.main(["grid", "--presets", "vrft", "--datasets", "paper,synthmed-cells", "--set", f"output_dir={tmp_path}"])
    assert seen["datasets"] == [*PAPER_MEDMNIST, "synthmed-cells"]


@pytest.mark.parametrize("task", SYNTHMED_TASKS)
def test_synthmed_val_and_test_are_not_drawn_from_the_train_stream(task):
    "Each split is its own random stream: no val/test image repeats a train image, even where the labels agree."
    n = 24
    splits = {s: synthmed(task, s, n=n, seed=0, image_size=32) for s in ("train", "val", "test")}
    pixels = {s: [np.asarray(ds[i].image) for i in range(n)] for s, ds in splits.items()}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        same_label = [i for i in range(n) if splits[a].labels[i] == splits[b].labels[i]]
        assert same_label, f"{a}/{b}: no index with equal labels, so this case cannot tell the streams apart"
        for i in same_label:
            assert not np.array_equal(pixels[a][i], pixels[b][i]), f"{task} {b}[{i}] is {a}[{i}]: the same random stream"
        if task != "lesion": assert splits[a].labels != splits[b].labels, f"{task} {a} and {b} share their label order"
        if task == "lesion":
            same_box = sum(splits[a][i].bbox == splits[b][i].bbox for i in range(n))
            assert same_box < n // 4, f"{task} {a}/{b}: {same_box} of {n} boxes agree"
    again = synthmed(task, "test", n=n, seed=0, image_size=32)   # and a split is still deterministic
    assert all(np.array_equal(np.asarray(again[i].image), pixels["test"][i]) for i in range(n))
