"""Tests for vrft_aug.knowledge and vrft_aug.prompts that do not fit in the notebooks: agreement with vrft_aug.data,
property tests, every variant x dataset x option style, the to_trl round trip, malformed files, and generate_knowledge
against a fake endpoint and offline local models."""
import json, logging, re, threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from vrft_aug.core import normalize_answer
from vrft_aug.data import MEDMNIST_INFO, SYNTHMED_TASKS, medmnist, synthmed, synthmed_info, to_trl, write_fake_medmnist
from vrft_aug.knowledge import (KnowledgeBase, KnowledgeError, available_knowledge, count_tokens, cut_to_budget,
                                derangement, generate_knowledge, load_knowledge)
from vrft_aug.prompts import (OPTION_STYLES, VARIANTS, TemplateError, VariantNotApplicable, build_prompt,
                              knowledge_block, load_templates, make_prompt_fn, render_chat, variant_applies)

DATASETS = [f"synthmed-{t}" for t in SYNTHMED_TASKS] + list(MEDMNIST_INFO)


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("medmnist")
    out = {}
    for flag in MEDMNIST_INFO:
        write_fake_medmnist(root, flag, n=2, rgb=flag in ("pathmnist", "dermamnist", "bloodmnist", "retinamnist"))
        out[flag] = medmnist(flag, "test", root=root, download=False)[0]
    for t in SYNTHMED_TASKS:
        s = synthmed(t, "test", n=1, seed=0)[0]
        out[s.dataset] = s
    return out


# ---- knowledge files agree with the data module -------------------------------------------------------------------

def test_fifteen_packaged_knowledge_bases():
    assert sorted(available_knowledge()) == sorted(DATASETS)

@pytest.mark.parametrize("flag", list(MEDMNIST_INFO))
def test_medmnist_knowledge_matches_official_labels(flag):
    info = MEDMNIST_INFO[flag]
    kb = load_knowledge(flag, class_names=info.class_names)
    assert kb.dataset == flag and kb.task == info.task
    assert all(len(c.description.split()) >= 10 for c in kb.classes), "descriptions should say something"

@pytest.mark.parametrize("task", SYNTHMED_TASKS)
def test_synthmed_knowledge_matches_generator(task):
    info = synthmed_info(task)
    kb = load_knowledge(info.name, class_names=info.class_names)
    assert kb.task == info.task

def test_aliases_never_name_two_classes():
    for name in available_knowledge():
        seen = {}
        for cls, names in load_knowledge(name).aliases().items():
            for a in [cls, *names]:
                k = normalize_answer(a)
                assert seen.setdefault(k, cls) == cls, (name, a, cls, seen[k])


# ---- properties ---------------------------------------------------------------------------------------------------

@given(st.integers(2, 60), st.integers(0, 2**32 - 1))
def test_derangement_moves_everything(n, seed):
    p = derangement(n, seed)
    assert sorted(p) == list(range(n)) and all(p[i] != i for i in range(n))
    assert p == derangement(n, seed)

@given(st.lists(st.text(alphabet="abcdefgh-,.é ", min_size=1, max_size=8), min_size=0, max_size=40), st.integers(1, 30))
def test_cut_to_budget_is_the_longest_word_prefix(words, budget):
    text = " ".join(words)
    cut = cut_to_budget(text, budget)
    w, c = text.split(), cut.split()
    assert c == w[:len(c)]                      # a prefix of whole words
    assert len(c) <= budget                     # within the budget
    assert len(c) == min(len(w), budget)        # and the longest such prefix

def test_cut_to_budget_in_tokens_is_maximal():
    from vrft_aug.tiny import train_tiny_tokenizer
    tok = train_tiny_tokenizer()
    text = load_knowledge("pathmnist").text("colorectal adenocarcinoma epithelium")
    for budget in (1, 3, 10, 25, 60):
        cut = cut_to_budget(text, budget, tok)
        assert text.startswith(cut) and count_tokens(cut, tok) <= budget
        k = len(cut.split())
        if k < len(text.split()):
            assert count_tokens(" ".join(text.split()[:k + 1]), tok) > budget

def test_every_cut_is_logged(caplog):
    kb = load_knowledge("chestmnist")
    with caplog.at_level(logging.WARNING, logger="vrft_aug.knowledge"):
        kb.block(budget=15)
    cut = [n for n in kb.class_names if len(kb.text(n).split()) > 15]
    assert cut and len(caplog.records) == len(cut)
    assert all(f"chestmnist/{n}: description cut" in caplog.text for n in cut)


# ---- every variant renders for every dataset -----------------------------------------------------------------------

def _listed_options(text, style):
    question = text.split("\n\n")[0]
    if style == "name": return re.findall(r"^- (.+)$", question, re.M)
    return [n for _, n in re.findall(r"^([A-Z])\. (.+)$", question, re.M)]

@pytest.mark.parametrize("dataset", DATASETS)
def test_every_variant_renders(samples, dataset):
    s = samples[dataset]
    plain = {style: build_prompt(s, "plain", options=style) for style in OPTION_STYLES}
    n_built = 0
    for v in VARIANTS:
        if not variant_applies(v, s):
            with pytest.raises(VariantNotApplicable, match=repr(v)): build_prompt(s, v)
            continue
        for style in OPTION_STYLES:
            p = build_prompt(s, v, options=style); n_built += 1
            user = p.messages[-1]
            assert user["role"] == "user" and user["content"][0] == {"type": "image"}
            if p.kind == "localization":
                assert p.options == () and "[x1, y1, x2, y2]" in p.text
            else:   # choices in the prompt are exactly the label set, in label order
                assert _listed_options(p.text, style) == list(s.class_names) == list(p.options)
                assert p.option_letters == (tuple(chr(65 + i) for i in range(len(s.class_names))) if style == "letter" else ())
            # the recitation reference is exactly the injected text, and it is the only addition to the plain prompt
            if p.knowledge_text:
                assert p.text.count(p.knowledge_text) == 1
                base = plain[style] if p.think else build_prompt(s, "no-think", options=style)
                assert p.text.replace(p.knowledge_text + "\n\n", "") == base.text
            assert ("<think>" in p.text) == p.think
            render_chat(p.messages)
    assert n_built >= 8

@pytest.mark.parametrize("dataset", [d for d in DATASETS if d != "synthmed-lesion"])
def test_shuffled_control_moves_every_description(samples, dataset):
    s = samples[dataset]
    kb = load_knowledge(dataset)
    true, shuf = build_prompt(s, "knowledge"), build_prompt(s, "shuffled-knowledge", seed=3)
    t_lines, s_lines = true.knowledge_text.splitlines(), shuf.knowledge_text.splitlines()
    assert len(t_lines) == len(s_lines)
    head = len(t_lines) - len(kb)
    assert t_lines[:head] == s_lines[:head]      # same header
    for name, a, b in zip(kb.class_names, t_lines[head:], s_lines[head:]):
        assert a != b and kb.text(name) in a and kb.text(name) not in b
    assert sorted(l.split(": ", 1)[1] for l in t_lines[head:]) == sorted(l.split(": ", 1)[1] for l in s_lines[head:])
    assert shuf.knowledge_text == knowledge_block(kb.shuffled(3), true.kind)

def test_letters_agree_with_the_accuracy_reward_parser(samples):
    matching = pytest.importorskip("vrft_aug.matching")
    if not hasattr(matching, "option_letters_from_prompt"): pytest.skip("matching has no option_letters_from_prompt")
    for d, s in samples.items():
        if s.task == "localization": continue
        for v in ("plain", "knowledge", "shuffled-knowledge"):
            p = build_prompt(s, v, options="letter")
            found = matching.option_letters_from_prompt(p.messages, s.class_names)
            assert found == {l: i for i, l in enumerate(p.option_letters)}, (d, v)

def test_to_trl_round_trip(samples):
    from vrft_aug.tiny import make_processor, train_tiny_tokenizer
    proc = make_processor(train_tiny_tokenizer())
    for task in SYNTHMED_TASKS:
        ds = synthmed(task, "train", n=3, seed=1)
        variant = "knowledge"
        rows = to_trl(ds, prompt_fn=make_prompt_fn(variant, options="letter" if task != "lesion" else "name",
                                                   system="You are careful."))
        for s, row in zip(ds, rows):
            p = build_prompt(s, variant, options="letter" if task != "lesion" else "name", system="You are careful.")
            assert row["knowledge"] == p.knowledge_text != ""
            # after the Arrow round trip the template renders the same text
            assert render_chat(row["prompt"], proc) == render_chat(p.messages, proc)

def test_budget_in_prompt_fn_logs_once_per_dataset(caplog):
    fn = make_prompt_fn("knowledge", budget=6)
    with caplog.at_level(logging.WARNING, logger="vrft_aug.knowledge"):
        for s in synthmed("cells", "train", n=6, seed=0): fn(s)
    assert len(caplog.records) == 4   # four classes cut, once


# ---- malformed files -----------------------------------------------------------------------------------------------

GOOD = {"dataset": "toy", "modality": "toy microscopy", "description": "One cell; decide its type.",
        "task": "classification",
        "classes": [{"name": "round", "aliases": ["circle"], "description": "A round cell."},
                    {"name": "square", "description": "A square cell."}]}

def _edit(f):
    d = json.loads(json.dumps(GOOD)); f(d); return d

MALFORMED = [
    ("missing class", _edit(lambda d: d["classes"].pop()), "missing class(es) ['square']"),
    ("unknown class", _edit(lambda d: d["classes"][1].update(name="oval")), "unknown class(es) ['oval']"),
    ("empty description", _edit(lambda d: d["classes"][1].update(description="  ")), "classes[1] ('square'): description is empty"),
    ("duplicate alias", _edit(lambda d: d["classes"][1].update(aliases=["Circle"])), "classes[1] ('square'): alias 'Circle' clashes with class 'round'"),
    ("alias = name", _edit(lambda d: d["classes"][0].update(aliases=["SQUARE"])), "clashes with class 'round'"),
    ("duplicate name", _edit(lambda d: d["classes"][1].update(name="Round")), "clashes with class 'round'"),
    ("wrong type", _edit(lambda d: d["classes"][0].update(description=["a", "b"])), "'description' must be a string, got list"),
    ("bool name", _edit(lambda d: d["classes"][0].update(name=True)), "'name' must be a string, got bool"),
    ("missing description", _edit(lambda d: d["classes"][0].pop("description")), "classes[0] ('round'): missing 'description'"),
    ("missing task", _edit(lambda d: d.pop("task")), "missing 'task'"),
    ("classes not a list", _edit(lambda d: d.update(classes={"round": "A round cell."})), "'classes' must be a list"),
    ("class not a mapping", _edit(lambda d: d["classes"].append("triangle")), "classes[2]: expected a mapping"),
    ("unknown top key", _edit(lambda d: d.update(colour="red")), "unknown key(s) ['colour']"),
]

@pytest.mark.parametrize("what,data,expected", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_knowledge_file(tmp_path, what, data, expected):
    p = tmp_path / "mine.yaml"
    p.write_text(json.dumps(data))
    with pytest.raises(KnowledgeError) as e: load_knowledge(p, class_names=["round", "square"])
    assert str(e.value).startswith(str(p)) and expected in str(e.value), str(e.value)

def test_bad_yaml_and_unsafe_tags(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("dataset: [unclosed\n")
    with pytest.raises(KnowledgeError, match="not valid YAML"): load_knowledge(p)
    p.write_text("!!python/object/apply:os.system ['echo unsafe']\n")   # safe_load refuses to build objects
    with pytest.raises(KnowledgeError, match="not valid YAML"): load_knowledge(p)

def test_good_file_and_class_check(tmp_path):
    p = tmp_path / "mine.yaml"; p.write_text(json.dumps(GOOD))
    kb = load_knowledge(p, class_names=["round", "square"])
    assert kb.aliases() == {"round": ["circle"], "square": []}
    with pytest.raises(KnowledgeError, match="out of order"): load_knowledge(p, class_names=["square", "round"])

def test_user_knowledge_file_in_prompts(tmp_path, samples):
    s = samples["synthmed-cells"]
    kb = load_knowledge("synthmed-cells")
    mine = replace(kb, classes=tuple(replace(c, description=f"My own words about {c.name}.") for c in kb.classes))
    p = tmp_path / "cells.yaml"; mine.to_yaml(p)
    assert "My own words about monocyte." in build_prompt(s, "knowledge", kb=p).knowledge_text
    assert "My own words about monocyte." in build_prompt(s, "knowledge", kb=mine).knowledge_text
    with pytest.raises(KnowledgeError, match="missing class"): build_prompt(samples["pathmnist"], "knowledge", kb=p)

def test_bad_template_file(tmp_path, samples):
    shipped = (Path(__file__).resolve().parents[1] / "vrft_aug" / "templates" / "prompts.yaml").read_text()
    p = tmp_path / "prompts.yaml"
    p.write_text(shipped.replace('line: "- {name}: {description}"', 'line: "- {name}: {text}"', 1))
    with pytest.raises(TemplateError, match=r"knowledge.default.line: unknown placeholder\(s\) \['\{text\}'\]"):
        load_templates(p)
    p.write_text(shipped.replace("system: null", 'system: "Be brief."').replace("Which of the following classes", "Name the class"))
    pr = build_prompt(samples["pathmnist"], "plain", templates=p)
    assert pr.messages[0]["content"][0]["text"] == "Be brief." and pr.text.startswith("Name the class")


# ---- generate_knowledge --------------------------------------------------------------------------------------------

class _Endpoint(BaseHTTPRequestHandler):
    mode, seen = "ok", []
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Endpoint.seen.append(body)
        if _Endpoint.mode == "500":
            self.send_response(500); self.end_headers(); self.wfile.write(b"overloaded"); return
        name = body["messages"][-1]["content"].split("class '")[1].split("'")[0]
        reply = {"choices": [{"message": {"content": f"Looks like a {name}."}}]} if _Endpoint.mode == "ok" else {"error": "?"}
        data = json.dumps(reply).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)
    def log_message(self, *a): pass

@pytest.fixture
def endpoint():
    srv = HTTPServer(("127.0.0.1", 0), _Endpoint)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    _Endpoint.mode, _Endpoint.seen = "ok", []
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown(); srv.server_close()

def test_generate_from_endpoint_is_cached(tmp_path, endpoint):
    info = MEDMNIST_INFO["breastmnist"]
    kb = generate_knowledge(info, endpoint, out_path=tmp_path / "b.yaml", model_id="m1", cache_dir=tmp_path / "c")
    assert kb.text("normal, benign") == "Looks like a normal, benign."
    assert load_knowledge(tmp_path / "b.yaml", class_names=info.class_names).classes == kb.classes
    assert len(_Endpoint.seen) == 2 and _Endpoint.seen[0]["model"] == "m1"
    generate_knowledge(info, endpoint, model_id="m1", cache_dir=tmp_path / "c")
    assert len(_Endpoint.seen) == 2
    generate_knowledge(info, endpoint, model_id="m1", cache_dir=tmp_path / "c", prompt="Describe the class '{name}' briefly.")
    assert len(_Endpoint.seen) == 4     # another prompt is another cache key

def test_generate_endpoint_errors(tmp_path, endpoint):
    info = MEDMNIST_INFO["pneumoniamnist"]
    _Endpoint.mode = "500"
    with pytest.raises(RuntimeError, match="HTTP 500: overloaded"):
        generate_knowledge(info, endpoint, model_id="m", cache_dir=tmp_path)
    _Endpoint.mode = "junk"
    with pytest.raises(RuntimeError, match="expected an OpenAI chat completion"):
        generate_knowledge(info, endpoint, model_id="m", cache_dir=tmp_path)
    assert not list(tmp_path.glob("*.json"))   # failures are not cached

def test_generate_with_local_text_model(tmp_path):
    """A 2-layer Qwen2ForCausalLM built offline from a config, with the tiny tokenizer: via (model, tokenizer) and via a path."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from vrft_aug.tiny import qwen25vl_chat_template, train_tiny_tokenizer
    tok = train_tiny_tokenizer()
    tok.chat_template = qwen25vl_chat_template()
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, pad_token_id=tok.pad_token_id,
                      eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"))
    model = Qwen2ForCausalLM(cfg).eval()
    info = synthmed_info("cells")
    sample = dict(do_sample=True, top_k=0, top_p=1.0)
    torch.manual_seed(1)
    kb = generate_knowledge(info, (model, tok), model_id="qwen2-tiny", cache_dir=tmp_path / "c", max_new_tokens=12,
                            generate_kwargs=sample)
    assert kb.class_names == info.class_names and all(c.description for c in kb.classes)
    assert len(list((tmp_path / "c").glob("*.json"))) == 4
    model.save_pretrained(tmp_path / "m"); tok.save_pretrained(tmp_path / "m")
    torch.manual_seed(2)
    kb2 = generate_knowledge(info, tmp_path / "m", out_path=tmp_path / "k.yaml", cache_dir=tmp_path / "c",
                             max_new_tokens=12, generate_kwargs=sample)
    assert len(list((tmp_path / "c").glob("*.json"))) == 8     # another model id (the path): new entries
    assert load_knowledge(tmp_path / "k.yaml").classes == kb2.classes
    assert "generated by" in kb2.source
