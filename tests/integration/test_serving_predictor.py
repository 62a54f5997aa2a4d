"""Predictor (precision, batching, decoding) and the launcher's sizing of workers and threads."""

import dataclasses
import threading

import numpy as np
import pytest
from PIL import Image
from serving_fixtures import CLASS_NAMES, IMAGE_SIZE
from serving_requests import encode, jpeg, photo

from dogbreed.errors import ServingError
from dogbreed.hardware import Machine
from dogbreed.model import Artifact, HeadConfig
from dogbreed.presets import PreprocessConfig, decode_rgb
from dogbreed.quantize import BACKEND, LEGACY_BACKEND, judge, quantize
from dogbreed.serve import plan_server
from dogbreed.serving import codecs
from dogbreed.serving.predictor import Predictor, PredictorConfig, cat_channels_last, prepare, untraced
from dogbreed.sm_env import ServingEnv

LIMITS = codecs.DecodeLimits(max_pixels=40_000_000)


def artifact(seed=0):
    from serving_fixtures import make_model

    return Artifact(
        make_model(seed=seed),
        CLASS_NAMES,
        HeadConfig(num_classes=len(CLASS_NAMES)),
        PreprocessConfig(image_size=IMAGE_SIZE),
    )


@pytest.fixture(scope="module")
def fp32():
    predictor = Predictor(artifact(), PredictorConfig(precision="fp32", max_batch_size=4))
    yield predictor
    predictor.close()


def images(count):
    return [codecs.open_image(jpeg(i, seed=i, size=(160, 120)), LIMITS) for i in range(count)]


def test_fp32_matches_the_eager_model_it_was_folded_from(fp32):
    import torch

    sample = images(5)
    eager = artifact().model.eval()
    with torch.inference_mode():
        expected = torch.softmax(eager(fp32.preprocess(sample)), dim=1).numpy()
    np.testing.assert_allclose(fp32.predict(sample), expected, atol=1e-5)


def test_preprocessed_images_and_batches_stay_pixel_major_so_the_model_copies_nothing(fp32):
    import torch

    one, three = fp32.preprocess(images(1)), fp32.preprocess(images(3))
    batch = cat_channels_last([one, three])
    for tensor in (one, three, batch):
        assert tensor.is_contiguous(memory_format=torch.channels_last)
    assert batch.shape == (4, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert torch.equal(batch, torch.cat([one, three]))


def test_fp32_batches_split_into_chunks(fp32):
    assert fp32.precision == "fp32"
    batch = fp32.predict(images(6))  # 6 images, max batch 4: two forward chunks
    singles = np.concatenate([fp32.predict([image]) for image in images(6)])
    assert batch.shape == (6, len(CLASS_NAMES)) and batch.dtype == np.float32
    np.testing.assert_allclose(batch, singles, atol=1e-5)
    np.testing.assert_allclose(batch.sum(1), 1, atol=1e-5)


def test_bf16_agrees_with_fp32(fp32):
    bf16 = Predictor(artifact(), PredictorConfig(precision="bf16"))
    try:
        sample = images(12)
        exact, fast = fp32.predict(sample), bf16.predict(sample)
    finally:
        bf16.close()
    assert bf16.precision == "bf16"
    assert np.abs(exact - fast).max() < 0.02
    assert (exact.argmax(1) == fast.argmax(1)).mean() >= 0.9  # random init: near-ties exist; bench checks 99%


def test_concurrent_requests_get_their_own_results(fp32):
    sample = images(8)
    expected = fp32.predict(sample)
    results = [None] * len(sample)

    def worker(i):
        results[i] = fp32.predict([sample[i]])[0]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(sample))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    np.testing.assert_allclose(np.stack(results), expected, atol=1e-5)


def test_two_streams_give_each_caller_the_same_answers_as_one(fp32):
    sample = images(8)
    expected = fp32.predict(sample)
    streams = Predictor(artifact(), PredictorConfig(precision="fp32", max_batch_size=4, torch_threads=2, streams=2))
    results = [None] * len(sample)

    def worker(i):
        results[i] = streams.predict([sample[i]])[0]

    try:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(sample))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        streams.close()
    np.testing.assert_allclose(np.stack(results), expected, atol=1e-5)


def test_corrupt_image_is_a_400_naming_the_image(fp32):
    good = jpeg()
    broken = codecs.open_image(good[: len(good) // 2], LIMITS)
    with pytest.raises(ServingError, match="image 1 cannot be decoded") as info:
        fp32.predict([codecs.open_image(good, LIMITS), broken])
    assert info.value.status == 400


def test_npy_arrays_match_the_same_pixels_as_png(fp32):
    picture = photo(3)
    from_array = fp32.predict([np.asarray(picture)])
    from_png = fp32.predict([codecs.open_image(encode(picture, "PNG"), LIMITS)])
    np.testing.assert_allclose(from_array, from_png, atol=1e-6)


def int8_artifact(gate_passed: bool, backend: str = BACKEND) -> Artifact:
    """The test artifact with an int8 variant calibrated on a few generated images in `backend`'s layout, and a gate
    record as save_int8 writes it (the legacy layout's, from before the fusion, names no backend)."""
    plain = artifact()
    calibration = fp32_preprocess(images(8))
    state = quantize(plain.model, [calibration], backend).state_dict()
    gate = judge({"top1_agreement": 1.0 if gate_passed else 0.5, "fp32_acc": 0.9, "int8_acc": 0.9, "max_prob_diff": 0})
    layout = {} if backend == LEGACY_BACKEND else {"backend": backend}
    return Artifact(plain.model, plain.class_names, plain.head, plain.preprocess, {}, {**gate, **layout}, state)


def fp32_preprocess(sample):
    predictor = Predictor(artifact(), PredictorConfig(precision="fp32"))
    try:
        return predictor.preprocess(sample)
    finally:
        predictor.close()


@pytest.mark.parametrize("backend", [BACKEND, LEGACY_BACKEND])
def test_int8_serves_the_artifacts_int8_model_in_its_layout(fp32, backend):
    made = int8_artifact(gate_passed=True, backend=backend)
    int8 = Predictor(made, PredictorConfig(precision="int8", max_batch_size=4))
    try:
        sample = images(6)
        probabilities = int8.predict(sample)
    finally:
        int8.close()
    assert int8.precision == "int8"
    assert probabilities.shape == (6, len(CLASS_NAMES))
    np.testing.assert_allclose(probabilities.sum(1), 1, atol=1e-5)
    assert np.abs(probabilities - fp32.predict(sample)).max() < 0.2  # random init; bench measures a trained model


@pytest.mark.parametrize(("backend", "fused"), [(BACKEND, 16), (LEGACY_BACKEND, 0)])
def test_int8_fuses_each_residual_blocks_add_and_relu_into_its_last_convolution(backend, fused):
    """ResNet50's 16 bottlenecks: in oneDNN's layout no quantized add is left (README "Int8"); the legacy layout
    keeps them (its artifacts load as they were written)."""
    model = untraced(int8_artifact(gate_passed=True, backend=backend), "int8", "cpu")
    assert sum(type(module).__name__ == "ConvAddReLU2d" for module in model.modules()) == fused
    adds = [node for node in model.graph.nodes if "add" in str(node.target)]
    assert len(adds) == 16 - fused, adds


def test_the_served_graphs_compute_what_the_models_they_were_made_from_do():
    """On CPU every precision is served as a traced TorchScript graph (no GIL in the forward): same results."""
    import torch

    int8 = int8_artifact(gate_passed=True)
    x = fp32_preprocess(images(4)).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        for precision in ("int8", "fp32"):
            model, served = untraced(int8, precision, "cpu"), prepare(int8, precision, "cpu")
            assert isinstance(served, torch.jit.ScriptModule)
            assert torch.equal(served(x), model(x)), precision


@pytest.mark.parametrize("requested", ["int8", "auto"])
def test_a_model_that_failed_its_gate_is_never_served_int8(requested, caplog):
    predictor = Predictor(int8_artifact(gate_passed=False), PredictorConfig(precision=requested))
    predictor.close()
    assert predictor.precision != "int8"
    assert "failed the accuracy gate" in predictor.choice.reason
    assert "int8 will not be served: it failed the accuracy gate" in caplog.text


def test_an_int8_layout_this_image_does_not_read_is_served_fp32_and_the_log_says_why(caplog):
    made = int8_artifact(gate_passed=True)
    future = dataclasses.replace(made, int8={**made.int8, "backend": "int9"})
    predictor = Predictor(future, PredictorConfig(precision="int8"))
    predictor.close()
    assert predictor.precision == "fp32"
    assert "int8 will not be served: its int8 layout 'int9' is not one this image reads" in caplog.text


def test_an_int8_file_that_does_not_fit_the_model_is_served_fp32_and_the_log_says_why(caplog):
    """model_int8.pt replaced by another file of tensors (here the fp32 weights): the model was unservable (503)."""
    made = int8_artifact(gate_passed=True)
    foreign = dataclasses.replace(made, int8_state=made.model.state_dict())
    predictor = Predictor(foreign, PredictorConfig(precision="int8"))
    try:
        assert predictor.predict(images(2)).shape == (2, len(CLASS_NAMES))
    finally:
        predictor.close()
    assert predictor.precision == "fp32"
    assert "int8 will not be served: model_int8.pt does not fit this model (" in caplog.text


def test_auto_times_the_candidates_and_logs_its_choice(caplog):
    caplog.set_level("INFO")
    predictor = Predictor(int8_artifact(gate_passed=True), PredictorConfig(precision="auto"))
    predictor.close()
    assert predictor.precision in ("fp32", "bf16", "int8")
    assert "fastest measured here" in caplog.text and f"cpu {predictor.precision} (" in caplog.text


def test_jpeg_draft_decodes_large_photos_at_reduced_scale():
    config = PreprocessConfig(image_size=224)  # resize_size 256
    big = Image.open(__import__("io").BytesIO(encode(photo(0, size=(2000, 1500)), "JPEG")))
    decoded = decode_rgb(big, config=config)
    assert decoded.mode == "RGB"
    assert min(decoded.size) >= config.resize_size
    assert decoded.size == (500, 375)  # 1/4 scale still covers 256
    small = Image.open(__import__("io").BytesIO(jpeg(size=(500, 375))))
    assert decode_rgb(small, config=config).size == (500, 375)


GIB = 1024**3


@pytest.mark.parametrize(
    ("cpus", "memory", "gpus", "env", "expected"),
    [
        (2, 24 * GIB, 0, {}, (1, 2, 2)),  # these machines: one worker, both cores, a stream per core
        (4, 16 * GIB, 0, {}, (1, 4, 4)),  # ml.m5.xlarge
        (16, 64 * GIB, 0, {}, (4, 4, 4)),  # ml.m5.4xlarge
        (96, 384 * GIB, 0, {}, (24, 4, 4)),
        (16, 4 * GIB, 0, {}, (2, 8, 8)),  # memory caps the model copies
        (8, 32 * GIB, 1, {}, (1, 8, 1)),  # a GPU host: one process feeds the GPU, one batch at a time
        (2, 24 * GIB, 0, {"SAGEMAKER_MODEL_SERVER_WORKERS": "2"}, (2, 1, 1)),
        (8, 32 * GIB, 0, {"DOGBREED_TORCH_THREADS": "3"}, (2, 3, 3)),
        (2, 24 * GIB, 0, {"DOGBREED_STREAMS": "1"}, (1, 2, 1)),
    ],
)
def test_plan_server_never_oversubscribes_by_default(cpus, memory, gpus, env, expected):
    host = Machine(cpus=cpus, memory_bytes=memory, gpus=gpus, cpu_flags=frozenset())
    plan = plan_server(ServingEnv.from_environ(env), host)
    assert (plan.workers, plan.torch_threads, plan.streams) == expected
    assert plan.workers * plan.torch_threads <= cpus
    assert plan.http_threads >= 16
