"""`edgegen serve` and `edgegen run --ray` on a real local Ray cluster (127.0.0.1 only).

One module-scoped cluster (2 CPUs, 200 MB object store) and one Serve application are shared by
the tests; the application holds the bundled digit U-Net and DCGAN, a tiny random SD, and two
copies of the digit U-Net deployed with tight limits (for 503s) and alone (for the replica kill).
Requests go over real HTTP, through the real `openai` client where it applies. Ray and Serve are
shut down when the module ends.
"""

import base64
import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import run_cli

pytest.importorskip("torch")  # to export the artifacts
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # the local cluster on 127.0.0.1 only (cluster.require_ray)
ray = pytest.importorskip("ray")
openai = pytest.importorskip("openai")
serve = pytest.importorskip("ray.serve")

from edgegen import Pipeline  # noqa: E402
from edgegen.demo import ZOO, export_zoo  # noqa: E402
from edgegen.serve.app import ServeOptions, start  # noqa: E402
from edgegen.serve.cluster import connect  # noqa: E402
from edgegen.serve.generate import generate  # noqa: E402
from edgegen.serve.jobs import INDEX, read_requests, run_job  # noqa: E402
from edgegen.serve.requests import ModelCard, RequestError, parse_request  # noqa: E402

if not (ZOO / "cond_unet.safetensors").is_file():
    pytest.skip("bundled weights not trained yet", allow_module_level=True)

TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return export_zoo(tmp_path_factory.mktemp("zoo"), int8=False)


@pytest.fixture(scope="module")
def cards(zoo, tiny_sd_artifact):
    paths = {"digits": zoo["digits-diffusion"], "dcgan": zoo["digits-dcgan"], "tiny-sd": tiny_sd_artifact,
             "digits-tight": zoo["digits-diffusion"], "digits-fault": zoo["digits-diffusion"]}
    return {name: ModelCard.from_artifact(name, path) for name, path in paths.items()}


@pytest.fixture(scope="module")
def cluster():
    connect(num_cpus=2, object_store_memory=200 * 2**20)
    yield ray.get_runtime_context().gcs_address
    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="module")
def service(cluster, cards):
    """Base URL of the Serve application (replicas reserve no CPU: five deployments share two cores)."""
    common = ServeOptions(replica_cpus=0, max_batch_size=4, batch_wait_s=0.1, max_ongoing_requests=4,
                          max_queued_requests=32)
    tight = ServeOptions(replica_cpus=0, max_batch_size=1, max_ongoing_requests=1, max_queued_requests=1)
    options = {name: tight if name == "digits-tight" else common for name in cards}
    return start(cards, options, host="127.0.0.1", port=_free_port())


@pytest.fixture(scope="module")
def client(service):
    return openai.OpenAI(base_url=service, api_key="unused", max_retries=0, timeout=TIMEOUT_S)


def _post(url: str, body) -> tuple:
    """(status, headers, JSON answer) of a POST to /images/generations."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(f"{url}/images/generations", data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
            return resp.status, resp.headers, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, json.loads(exc.read())


def _pngs(response: dict) -> list[bytes]:
    return [base64.b64decode(d["b64_json"]) for d in response["data"]]


def _run_pngs(*args) -> list[bytes]:
    result = run_cli("run", *args)
    assert result.exit_code == 0, result.output
    out = Path(args[args.index("--out") + 1])
    return [p.read_bytes() for p in sorted(out.glob("*.png"))]


def test_edgegen_imports_no_ray_and_names_the_extra_without_it(tmp_path):
    """The base install stays free of Ray: importing edgegen, edgegen.serve and the CLI loads no Ray,
    and `edgegen serve` / `run --ray` without Ray say which extra to install."""
    code = f"""
import sys
sys.modules["ray"] = None  # any `import ray` now raises ImportError, as on a base install
import edgegen, edgegen.serve, edgegen.cli
from edgegen.cli import app
from typer.testing import CliRunner
for args in (["serve", {str(tmp_path)!r}], ["run", {str(tmp_path)!r}, "--prompts", {str(tmp_path / "p.txt")!r},
             "--ray", "--out", {str(tmp_path / "out")!r}]):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "pip install 'edgegen[serve]'" in result.output, result.output
"""
    (tmp_path / "p.txt").write_text("a\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- requests, without Ray ---------------------------------------------------------------------

@pytest.mark.parametrize("body, field", [
    ({"model": "nope"}, "model"),
    ({"model": "dcgan", "size": "64x64"}, "size"),
    ({"model": "tiny-sd", "size": "33x32"}, "size"),
    ({"model": "tiny-sd", "size": "big"}, "size"),
    ({"model": "digits", "n": 0}, "n"),
    ({"model": "digits", "n": "2"}, "n"),
    ({"model": "digits", "sampler": "heun"}, "sampler"),
    ({"model": "digits", "sigmas": "linear"}, "sigmas"),
    ({"model": "digits", "steps": 0}, "steps"),
    ({"model": "digits", "guidance_scale": -1}, "guidance_scale"),
    ({"model": "digits", "class_label": 10}, "class_label"),
    ({"model": "digits", "prompt": "a cat"}, "prompt"),
    ({"model": "digits", "seed": -1}, "seed"),
    ({"model": "digits", "response_format": "url"}, "response_format"),
    ({"model": "dcgan", "steps": 10}, "steps"),
    ({"model": "dcgan", "colour": "red"}, "colour"),
])
def test_request_errors_name_the_field(cards, body, field):
    with pytest.raises(RequestError) as info:
        parse_request(body, cards)
    assert info.value.field == field and str(info.value).startswith(f"{field}: expected")


@pytest.mark.parametrize("backend, sampler", [("openvino", {"sampler": "ddim"}),
                                              ("onnxruntime", {"sampler": "dpmpp-2m", "sigmas": "karras"})])
def test_a_merged_batch_gives_each_request_its_lone_bytes(cards, backend, sampler):
    """Same seed, same bytes: three requests merged into one engine call of 6 images equal the
    same requests run alone, PNG byte for PNG byte (text chunks included)."""
    card = cards["digits"]
    pipe = Pipeline.load(card.path, backend=backend)
    requests = [parse_request({"model": "digits", "n": 2, "seed": s, "steps": 5, "guidance_scale": 3,
                               "class_label": s, **sampler}, cards) for s in (1, 2, 3)]
    merged = generate(pipe, card, requests)
    assert {r.timings["batch_requests"] for r in merged} == {3}
    for request, result in zip(requests, merged):
        assert generate(pipe, card, [request])[0].pngs == result.pngs


# --- the HTTP service ----------------------------------------------------------------------------

def test_openai_client_gets_the_images_edgegen_run_writes(client, cards, tmp_path):
    response = client.images.generate(model="digits", prompt="7", n=2, size="32x32", response_format="b64_json",
                                      extra_body={"seed": 3, "steps": 10, "sampler": "ddim", "guidance_scale": 3})
    served = [base64.b64decode(d.b64_json) for d in response.data]
    expected = _run_pngs(cards["digits"].path, "--class-label", "7", "--num-images", "2", "--seed", "3", "--steps", "10",
                         "--sampler", "ddim", "--guidance-scale", "3", "--out", str(tmp_path / "digits"))
    assert served == expected
    assert response.model_extra["timings"]["batch_images"] >= 2

    response = client.images.generate(model="tiny-sd", prompt="a red cube", size="32x32",
                                      extra_body={"seed": 5, "steps": 3, "sampler": "ddim", "negative_prompt": "blue"})
    expected = _run_pngs(cards["tiny-sd"].path, "--prompt", "a red cube", "--negative-prompt", "blue", "--seed", "5",
                         "--steps", "3", "--sampler", "ddim", "--height", "32", "--width", "32",
                         "--out", str(tmp_path / "sd"))
    assert [base64.b64decode(d.b64_json) for d in response.data] == expected


def test_models_and_health(client, service, cards):
    assert sorted(m.id for m in client.models.list()) == sorted(cards)
    with urllib.request.urlopen(service.removesuffix("/v1") + "/health", timeout=TIMEOUT_S) as resp:
        assert resp.status == 200 and json.loads(resp.read())["models"] == sorted(cards)


@pytest.mark.parametrize("body, status, field", [
    ({"model": "nope", "prompt": "x"}, 404, "model"),
    ({"model": "dcgan", "prompt": "x", "size": "64x64"}, 400, "size"),
    ({"model": "digits", "prompt": "x", "n": 99}, 400, "n"),
    (b"not json", 400, "body"),
    ([1, 2], 400, "body"),
])
def test_bad_requests_answer_4xx_naming_the_field(service, body, status, field):
    code, _, answer = _post(service, body)
    assert code == status and answer["error"]["param"] == field
    assert answer["error"]["message"].startswith(f"{field}: expected")


def test_openai_client_raises_bad_request_naming_the_field(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.images.generate(model="digits", prompt="x", extra_body={"sampler": "heun"})
    assert info.value.body["param"] == "sampler" and "heun" in info.value.body["message"]


def test_concurrent_requests_are_batched_with_unchanged_bytes(service):
    bodies = [{"model": "digits", "n": 1, "seed": s, "steps": 8, "sampler": "ddim", "guidance_scale": 3,
               "class_label": s} for s in range(4)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda b: _post(service, b), bodies))
    alone = [_post(service, b) for b in bodies]
    assert all(r[0] == 200 for r in together + alone)
    assert max(r[2]["timings"]["batch_requests"] for r in together) > 1
    assert all(r[2]["timings"]["batch_requests"] == 1 for r in alone)
    assert [_pngs(r[2]) for r in together] == [_pngs(r[2]) for r in alone]


def test_a_full_queue_answers_503_with_retry_after(service):
    """digits-tight holds one request and queues one: of 6 at once, the rest get 503 at once."""
    body = {"model": "digits-tight", "steps": 40, "sampler": "ddim"}
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: _post(service, body), range(6)))
    codes = sorted(a[0] for a in answers)
    assert len(answers) == 6 and set(codes) <= {200, 503} and 200 in codes and 503 in codes, codes
    for code, headers, answer in answers:
        if code == 503:
            assert headers.get("Retry-After") == "1" and "queue full" in answer["error"]["message"], (headers, answer)


@pytest.mark.slow
def test_serve_command_answers_and_stops_by_itself(cards, tmp_path):
    """`edgegen serve` in a subprocess (its own local Ray cluster): /health, one generation through
    the openai client, then --timeout stops it (exit 0)."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "edgegen", "serve", f"dcgan={cards['dcgan'].path}", "--port", str(port),
                             "--replica-cpus", "0.5", "--timeout", "20"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    try:
        line = proc.stdout.readline()  # printed once the replicas are up
        assert f"at http://127.0.0.1:{port}/v1" in line, line
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=60)
        assert len(client.images.generate(model="dcgan", prompt="", n=3).data) == 3
        assert proc.wait(timeout=TIMEOUT_S) == 0
    finally:
        proc.kill()


# --- faults --------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_killed_replica_is_replaced_and_every_request_is_answered(service):
    """SIGKILL the digits-fault replica with 4 requests in flight: each gets exactly one answer (200
    after the ingress's retry on the restarted replica, or a clear 503), and the service goes on."""
    handle = serve.get_deployment_handle("generator-digits-fault", app_name="edgegen")
    pid = handle.pid.remote().result(timeout_s=TIMEOUT_S)
    body = {"model": "digits-fault", "steps": 200, "sampler": "ddim"}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(_post, service, dict(body, seed=s)) for s in range(4)]
        time.sleep(1.0)
        os.kill(pid, signal.SIGKILL)
        answers = [f.result(timeout=TIMEOUT_S) for f in futures]
    assert len(answers) == 4
    print("answers after the kill:", [(code, answer.get("error")) for code, _, answer in answers])
    for code, _, answer in answers:
        assert code == 200 or (code == 503 and "replica died" in answer["error"]["message"]), answer
    code, _, _ = _post(service, dict(body, steps=2))
    assert code == 200
    assert handle.pid.remote().result(timeout_s=TIMEOUT_S) != pid


# --- offline Ray jobs ------------------------------------------------------------------------------

def test_ray_job_writes_an_index_and_resumes_verified_images(cluster, cards, tmp_path):
    card = cards["dcgan"]
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"digit {i}\n" for i in range(6)))
    requests = read_requests(card, prompts=prompts, defaults={"seed": 10, "n": 2})
    seen = []
    first = run_job(card, requests, tmp_path / "out", chunk_size=2, progress=lambda *a: seen.append(a))
    assert (first.written, first.skipped) == (12, 0) and seen[-1] == ("images", 12, 12)
    files = sorted((tmp_path / "out").glob("*.png"))
    assert len(files) == 12 and len((tmp_path / "out" / INDEX).read_text().splitlines()) == 12
    pipe = Pipeline.load(card.path)
    assert files[2].read_bytes() == generate(pipe, card, [requests[1]])[0].pngs[0]  # seed 11, image 0
    again = run_job(card, requests, tmp_path / "out")
    assert (again.written, again.skipped) == (0, 12)
    original = files[5].read_bytes()
    files[5].write_bytes(b"torn")
    redone = run_job(card, requests, tmp_path / "out")
    assert (redone.written, redone.skipped) == (2, 10) and files[5].read_bytes() == original


def test_run_cli_ray_branch(cluster, cards, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("3\n7\n")
    out = tmp_path / "out"
    args = ["run", cards["dcgan"].path, "--prompts", prompts, "--out", out, "--num-images", "2"]
    refused = run_cli(*args)
    assert refused.exit_code == 1 and "expected --ray as well" in refused.output
    result = run_cli(*args, "--ray", "--address", cluster)
    assert result.exit_code == 0, result.output
    assert "wrote 4 image(s)" in result.output and len((out / INDEX).read_text().splitlines()) == 4


@pytest.mark.slow
def test_a_job_killed_halfway_resumes_to_the_uninterrupted_bytes(cluster, cards, tmp_path):
    """`edgegen run --jobs --ray` killed (SIGKILL) once half its images are indexed, then re-run: the
    final PNGs equal an uninterrupted run's, byte for byte."""
    card = cards["digits"]
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"class_label": i % 10, "seed": i, "steps": 30, "sampler": "ddpm",
                                        "guidance_scale": 3}) + "\n" for i in range(16)))
    reference = run_job(card, read_requests(card, jobs=jobs), tmp_path / "reference")
    assert reference.written == 16
    command = [sys.executable, "-m", "edgegen", "run", card.path, "--jobs", str(jobs), "--ray", "--address", cluster,
               "--out", str(tmp_path / "resumed")]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    index = tmp_path / "resumed" / INDEX
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline and (not index.is_file() or len(index.read_text().splitlines()) < 8):
        time.sleep(0.05)
    proc.kill()
    proc.wait(timeout=30)
    written = len(index.read_text().splitlines())
    assert 8 <= written < 16, written
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"{written} already written and verified" in result.stdout
    names = sorted(p.name for p in (tmp_path / "reference").glob("*.png"))
    assert names == sorted(p.name for p in (tmp_path / "resumed").glob("*.png")) and len(names) == 16
    for name in names:
        assert (tmp_path / "resumed" / name).read_bytes() == (tmp_path / "reference" / name).read_bytes(), name
