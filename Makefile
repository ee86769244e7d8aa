# Two commands for a fresh machine: `make demo` and `make test`.
# Both create .venv (Python 3.10+) when missing and install tseg with every extra.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUNTIME_VENV ?= .venv-runtime
SMOKE := build/runtime-smoke

.PHONY: demo test test-all venv lint harden runtime-smoke bench bench-crf bench-models bench-train bench-infer bench-precisions \
	crf-reference report-demo clean

$(VENV)/.installed: pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) -m tseg.export.demo

# The working loop leaves out the tests marked slow (the heaviest zoo exports, packaging builds);
# test-all (what CI runs) runs every test.
test: venv
	$(PY) -m pytest -m "not slow"
	$(MAKE) runtime-smoke

test-all: venv
	$(PY) -m pytest
	$(MAKE) runtime-smoke

# The runtime installs and runs without torch: base package only, in its own venv.
runtime-smoke: venv
	rm -rf $(SMOKE) && $(PY) -m tests.runtime_smoke $(SMOKE)
	rm -rf $(RUNTIME_VENV) && $(PYTHON) -m venv $(RUNTIME_VENV)
	# No C/C++ compiler needed (the CRF is Numba): a build that tried one would fail.
	CC=false CXX=false $(RUNTIME_VENV)/bin/pip install --quiet .
	# The build leaves tseg.egg-info at the root, where importlib.metadata would find its stale entry points.
	rm -rf tseg.egg-info
	$(RUNTIME_VENV)/bin/python -c "import importlib.util as u, sys; sys.exit('torch is installed' if u.find_spec('torch') else 0)"
	$(RUNTIME_VENV)/bin/tseg-infer $(SMOKE)/data/rgb --model $(SMOKE)/tiny.onnx --out $(SMOKE)/labels --quiet
	# --device auto (the default) names the engine it picked in one note on stderr (no OpenVINO here yet).
	$(RUNTIME_VENV)/bin/tseg-infer --coco $(SMOKE)/data/val.json --model $(SMOKE)/tiny.onnx --out $(SMOKE)/val --eval \
		--report $(SMOKE)/report --quiet 2> $(SMOKE)/auto-base.err || { cat $(SMOKE)/auto-base.err; exit 1; }
	grep -qE "^note: --device auto: running on (CUDAExecutionProvider|CPUExecutionProvider: .*OpenVINO is not installed)" \
		$(SMOKE)/auto-base.err || { cat $(SMOKE)/auto-base.err; exit 1; }
	$(RUNTIME_VENV)/bin/tseg-infer --coco $(SMOKE)/data/val.json --model $(SMOKE)/tiny.onnx --out $(SMOKE)/val-crf --eval --crf \
		--report $(SMOKE)/report-crf --quiet
	$(RUNTIME_VENV)/bin/tseg-report $(SMOKE)/report $(SMOKE)/report-crf --out $(SMOKE)/compare
	# The openvino extra on top of the base install: still no torch, no compiler.
	CC=false CXX=false $(RUNTIME_VENV)/bin/pip install --quiet '.[openvino]'
	rm -rf tseg.egg-info
	$(RUNTIME_VENV)/bin/python -c "import importlib.util as u, sys; sys.exit('torch is installed' if u.find_spec('torch') else 0)"
	$(RUNTIME_VENV)/bin/tseg-infer --coco $(SMOKE)/data/val.json --model $(SMOKE)/tiny.onnx --out $(SMOKE)/val-openvino --eval --device openvino --quiet
	# With OpenVINO installed, --device auto picks it (in f32) unless a GPU loads first.
	$(RUNTIME_VENV)/bin/tseg-infer --coco $(SMOKE)/data/val.json --model $(SMOKE)/tiny.onnx --out $(SMOKE)/val-auto --eval --quiet \
		2> $(SMOKE)/auto-openvino.err || { cat $(SMOKE)/auto-openvino.err; exit 1; }
	grep -qE "^note: --device auto: running on (CUDAExecutionProvider|OpenVINO CPU \(f32\))" \
		$(SMOKE)/auto-openvino.err || { cat $(SMOKE)/auto-openvino.err; exit 1; }
	@echo "runtime smoke test passed: tseg-infer (its CRF, its report, and OpenVINO) and tseg-report ran without torch or a compiler"

# Speed claims: each script prints ratios measured side by side in one run.
bench-crf: venv
	$(PY) benchmarks/crf.py
bench-models: venv
	$(PY) benchmarks/models.py
bench-train: venv
	$(PY) benchmarks/train.py
bench-infer: venv
	$(PY) benchmarks/infer.py
bench-precisions: venv
	$(PY) benchmarks/precisions.py

# tseg-bench on what `make demo` left (the README's benchmark section).
DEMO_DATA = $(firstword $(wildcard $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/tseg/synthetic-*/))
bench: venv
	test -f runs/demo/best.int8.onnx || (echo "run make demo first" && false)
	$(VENV)/bin/tseg-bench runs/demo/best.onnx runs/demo/best.int8.onnx --checkpoint runs/demo/best.pt \
		--sizes 256,512 --coco $(DEMO_DATA)val.json --data $(DEMO_DATA) --stages --crf --markdown build/bench.md \
		--html build/bench.html

# The evaluation report on what `make demo` left, without and with the dense CRF, the two side by side
# (tseg-report), and screenshots of both pages in a headless Chromium: build/report-demo/index.html,
# build/report-demo-plain/index.html, build/report-demo-compare/index.html, build/report-demo.png and
# build/report-demo-compare.png (docs/images/report.png and report-compare.png are copies of the two PNGs).
SCREENSHOT = chromium --headless --no-sandbox --disable-gpu --hide-scrollbars
report-demo: venv
	test -f runs/demo/best.onnx || (echo "run make demo first" && false)
	command -v chromium >/dev/null || (echo "the screenshots need chromium (apt-get install chromium)" && false)
	$(VENV)/bin/tseg-infer --coco $(DEMO_DATA)val.json --data $(DEMO_DATA) --model runs/demo/best.onnx \
		--out build/report-demo-labels/plain --eval --report build/report-demo-plain --quiet
	$(VENV)/bin/tseg-infer --coco $(DEMO_DATA)val.json --data $(DEMO_DATA) --model runs/demo/best.onnx \
		--out build/report-demo-labels/crf --eval --crf --report build/report-demo --quiet
	$(VENV)/bin/tseg-report build/report-demo-plain build/report-demo --out build/report-demo-compare
	# The report's top (settings, scores, IoU per class); the comparison down to its first pictured image.
	$(SCREENSHOT) --window-size=1400,1140 --screenshot=$(abspath build/report-demo.png) \
		file://$(abspath build/report-demo/index.html)
	$(SCREENSHOT) --window-size=1200,2325 --screenshot=$(abspath build/report-demo-compare.png) \
		file://$(abspath build/report-demo-compare/index.html)
	# 256 colours keep the comparison (photos included) under 300 KB for the docs; text and swatches stay legible.
	$(PY) -c 'import sys; from PIL import Image; p = sys.argv[1]; \
		Image.open(p).convert("RGB").quantize(256, method=Image.Quantize.MAXCOVERAGE).save(p, optimize=True)' \
		build/report-demo-compare.png

# The bad-input harness's totals (it also runs inside `make test`).
harden: venv
	rm -rf build/harden && $(PY) -m tests.hardening.runner --work build/harden --summary

# Regenerates tests/runtime/crf_reference/*.npz with pydensecrf2 (the CRF's oracle).
crf-reference: venv
	$(PY) benchmarks/make_crf_reference.py

lint: venv
	$(PY) -m ruff check .

clean:
	rm -rf build dist *.egg-info $(RUNTIME_VENV)
	find runtime train export -name '*.nbi' -o -name '*.nbc' | xargs rm -f  # Numba's kernel cache
