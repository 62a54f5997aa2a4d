"""The model side of serving: load the artifact once, preprocess in the caller's thread, predict in batches.

Never imports Flask: images in, an N x C array of class probabilities out. A request's undecodable
image is a ServingError (400). Forward passes run only on the dynamic batcher's stream threads, so
concurrent requests share them and one set of compute threads serves the worker.

Precision (DOGBREED_PRECISION, read by ServingEnv): fp32, bf16, int8, or auto, which times a ResNet block in
each candidate precision this host runs and the artifact allows, and keeps the fastest (dogbreed.hardware).
fp32 and bf16 models are prepared once (prepare_for_inference): batch norm folded into the convolutions
(torch.fx), channels_last; "bf16" then casts the folded weights to bf16, which computes the same as bf16
autocast on the folded model without re-casting every weight on every forward. "int8" is the artifact's
post-training static int8 model (dogbreed.quantize), served only when it passed its accuracy gate. On CPU the
served model is then traced into a TorchScript graph (without_gil), so concurrent requests' Python
never stalls a forward pass.
Agreement with eager fp32 and speed of each: bench/precision_bench.py, README "Benchmarks".
"""

import logging
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.fx.experimental.optimization import fuse

from .. import hardware, quantize, sm_env
from ..errors import ServingError
from ..model import Artifact, load_artifact
from ..presets import ClassificationPresetEval, decode_footprint, decode_pixels
from . import codecs
from .batching import BudgetExhausted, DynamicBatcher, PixelBudget

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}  # the folded model's dtype
INPUT_DTYPES = {**DTYPES, "int8": torch.float32}  # what each served model takes (int8 quantizes inside)
GPU_INT8 = "int8 kernels run on the CPU and this host serves on its GPU"


@dataclass(frozen=True)
class PredictorConfig:
    """How a predictor runs; the defaults are ServingEnv's (dogbreed.sm_env, beside the variables that set them)."""

    precision: str = sm_env.DEFAULT_PRECISION  # auto | fp32 | bf16 | int8
    max_batch_size: int = sm_env.DEFAULT_MAX_BATCH_SIZE
    max_batch_delay_ms: float = sm_env.DEFAULT_MAX_BATCH_DELAY_MS
    torch_threads: int | None = None  # compute threads of this process; None: torch's default
    streams: int = 1  # batches computed at the same time, sharing torch_threads (see DynamicBatcher)
    timeout_s: float = sm_env.DEFAULT_SERVER_TIMEOUT  # a request's inference deadline (503 after it)
    jpeg_draft: bool = True  # decode large JPEGs and JPEG 2000s at reduced scale (presets.decode_pixels)
    decode_budget_pixels: int = sm_env.DEFAULT_MAX_IMAGE_PIXELS  # decoded at once by all request threads

    @classmethod
    def from_env(cls, env: sm_env.ServingEnv, *, torch_threads: int, streams: int) -> "PredictorConfig":
        """The server's config: the environment's settings, with the threads and streams planned for this host."""
        return cls(
            precision=env.precision,
            max_batch_size=env.max_batch_size,
            max_batch_delay_ms=env.max_batch_delay_ms,
            torch_threads=torch_threads,
            streams=streams,
            timeout_s=env.timeout,
            decode_budget_pixels=env.max_image_pixels,  # one image of the largest size, or many smaller ones
        )


def prepare_for_inference(model: torch.nn.Module, precision: str, device: str) -> torch.nn.Module:
    """A copy of the eval model with batch norm folded into the convolutions, channels_last, in fp32 or bf16."""
    return fuse(model.eval()).to(device, dtype=DTYPES[precision], memory_format=torch.channels_last)


def prepare(artifact: Artifact, precision: str, device: str) -> torch.nn.Module:
    """The served model in a precision (untraced), on CPU traced into a graph that runs without the GIL."""
    model = untraced(artifact, precision, device)
    return without_gil(model, precision, artifact.preprocess.image_size) if device == "cpu" else model


def untraced(artifact: Artifact, precision: str, device: str) -> torch.nn.Module:
    """The model in a precision as Python modules: folded fp32/bf16, or the artifact's int8 model (CPU)."""
    if precision == "int8":
        return quantize.load_int8(artifact)
    return prepare_for_inference(artifact.model, precision, device)


def without_gil(model: torch.nn.Module, precision: str, image_size: int) -> torch.jit.ScriptModule:
    """The model traced into a TorchScript graph: the same kernels and results, but the whole forward pass runs in
    C++ with the GIL released. An FX or eager model takes the GIL back between operators, so its forward stalls
    behind any Python the request threads run (bench/gil_bench.py: int8 beside a busy Python thread, 8x slower).
    Not frozen: freezing was 2 % faster and held 70 MB more (int8)."""
    example = torch.zeros(1, 3, image_size, image_size, dtype=INPUT_DTYPES[precision])
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`torch.jit", FutureWarning)  # deprecated, still the GIL-free runtime
        warnings.filterwarnings("ignore", "Converting a tensor to a Python", torch.jit.TracerWarning)  # int8 scales
        return torch.jit.trace(model.eval(), example.contiguous(memory_format=torch.channels_last), check_trace=False)


def cat_channels_last(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """N x 3 x S x S parts in pixel-major memory (channels_last, as the eval transform makes them) joined along N by
    plain copies, still channels_last. torch.cat and torch.stack lay such parts out NCHW, which the model's
    channels_last conversion then transposes back: two strided copies per image, ~0.2 ms of CPU."""
    return torch.cat([part.permute(0, 2, 3, 1) for part in parts]).permute(0, 3, 1, 2)


class Predictor:
    """Thread-safe: call predict() from any number of request threads."""

    def __init__(self, artifact: Artifact, config: PredictorConfig = PredictorConfig(), *, host=None):
        started = time.perf_counter()
        if config.torch_threads:
            hardware.set_torch_threads(config.torch_threads, interop=1)
        self.config = config
        self.class_names = list(artifact.class_names)
        self.preprocess_config = artifact.preprocess
        self._transform = ClassificationPresetEval(config=artifact.preprocess)
        self._decode_budget = PixelBudget(config.decode_budget_pixels)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.choice, self._model = self._choose_model(artifact, host or hardware.describe())
        self.precision = self.choice.precision
        self._dtype = INPUT_DTYPES[self.precision]
        self._threads = config.torch_threads or torch.get_num_threads()
        self._batcher = DynamicBatcher(
            self._run_batch,
            max_batch_size=config.max_batch_size,
            max_delay_s=config.max_batch_delay_ms / 1000,
            streams=config.streams,
            name="dogbreed-batcher",
        )
        self._warm_up()
        log.info(
            "predictor ready in %.1f s: %d classes, %s %s (%s), input %d px, batch ≤ %d, %d torch threads, "
            "%d stream(s)", time.perf_counter() - started, len(self.class_names), self.device, self.precision,
            self.choice.reason, self.preprocess_config.image_size, config.max_batch_size, self._threads, config.streams,
        )  # fmt: skip

    def _choose_model(
        self, artifact: Artifact, host: hardware.Machine
    ) -> tuple[hardware.PrecisionChoice, torch.nn.Module]:
        """The requested precision, or under auto the fastest one measured here; the model prepared in it. An int8
        file that does not fit the model (another model's, another layout) is refused like a missing one."""
        refusal = quantize.int8_refusal(artifact) if self.device == "cpu" else GPU_INT8
        if refusal and artifact.int8:
            log.warning("int8 will not be served: %s", refusal)
        choice = self._choose_precision(host, refusal)
        if choice.precision != "int8":
            return choice, prepare(artifact, choice.precision, self.device)
        try:
            return choice, prepare(artifact, "int8", self.device)
        except Exception as exc:  # load_state_dict and tracing raise KeyError, RuntimeError, ... for a foreign file
            refusal = f"{quantize.INT8_WEIGHTS_FILE} does not fit this model ({codecs.reason(exc)})"
            log.warning("int8 will not be served: %s", refusal)
            choice = self._choose_precision(host, refusal)
            return choice, prepare(artifact, choice.precision, self.device)

    def _choose_precision(self, host: hardware.Machine, int8_refusal: str | None) -> hardware.PrecisionChoice:
        requested = self.config.precision
        names = hardware.serving_candidates(requested, device=self.device, host=host, int8_refusal=int8_refusal)
        return hardware.choose_precision(requested, names, int8_refusal=int8_refusal)

    @classmethod
    def load(cls, model_dir: Path, config: PredictorConfig = PredictorConfig()) -> "Predictor":
        """Load the artifact training wrote; ArtifactError says what is missing or broken."""
        predictor = cls(load_artifact(model_dir), config)
        hardware.release_freed_memory()  # the artifact's weights, and the copies the served model was made from
        return predictor

    def predict(self, images: Sequence[codecs.Image_]) -> np.ndarray:
        """Class probabilities, float32 N x C, one row per image in order."""
        with self._batcher.slot() as slot:
            batch = self.preprocess(images)  # in the caller's thread, overlapping other forwards
            future = slot.submit(batch, len(batch))
        return self._result(future)

    def predict_each(self, images: Sequence[codecs.Image_]) -> list[np.ndarray | ServingError]:
        """predict() for records answered one by one (a batch transform's JSON Lines): each image's probabilities,
        or the ServingError that says why it cannot be decoded, in its place; the others share one batch."""
        with self._batcher.slot() as slot, hardware.torch_threads(1):
            tensors = [self._tensor_or_error(image, index) for index, image in enumerate(images)]
            decoded = [tensor for tensor in tensors if isinstance(tensor, torch.Tensor)]
            future = slot.submit(cat_channels_last(decoded), len(decoded)) if decoded else None
        rows = iter(self._result(future) if future else ())
        return [next(rows) if isinstance(tensor, torch.Tensor) else tensor for tensor in tensors]

    def _result(self, future: Future) -> np.ndarray:
        try:
            return future.result(timeout=self.config.timeout_s)
        except FutureTimeout:
            raise ServingError(f"inference did not finish within {self.config.timeout_s:g} s", 503) from None

    def preprocess(self, images: Sequence[codecs.Image_]) -> torch.Tensor:
        """Decode and apply training's eval transform: N x 3 x S x S float32, channels_last.

        One compute thread (the setting is per thread, restored after): concurrent request threads
        would otherwise each start a team of OpenMP threads for a small resize and oversubscribe.
        """
        with hardware.torch_threads(1):
            return cat_channels_last([self._to_tensor(image, index)[None] for index, image in enumerate(images)])

    def _tensor_or_error(self, image: codecs.Image_, index: int) -> torch.Tensor | ServingError:
        try:
            return self._to_tensor(image, index)[None]
        except ServingError as exc:
            return exc

    def _to_tensor(self, image: codecs.Image_, index: int) -> torch.Tensor:
        if isinstance(image, np.ndarray):  # HxWx3 uint8, validated by the codec
            pixels = np.require(image, np.uint8, ["C_CONTIGUOUS", "WRITEABLE"])
            return self._transform(torch.from_numpy(pixels).permute(2, 0, 1))
        draft = self.preprocess_config if self.config.jpeg_draft else None
        with self._decoding(decode_footprint(image.opened, image.data, config=draft)):
            where = image.label or f"image {index}"
            with codecs.pillow_errors(where), closing(image.opened):  # closing: Pillow's copy of the pixels
                pixels = decode_pixels(image.opened, image.data, config=draft)
            return self._transform(pixels)

    @contextmanager
    def _decoding(self, pixels: int) -> Iterator[None]:
        """Hold `pixels` of the worker's decode budget (sm_env's largest image) while an image is decoded and
        transformed; 503 when other requests' images hold it for the whole request deadline."""
        try:
            with self._decode_budget.hold(pixels, timeout=self.config.timeout_s):
                yield
        except BudgetExhausted:
            raise ServingError(
                f"the server is busy decoding other large images: not started within {self.config.timeout_s:g} s; "
                "retry later",
                503,
            ) from None

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> np.ndarray:
        """Probabilities for preprocessed images, in chunks of at most max_batch_size."""
        outputs = []
        for chunk in batch.split(self.config.max_batch_size):
            logits = self._model(chunk.to(self.device, self._dtype, memory_format=torch.channels_last))
            outputs.append(torch.softmax(logits.float(), dim=1).cpu())
        return torch.cat(outputs).numpy()

    def _run_batch(self, payloads: list[torch.Tensor]) -> list[np.ndarray]:
        # The worker's threads are shared by the streams computing now (the setting is per thread).
        hardware.set_torch_threads(max(1, self._threads // self._batcher.running))
        probabilities = self.forward(cat_channels_last(payloads))
        return np.split(probabilities, np.cumsum([len(p) for p in payloads])[:-1])

    def _warm_up(self) -> None:
        """First forwards pick kernels; do them now, on the batcher's thread, before any traffic."""
        size = self.preprocess_config.image_size
        for n in sorted({1, self.config.max_batch_size}):
            with self._batcher.slot() as slot:
                future = slot.submit(torch.zeros(n, 3, size, size), n)
            future.result()

    def close(self) -> None:
        self._batcher.close()
