"""Drives `egpu serve` with the official `openai` package (the oracle for the API's shape).

usage: openai_client.py BASE_URL [API_KEY]
Without API_KEY: answers, streaming, stop strings, limits, concurrency, a disconnect, errors.
With API_KEY: only the key checks (the server was started with --api-key API_KEY).
"""
import http.client
import json
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import openai

BASE = sys.argv[1].rstrip("/")
KEY = sys.argv[2] if len(sys.argv) > 2 else None
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


def client(key="not-needed"):
    return openai.OpenAI(base_url=BASE + "/v1", api_key=key, max_retries=0, timeout=300)


def raw(path, body, headers=None):
    """POST raw bytes; returns (status, parsed JSON body)."""
    req = urllib.request.Request(BASE + path, data=body, method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def check_error_shape(body, status):
    err = body["error"]
    assert isinstance(err["message"], str) and err["message"], body
    assert isinstance(err["type"], str), body
    assert "param" in err and "code" in err, body
    print(f"ok  {status}: {err['message'][:80]}")


def key_checks():
    c = client(KEY)
    model = c.models.list().data[0].id
    try:
        client("wrong-key").chat.completions.create(model=model, messages=FRANCE, max_tokens=1)
        raise AssertionError("a wrong key was accepted")
    except openai.AuthenticationError as e:
        assert e.status_code == 401
        check_error_shape({"error": e.body}, 401)
    status, body = raw("/v1/chat/completions", json.dumps({"messages": FRANCE}).encode())
    assert status == 401, status
    check_error_shape(body, 401)
    r = c.chat.completions.create(model=model, messages=FRANCE, temperature=0, max_tokens=8)
    assert "Paris" in r.choices[0].message.content, r
    print("ok  the right key is accepted, a missing or wrong one gets 401")


def stream_text(c, model, messages, **kw):
    parts = []
    for chunk in c.chat.completions.create(model=model, messages=messages, stream=True, **kw):
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
    return parts


def main():
    if KEY:
        key_checks()
        return
    c = client()
    models = c.models.list().data
    assert len(models) == 1, models
    model = models[0].id

    # Non-streaming, greedy.
    r = c.chat.completions.create(model=model, messages=FRANCE, temperature=0, max_tokens=16, seed=1)
    answer = r.choices[0].message.content
    assert "Paris" in answer, answer
    assert r.choices[0].finish_reason == "stop", r
    assert r.usage.prompt_tokens > 10 and 1 <= r.usage.completion_tokens <= 16, r.usage
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    print(f"ok  chat: {answer!r}, usage {r.usage.prompt_tokens}+{r.usage.completion_tokens}")

    # Streaming gives the same greedy text in several pieces, and usage when asked.
    usage = None
    parts = []
    for chunk in c.chat.completions.create(model=model, messages=FRANCE, temperature=0, max_tokens=16,
                                           stream=True, stream_options={"include_usage": True}):
        if chunk.usage:
            usage = chunk.usage
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
    assert "".join(parts) == answer and len(parts) > 1, parts
    assert usage and usage.completion_tokens == r.usage.completion_tokens, usage
    print(f"ok  streamed in {len(parts)} pieces, same text")

    # A stop string ends the answer before it; it is not part of the text.
    r = c.chat.completions.create(model=model, messages=FRANCE, temperature=0, max_tokens=16, stop=["Paris"])
    cut = answer[:answer.index("Paris")]
    assert r.choices[0].message.content == cut and r.choices[0].finish_reason == "stop", r
    print(f"ok  stop string: {r.choices[0].message.content!r}")

    # max_tokens.
    r = c.chat.completions.create(model=model, messages=FRANCE, temperature=0, max_tokens=2)
    assert r.usage.completion_tokens == 2 and r.choices[0].finish_reason == "length", r
    assert answer.startswith(r.choices[0].message.content), r
    print("ok  max_tokens 2: finish_reason length")

    # The completions endpoint.
    r = c.completions.create(model=model, prompt="1, 2, 3, 4, 5,", temperature=0, max_tokens=6)
    assert r.choices[0].text.strip().startswith("6"), r
    print(f"ok  completion: {r.choices[0].text!r}")

    # Two concurrent streams stay separate: each equals its own answer computed alone.
    prompts = [[{"role": "user", "content": "Name a color."}],
               [{"role": "user", "content": "What is 2 + 2?"}]]
    alone = ["".join(stream_text(c, model, p, temperature=0, max_tokens=12)) for p in prompts]
    assert alone[0] != alone[1], alone
    got = [None, None]

    def worker(i):
        got[i] = "".join(stream_text(client(), model, prompts[i], temperature=0, max_tokens=12))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert got == alone, (got, alone)
    print(f"ok  two concurrent streams: {got}")

    # A client that disconnects mid-stream frees the model for the next request.
    before = json.loads(urllib.request.urlopen(BASE + "/health", timeout=30).read())["cancelled"]
    url = urllib.parse.urlparse(BASE)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=300)
    conn.request("POST", "/v1/completions", json.dumps(
        {"prompt": "1, 2, 3, 4, 5,", "max_tokens": 2000, "temperature": 0, "stream": True}),
        {"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200
    seen = 0
    while seen < 3:
        line = resp.fp.readline()
        if line.startswith(b"data: {"):
            seen += 1
    conn.sock.close()
    conn.close()
    r = c.chat.completions.create(model=model, messages=FRANCE, temperature=0, max_tokens=16)
    assert r.choices[0].message.content == answer, r
    # The server counted the abandoned answer as cancelled (it stopped generating it).
    deadline = time.monotonic() + 120
    while True:
        after = json.loads(urllib.request.urlopen(BASE + "/health", timeout=30).read())["cancelled"]
        if after == before + 1:
            break
        assert time.monotonic() < deadline, f"cancelled count stayed {after} (was {before})"
        time.sleep(0.2)
    print("ok  disconnect mid-stream: answer cancelled, next request answered")

    # Errors in OpenAI's shape with the right status codes.
    status, body = raw("/v1/chat/completions", b'{"messages": [')
    assert status == 400, status
    check_error_shape(body, status)
    try:
        c.chat.completions.create(model="no-such-model", messages=FRANCE)
        raise AssertionError("unknown model accepted")
    except openai.NotFoundError as e:
        assert e.status_code == 404 and e.body["code"] == "model_not_found", e.body
        print("ok  404 for an unknown model")
    for bad in ({"max_tokens": 10 ** 9}, {"n": 2}, {"temperature": -1}, {"top_p": 5}):
        try:
            c.chat.completions.create(model=model, messages=FRANCE, **bad)
            raise AssertionError(f"{bad} accepted")
        except openai.BadRequestError as e:
            assert e.status_code == 400, e
            print(f"ok  400 for {bad}: {e.body['message'][:70]}")
    status, body = raw("/v1/chat/completions", b'{"messages": "' + b"x" * 8192 + b'"}')
    assert status == 413, status
    check_error_shape(body, status)


if __name__ == "__main__":
    main()
