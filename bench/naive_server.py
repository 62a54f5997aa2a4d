"""The typical handler, as serve_bench's baseline: Flask + Pillow + torchvision transforms + fp32 eager, batch 1.

Run by serve_bench under gunicorn (one sync worker, torch's default threads); MODEL_DIR names the artifact.
Deliberately plain, not sabotaged: model loaded once at import, inference_mode, eval transform of the artifact.
"""

import io
import json
import os
from pathlib import Path

import torch
from flask import Flask, Response, request
from PIL import Image
from torchvision import transforms

from dogbreed.model import load_artifact

artifact = load_artifact(Path(os.environ["MODEL_DIR"]))
preprocess = transforms.Compose(
    [
        transforms.Resize(artifact.preprocess.resize_size),
        transforms.CenterCrop(artifact.preprocess.image_size),
        transforms.ToTensor(),
        transforms.Normalize(artifact.preprocess.mean, artifact.preprocess.std),
    ]
)
app = Flask(__name__)


@app.get("/ping")
def ping():
    return Response(status=200)


@app.post("/invocations")
def invocations():
    image = Image.open(io.BytesIO(request.get_data())).convert("RGB")
    with torch.inference_mode():
        probabilities = torch.softmax(artifact.model(preprocess(image).unsqueeze(0)), dim=1)
    return Response(json.dumps(probabilities.tolist()), mimetype="application/json")
