"""Ray Serve: two tiny pipeline replicas behind one loopback endpoint answer two conversations at once."""

from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
import soundfile as sf

from generation.config import SamplingSettings
from mumu.pipeline import ChatOptions, MuMuPipeline
from tests.serving import free_port

ray = pytest.importorskip("ray", reason="Ray Serve is optional: pip install -r requirements-serve.txt")
serve = pytest.importorskip("ray.serve", reason="Ray Serve is optional: pip install -r requirements-serve.txt")

from deploy.ray_serve import build, runtime_env  # noqa: E402 -- only once ray is known to import

TOKENS = 6


@pytest.fixture(scope="module")
def endpoint():
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", runtime_env=runtime_env(),
             log_to_driver=False)
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build(replicas=2, profile="tiny"), route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def _post(url, body=None, path="/chat"):
    request = urllib.request.Request(url + path, data=json.dumps(body or {}).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def _turn(text, conversation=None, music="never"):
    return {"conversation": conversation, "text": text, "music": music, "max_new_tokens": _tokens(music),
            "duration": 0.5}


def _tokens(music):
    return TOKENS if music == "never" else TOKENS + 10  # room for the reply, [AUD0..7] and EOS


@pytest.mark.slow
def test_two_conversations_at_once_each_on_its_replica(endpoint, tmp_path):
    texts = ("first conversation", "the second conversation, asked at the same time")
    with ThreadPoolExecutor(2) as pool:
        first = list(pool.map(lambda text: _post(endpoint, _turn(text)), texts))
    ids = [reply["conversation"] for reply in first]
    assert sorted(conv_id.split("-")[0] for conv_id in ids) == ["0", "1"]  # one conversation on each replica
    follow = _post(endpoint, _turn("and make music", ids[0], music="always"))  # the same replica remembers it
    assert follow["conversation"] == ids[0] and follow["turns"] == 2

    local = MuMuPipeline.from_profile("tiny", out_dir=tmp_path)  # the same turns, here, alone
    options = ChatOptions(music="never", max_new_tokens=TOKENS)
    convs = [local.new_conversation() for _ in texts]
    expected = [local.chat(conv, text, options=options).text for conv, text in zip(convs, texts, strict=True)]
    assert [reply["text"] for reply in first] == expected
    again = local.chat(convs[0], "and make music", options=ChatOptions(
        music="always", max_new_tokens=_tokens("always"), sampling=SamplingSettings(duration=0.5)))
    assert again.audio is not None and follow["text"] == again.text and follow["track"] == again.track
    served, rate = sf.read(io.BytesIO(base64.b64decode(follow["audio"])))
    assert rate == follow["sample_rate"] == again.sample_rate and (served == sf.read(again.audio)[0]).all()


@pytest.mark.slow
def test_unknown_conversations_and_bad_input_get_clear_errors(endpoint):
    with pytest.raises(urllib.error.HTTPError) as missing:
        _post(endpoint, _turn("hello", "1-doesnotexist"))
    assert missing.value.code == 404 and "no conversation '1-doesnotexist'" in missing.value.read().decode()
    conv = _post(endpoint, path="/conversations")["conversation"]
    with pytest.raises(urllib.error.HTTPError) as bad:
        _post(endpoint, _turn("hello", conv, music="sometimes"))
    assert bad.value.code == 400 and "music must be one of" in bad.value.read().decode()
