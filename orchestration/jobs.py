"""Tuning and training jobs: the HyperparameterTuner, the Debugger/Profiler estimator, best-hyperparameter files."""

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sagemaker
from sagemaker.debugger import (
    CollectionConfig,
    DebuggerHookConfig,
    ProfilerConfig,
    ProfilerRule,
    Rule,
    rule_configs,
)
from sagemaker.estimator import Estimator
from sagemaker.tuner import CategoricalParameter, ContinuousParameter, HyperparameterTuner

from dogbreed.contract.hyperparams import CACHED_FEATURES, Hyperparameters, unquote
from dogbreed.contract.metrics import METRIC_DEFINITIONS
from dogbreed.errors import UserError
from dogbreed.sm_env import DEFAULT_BASE_DIR, Paths

from .config import Settings
from .errors import OrchestrationError

log = logging.getLogger(__name__)

# The search space the notebooks used: learning rate on a log scale, three batch sizes, two lengths.
HYPERPARAMETER_RANGES = {
    "lr": ContinuousParameter(0.001, 0.1, scaling_type="Logarithmic"),
    "batch_size": CategoricalParameter([64, 128, 256]),
    "epochs": CategoricalParameter([5, 10]),
}
OBJECTIVE_TYPES = {"valid_loss": "Minimize", "valid_acc": "Maximize"}
# Trials train the head on backbone features computed once (dogbreed.recipes.choose): a 5-epoch trial costs
# about one backbone pass instead of five (bench/train_bench.py). --tune-with-augmentation drops this recipe.
CACHED_FEATURE_RECIPE = {key: str(value).lower() for key, value in CACHED_FEATURES.items()}
# Each built-in rule and the tensor collection it reads.
MANAGED_RULES = {
    "vanishing_gradient": "gradients",
    "overfit": "losses",
    "overtraining": "losses",
    "poor_weight_initialization": "relu_input",
    "loss_not_decreasing": "losses",
}
# Set in every trial, not handed on to `train`: a trial's model is discarded, so its int8 variant (a pass over the
# validation split in fp32 and int8, on CPU) would be paid for nothing. --hp int8=true keeps it.
TRIAL_ONLY = {"int8": "false"}
TENSOR_SAVE_INTERVAL = "10"
CONTAINER = Paths(Path(DEFAULT_BASE_DIR))  # the training job's /opt/ml, as the container sees it
# Local mode ignores Debugger settings: the hook config travels as a file in this channel instead.
LOCAL_HOOK_CHANNEL = "debughook"


def local_channels(settings: Settings, data: dict[str, str], job_name: str) -> dict[str, str]:
    """Local mode: the data channels, and the hook config written to WORKDIR/JOB as one more channel."""
    return {**data, LOCAL_HOOK_CHANNEL: write_local_hook_config(settings, settings.workdir / job_name)}


def _metric_definitions() -> list[dict[str, str]]:
    """SageMaker MetricDefinitions for the training log lines (copies: the SDK keeps what it is given)."""
    return [dict(d) for d in METRIC_DEFINITIONS]


def _common(settings: Settings, session: sagemaker.Session, hyperparameters: dict) -> dict[str, Any]:
    return {
        "image_uri": settings.image_uri,
        "role": settings.role_arn,
        "instance_count": settings.train_instance_count,
        "instance_type": settings.train_instance_type,
        "sagemaker_session": session,
        "hyperparameters": hyperparameters,
        "metric_definitions": _metric_definitions(),
        "max_run": settings.max_run_seconds,
    }


def tuning_estimator(settings: Settings, session: sagemaker.Session, static: dict) -> Estimator:
    """Trials run plain: no Debugger, no Profiler, no shared checkpoint prefix, no int8 variant (TRIAL_ONLY)."""
    return Estimator(
        **_common(settings, session, {**TRIAL_ONLY, **static}),
        output_path=settings.output_s3,
        debugger_hook_config=False,
        disable_profiler=True,
    )


def training_estimator(
    settings: Settings, session: sagemaker.Session, job_name: str, hyperparameters: dict
) -> Estimator:
    """Our image with Debugger hook + rules + Profiler on SageMaker."""
    return Estimator(
        **_common(settings, session, hyperparameters),
        output_path=settings.output_s3,
        debugger_hook_config=debugger_hook_config(settings),
        rules=managed_rules() if settings.managed_rules else None,
        profiler_config=ProfilerConfig(s3_output_path=settings.output_s3, system_monitor_interval_millis=500),
        checkpoint_s3_uri=settings.checkpoint_s3 or f"{settings.output_s3}/checkpoints/{job_name}",
        use_spot_instances=settings.spot,
        max_wait=(settings.max_wait_seconds or 2 * settings.max_run_seconds) if settings.spot else None,
    )


def local_training_estimator(
    settings: Settings, session: sagemaker.Session, job_name: str, hyperparameters: dict
) -> Estimator:
    """SDK local mode: the container reads the hook config from the LOCAL_HOOK_CHANNEL file (local_channels)."""
    hook_file = CONTAINER.data_dir / LOCAL_HOOK_CHANNEL / CONTAINER.debughookconfig_file.name
    return Estimator(
        **_common(settings, session, hyperparameters),
        output_path=f"{settings.output_s3}/{job_name}",
        environment={"SMDEBUG_CONFIG_FILE_PATH": str(hook_file)},
        debugger_hook_config=False,
        disable_profiler=True,
    )


def collection_configs() -> dict[str, CollectionConfig]:
    """Losses every step, gradients and relu inputs every 10th step, in TRAIN and EVAL modes (what the rules read)."""
    every = {"train.save_interval": TENSOR_SAVE_INTERVAL, "eval.save_interval": TENSOR_SAVE_INTERVAL}
    return {
        "losses": CollectionConfig("losses", parameters={"train.save_interval": "1", "eval.save_interval": "1"}),
        "gradients": CollectionConfig("gradients", parameters=every),
        "relu_input": CollectionConfig("relu_input", parameters={"include_regex": ".*relu_input", **every}),
    }


def debugger_hook_config(settings: Settings) -> DebuggerHookConfig:
    return DebuggerHookConfig(
        s3_output_path=settings.output_s3,  # SageMaker appends JOB/debug-output
        collection_configs=list(collection_configs().values()),
    )


def managed_rules() -> list:
    """The five built-in Debugger rules (saving our collections, not their 500-step defaults), plus ProfilerReport."""
    collections = collection_configs()
    rules = [
        Rule.sagemaker(getattr(rule_configs, name)(), collections_to_save=[collections[collection]])
        for name, collection in MANAGED_RULES.items()
    ]
    return [*rules, ProfilerRule.sagemaker(rule_configs.ProfilerReport())]


def hook_config(settings: Settings, local_path: str = str(CONTAINER.tensors_dir)) -> dict[str, Any]:
    """The debughookconfig.json SageMaker writes into the container for our DebuggerHookConfig (tensors go to
    local_path; SageMaker uploads them to the hook's S3OutputPath)."""
    return {**debugger_hook_config(settings)._to_request_dict(), "LocalPath": local_path}


def write_local_hook_config(settings: Settings, directory: Path) -> str:
    """Local mode: the hook config as a channel file; returns the channel's file:// URI."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONTAINER.debughookconfig_file.name).write_text(json.dumps(hook_config(settings), indent=2))
    return f"file://{directory.resolve()}"


def tuning_static_hyperparameters(settings: Settings) -> dict[str, str]:
    """What every trial shares: the cached-feature recipe (unless --tune-with-augmentation), then --hp."""
    recipe = {} if settings.tune_with_augmentation else CACHED_FEATURE_RECIPE
    given = {k: v for k, v in settings.hyperparameters.items() if k not in HYPERPARAMETER_RANGES}
    return {**recipe, **given}


def tuning_plan(static: dict[str, str]) -> str:
    """One line for the user: what each trial costs and what `train` will run."""
    recipe = ", ".join(f"{k}={v}" for k, v in static.items()) or "the image's defaults"
    blockers = Hyperparameters.from_strings(static).why_not_cached_features()
    once = " ".join(f"{key}={value}" for key, value in CACHED_FEATURE_RECIPE.items())
    cost = (
        f"each trial runs the backbone every epoch ({', '.join(blockers)}; --hp {once}: once per trial)"
        if blockers
        else "each trial runs the backbone once and trains the head on cached features"
    )
    skipped = ", ".join(f"{k}={v}" for k, v in TRIAL_ONLY.items() if k not in static)
    trials_only = f"; trials only: {skipped} (their models are discarded)" if skipped else ""
    return f"tuning with {recipe}: {cost}{trials_only}; `train` then uses the same recipe with the tuned values"


def start_tuning(
    settings: Settings, session: sagemaker.Session, job_name: str, static: dict[str, str], channels: dict[str, str]
) -> None:
    """Create the tuning job over HYPERPARAMETER_RANGES with the static hyperparameters every trial shares."""
    tuner = HyperparameterTuner(
        tuning_estimator(settings, session, static),
        objective_metric_name=settings.objective,
        hyperparameter_ranges=HYPERPARAMETER_RANGES,
        metric_definitions=_metric_definitions(),
        objective_type=OBJECTIVE_TYPES[settings.objective],
        max_jobs=settings.max_jobs,
        max_parallel_jobs=settings.max_parallel_jobs,
    )
    tuner.fit(channels, job_name=job_name, wait=False)


@dataclass(frozen=True)
class TuningResult:
    """What `hpo` hands to `train`: the best job's tuned values, and every trial for the table."""

    tuning_job: str
    best_training_job: str
    objective: dict[str, Any]
    hyperparameters: dict[str, str]
    trials: list[dict[str, Any]]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.__dict__, indent=2, default=str) + "\n")


def tuning_result(description: dict, trials: list[dict], static: dict[str, str]) -> TuningResult:
    """Best hyperparameters from DescribeHyperParameterTuningJob (tuned names, quotes stripped) over the static
    ones the trials shared, so that `train` runs the recipe that was tuned."""
    best = description.get("BestTrainingJob") or {}
    tuned = best.get("TunedHyperParameters") or {}
    unknown = sorted(set(tuned) - set(HYPERPARAMETER_RANGES))
    if unknown:
        log.warning("ignoring tuned values for unknown hyperparameters: %s", ", ".join(unknown))
    return TuningResult(
        tuning_job=description["HyperParameterTuningJobName"],
        best_training_job=best.get("TrainingJobName", ""),
        objective=best.get("FinalHyperParameterTuningJobObjectiveMetric") or {},
        hyperparameters={**static, **{k: unquote(v) for k, v in tuned.items() if k in HYPERPARAMETER_RANGES}},
        trials=trials,
    )


def trial_rows(summaries: list[dict], objective: str) -> list[dict[str, Any]]:
    """ListTrainingJobsForHyperParameterTuningJob summaries → table rows, best objective first."""
    sign = 1 if OBJECTIVE_TYPES[objective] == "Minimize" else -1
    rows = [
        {
            "job": s.get("TrainingJobName", ""),
            "status": s.get("TrainingJobStatus", ""),
            "objective": (s.get("FinalHyperParameterTuningJobObjectiveMetric") or {}).get("Value"),
            **{k: unquote(v) for k, v in (s.get("TunedHyperParameters") or {}).items()},
        }
        for s in summaries
    ]
    return sorted(rows, key=lambda row: (row["objective"] is None, sign * (row["objective"] or 0.0)))


def training_hyperparameters(settings: Settings) -> dict[str, str]:
    """Best hyperparameters from the hpo file (when present), overridden by --hp flags."""
    path = settings.best_hyperparameters_file
    if not path.is_file():
        log.info("no best-hyperparameters file at %s: using the image's defaults and --hp", path)
        return dict(settings.hyperparameters)
    try:
        tuned = json.loads(path.read_text())["hyperparameters"]
    except (ValueError, KeyError, TypeError) as exc:
        raise OrchestrationError(f"--hyperparameters-file: {path} has no 'hyperparameters' table ({exc})") from None
    log.info("best hyperparameters from %s: %s", path, tuned)
    merged = {**{k: str(v) for k, v in tuned.items()}, **settings.hyperparameters}
    try:
        Hyperparameters.from_strings(merged)  # --hp passed this check already; the file is checked here
    except UserError as exc:
        raise OrchestrationError(f"--hyperparameters-file: {path}: {exc}") from None
    return merged
