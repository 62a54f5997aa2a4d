"""--data-s3 (s3:// or file://): the training job's data channels, and where sample images come from.

The job reads the layouts users upload (dogbreed.data.find_splits, dogbreed.archives): split folders train/ [valid/]
[test/], class folders alone, or an archive of either. Here only the top level is listed, so no channel points at a
prefix that does not exist (a SageMaker job fails on an empty channel) and a missing test/ is not an error.
"""

from pathlib import Path
from urllib.parse import urlparse

import sagemaker

from dogbreed.contract.channels import COMBINED, SPLIT_CHANNELS, TEST, TRAIN, VALID_ALIASES

from .errors import OrchestrationError


def channels(data_uri: str, session: sagemaker.Session) -> dict[str, str]:
    """Each split folder under data_uri as its own channel (train, valid/validation/val, test); without a train/
    folder, data_uri itself as the `training` channel (breed folders, a wrapper folder, or dogImages.zip: the job
    reads those). OrchestrationError when data_uri holds nothing."""
    folders, files = top_level(data_uri, session)
    if not folders and not files:
        raise OrchestrationError(
            f"--data-s3: nothing under {data_uri.rstrip('/')}/: give the prefix (folder) that holds train/ [valid/] "
            "[test/], the breed folders, or an archive of them (dogImages.zip)"
        )
    splits = _split_folders(data_uri, folders)
    return splits if TRAIN in splits else {COMBINED: data_uri}


def sample_source(data_uri: str, session: sagemaker.Session) -> str:
    """The folder of breed folders to draw sample images from: the test split, else the validation split, else
    data_uri itself (its breed folders)."""
    splits = _split_folders(data_uri, top_level(data_uri, session)[0])
    return next((splits[name] for name in (TEST, *VALID_ALIASES) if name in splits), data_uri)


def _split_folders(data_uri: str, folders: list[str]) -> dict[str, str]:
    """{split: URI} of the folders named as a split, in SPLIT_CHANNELS order, in any case (Train/ is train)."""
    named = {folder.lower(): folder for folder in folders}
    return {name: f"{data_uri.rstrip('/')}/{named[name]}" for name in SPLIT_CHANNELS if name in named}


def top_level(data_uri: str, session: sagemaker.Session) -> tuple[list[str], list[str]]:
    """The names of the folders (S3: common prefixes) and of the files directly under data_uri."""
    if data_uri.startswith("file://"):
        root = Path(urlparse(data_uri).path)
        entries = sorted(root.iterdir()) if root.is_dir() else []
        return [p.name for p in entries if p.is_dir()], [p.name for p in entries if not p.is_dir()]
    parsed = urlparse(data_uri)
    prefix = parsed.path.strip("/") + "/" if parsed.path.strip("/") else ""
    s3 = session.boto_session.client("s3")
    pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=parsed.netloc, Prefix=prefix, Delimiter="/"))
    folders = [p["Prefix"][len(prefix) :].rstrip("/") for page in pages for p in page.get("CommonPrefixes", [])]
    files = [item["Key"][len(prefix) :] for page in pages for item in page.get("Contents", [])]
    return sorted(folders), sorted(files)
