"""Beyond one GPU: N replicas of the pipeline behind one HTTP endpoint on Ray Serve, a conversation pinned to one.

    python -m deploy.ray_serve --replicas 4 --gpus-per-replica 1 --model DIR_OR_ID --host 127.0.0.1 --port 8000

Each replica (`MuMuReplica`, one per GPU) holds a whole pipeline, its conversations and their files; inside it the
turn scheduler batches the turns that arrive together. The ingress (`ChatAPI`) serves HTTP:

- `POST /conversations` -> {"conversation": ID}: a new conversation on the replica with the fewest conversations;
- `POST /chat` {"conversation": ID or null, "text": ..., "music", "max_new_tokens", "temperature", "top_p",
  "duration", "seed", "guidance_scale", "decoder", "files": [{"name", "data": base64}]} -> the reply (the `/chat`
  semantics of the demo and of `python -m mumu chat --json`: text, audio as base64 WAV, sample rate, track id,
  timings, notes), plus the conversation id and its completed turns. Without an id a new conversation starts;
- errors: 400 bad input, 404 unknown conversation, 409 a turn of that conversation is in flight, 503 busy.

Affinity: a conversation id names its replica ("2-a1b2..."), so every ingress replica routes it there without shared
state. Ray Serve's own router spreads requests over the replicas of one deployment (model multiplexing only prefers
a replica), so each pipeline replica is its own single-replica deployment and the ingress picks it.
"""

# No `from __future__ import annotations`: FastAPI reads the request model from the annotations of methods that
# Ray Serve's ingress rebinds, where string annotations no longer resolve.
import argparse
import asyncio
import base64
import itertools
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field
from ray import serve

from generation.config import SamplingSettings
from mumu.pipeline import ChatOptions, MuMuPipeline
from mumu.scheduler import Busy, TurnInProgress


class Attachment(BaseModel):
    """A file sent with a turn: its name (the extension tells the kind) and its bytes in base64."""

    name: str = Field(min_length=1, max_length=200)
    data: str


class ChatRequest(BaseModel):
    """One user turn; the fields are the demo's controls (see ChatOptions and SamplingSettings)."""

    conversation: str | None = None
    text: str
    music: str = "auto"
    max_new_tokens: int | None = Field(default=None, ge=1, le=4096)
    temperature: float = 0.0
    top_p: float = 1.0
    duration: float = 10.0
    seed: int = 0
    guidance_scale: float = 3.0
    decoder: str | None = None
    files: list[Attachment] = Field(default_factory=list, max_length=3)


class MuMuReplica:
    """One pipeline (one GPU) and the conversations that live on it."""

    def __init__(self, index: int, profile: str = "tiny", model: str | None = None) -> None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        out_dir = tempfile.mkdtemp(prefix=f"mumu-serve-{index}-")
        self.index = index
        self.pipeline = (MuMuPipeline.from_pretrained(model, device=device, out_dir=out_dir) if model
                         else MuMuPipeline.from_profile(profile, device=device, out_dir=out_dir))
        self.conversations: dict[str, Any] = {}

    def count(self) -> int:
        """Conversations held here (the ingress places a new one on the emptiest replica)."""
        return len(self.conversations)

    def new_conversation(self) -> str:
        """Start a conversation on this replica; its id names the replica."""
        conv = self.pipeline.new_conversation()
        conv_id = f"{self.index}-{conv.id}"
        self.conversations[conv_id] = conv
        return conv_id

    async def chat(self, conv_id: str, request: dict[str, Any]) -> dict[str, Any]:
        """Answer a turn in a worker thread, so turns arriving together meet in the turn scheduler."""
        return await asyncio.to_thread(self._chat, conv_id, ChatRequest(**request))

    def _chat(self, conv_id: str, request: ChatRequest) -> dict[str, Any]:
        conv = self.conversations.get(conv_id)
        if conv is None:
            raise LookupError(f"no conversation {conv_id!r} on this server (it expired or never existed)")
        files = _save_attachments(self.pipeline, conv.out_dir / "uploads", request.files)
        options = ChatOptions(music=request.music, max_new_tokens=request.max_new_tokens,
                              temperature=request.temperature, top_p=request.top_p, decoder=request.decoder,
                              sampling=SamplingSettings(duration=request.duration, seed=request.seed,
                                                        guidance_scale=request.guidance_scale))
        reply = self.pipeline.chat(conv, request.text, options=options, **files)
        audio = base64.b64encode(Path(reply.audio).read_bytes()).decode() if reply.audio else None
        return {"conversation": conv_id, "turns": conv.turns, "text": reply.text, "audio": audio,
                "sample_rate": reply.sample_rate, "track": reply.track, "timings": reply.timings,
                "notes": reply.notes}


def _save_attachments(pipeline: MuMuPipeline, folder: Path, files: list[Attachment]) -> dict[str, str]:
    """Write the attachments and map each to the pipeline argument of its kind (one file per kind)."""
    chosen: dict[str, str] = {}
    for item in files:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / Path(item.name).name
        try:
            path.write_bytes(base64.b64decode(item.data, validate=True))
        except ValueError as e:
            raise ValueError(f"attachment {item.name!r} is not valid base64: {e}") from e
        chosen[pipeline.classify(path)] = str(path)  # the kinds are the pipeline's argument names
    return chosen


api = FastAPI(title="MuMu-LLaMA chat")


@serve.ingress(api)
class ChatAPI:
    """The HTTP endpoint: places new conversations, and routes each turn to its conversation's replica."""

    def __init__(self, *replicas: Any) -> None:
        self.replicas = replicas
        self._next = itertools.count()

    @api.post("/conversations")
    async def new_conversation(self) -> dict[str, str]:
        return {"conversation": await self._place()}

    @api.post("/chat")
    async def chat(self, request: ChatRequest) -> dict[str, Any]:
        conv_id = request.conversation or await self._place()
        replica = self._replica(conv_id)
        try:
            return await replica.chat.remote(conv_id, request.model_dump())
        except LookupError as e:
            raise HTTPException(404, str(e)) from e
        except TurnInProgress as e:
            raise HTTPException(409, str(e)) from e
        except Busy as e:
            raise HTTPException(503, str(e), headers={"Retry-After": "2"}) from e
        except (ValueError, OSError) as e:  # MediaError is a ValueError: bad input is the caller's to fix
            raise HTTPException(400, str(e)) from e

    async def _place(self) -> str:
        counts = await asyncio.gather(*(replica.count.remote() for replica in self.replicas))
        start = next(self._next) % len(self.replicas)  # ties go round the replicas
        order = [(start + i) % len(self.replicas) for i in range(len(self.replicas))]
        return await self.replicas[min(order, key=lambda i: counts[i])].new_conversation.remote()

    def _replica(self, conv_id: str) -> Any:
        index = conv_id.split("-", 1)[0]
        if not index.isdigit() or int(index) >= len(self.replicas):
            raise HTTPException(404, f"no conversation {conv_id!r} on this server")
        return self.replicas[int(index)]


def build(replicas: int = 2, profile: str = "tiny", model: str | None = None, gpus_per_replica: float = 0,
          cpus_per_replica: float = 1) -> Any:
    """The Serve application: `replicas` pipeline deployments (one replica each) behind one ChatAPI ingress."""
    if replicas < 1:
        raise ValueError(f"replicas must be at least 1, got {replicas}")
    resources = {"num_gpus": gpus_per_replica, "num_cpus": cpus_per_replica}
    workers = [serve.deployment(MuMuReplica, name=f"MuMuReplica{i}", ray_actor_options=resources,
                                max_ongoing_requests=64).bind(i, profile, model) for i in range(replicas)]
    return serve.deployment(ChatAPI, name="ChatAPI", max_ongoing_requests=256,
                            ray_actor_options={"num_cpus": 0}).bind(*workers)


def runtime_env() -> dict[str, Any]:
    """Workers import this repository and keep its thread setting."""
    root = str(Path(__file__).resolve().parents[1])
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    if "OMP_NUM_THREADS" in os.environ:
        env["OMP_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"]
    return {"env_vars": env}


def main(argv: list[str] | None = None) -> int:
    """Start a local Ray cluster (or join RAY_ADDRESS) and serve until interrupted."""
    import ray

    parser = argparse.ArgumentParser(description="MuMu-LLaMA replicas behind one HTTP endpoint (Ray Serve)")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--profile", choices=("tiny", "full"), default="tiny")
    parser.add_argument("--model", default=None, help="a MuMu checkpoint dir or Hub id (instead of --profile)")
    parser.add_argument("--gpus-per-replica", type=float, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    ray.init(runtime_env=runtime_env())
    serve.start(http_options={"host": args.host, "port": args.port})
    serve.run(build(args.replicas, args.profile, args.model, args.gpus_per_replica), blocking=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
