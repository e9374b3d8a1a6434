"""Stronger backbones for users with internet: timm weights from the Hugging Face Hub, and a catalogue.

``ensure_weights("convnext_tiny")`` downloads a timm model's ``model.safetensors``
through ``huggingface_hub`` on first use (with its progress bar) into the
standard Hugging Face cache, where :func:`imagefit.models.backbones.timm_weights_path`
then finds it offline. Only safetensors are fetched (``.bin``/``.pth`` files are
pickles). ``HF_HUB_OFFLINE=1`` is honoured, ``HF_ENDPOINT`` (a mirror, or a test
server) is read at call time, and being offline gives one clear sentence.

:func:`catalogue` lists each known backbone as available offline or "downloads
N MB", with its ImageNet top-1 and feature size; :data:`RECOMMENDED` names a
few strong transfer backbones; :func:`local_backbones` is what ``--budget``
searches (every backbone whose weights are present locally).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError
from . import backbones
from .spec import _REGISTRY

WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class Known:
    """Published facts about a backbone (top-1: ImageNet-1k validation, the authors' or timm's figure)."""

    name: str
    params_m: float
    top1: float
    features: int
    note: str = ""

    @property
    def download_mb(self) -> int:
        """fp32 safetensors size: 4 bytes per parameter."""
        return round(self.params_m * 4)


# The offline lite models (TF EfficientNet-Lite README figures), then strong transfer backbones:
# ImageNet-21k/LVD-142M pretraining transfers better than ImageNet-1k alone (Kornblith et al., 2019).
KNOWN: tuple[Known, ...] = (
    Known("lite0", 4.7, 75.1, 1280, "EfficientNet-Lite0, offline"),
    Known("lite1", 5.4, 76.7, 1280, "EfficientNet-Lite1, offline"),
    Known("lite2", 6.1, 77.6, 1280, "EfficientNet-Lite2, offline"),
    Known("convnext_tiny.fb_in22k_ft_in1k", 28.6, 82.9, 768, "ConvNeXt-T, ImageNet-22k pretrained"),
    Known("convnextv2_tiny.fcmae_ft_in22k_in1k", 28.6, 83.9, 768, "ConvNeXt V2-T, FCMAE + ImageNet-22k"),
    Known("vit_small_patch14_dinov2.lvd142m", 22.1, 81.1, 384, "DINOv2 ViT-S/14 (linear probe), 518 px: slow on a CPU"),
    Known("eva02_small_patch14_336.mim_in22k_ft_in1k", 22.1, 85.7, 384, "EVA-02 S/14, 336 px"),
)
RECOMMENDED = ("convnextv2_tiny.fcmae_ft_in22k_in1k", "convnext_tiny.fb_in22k_ft_in1k", "vit_small_patch14_dinov2.lvd142m")
# Short names users type, as timm resolves a bare architecture to its default tag.
ALIASES = {
    "convnext_tiny": "convnext_tiny.fb_in22k_ft_in1k",
    "convnextv2_tiny": "convnextv2_tiny.fcmae_ft_in22k_in1k",
    "dinov2_small": "vit_small_patch14_dinov2.lvd142m",
    "eva02_small": "eva02_small_patch14_336.mim_in22k_ft_in1k",
}


def resolve_name(name: str) -> str:
    """A short alias (``convnext_tiny``) -> the timm name with its pretrained tag."""
    return ALIASES.get(name, name)


def hub_repo(name: str) -> tuple[str, str | None]:
    """``(repo_id, revision)`` holding timm model ``name``'s weights.

    Raises:
        ModelError: timm knows no Hub weights for it.
    """
    import timm

    try:
        cfg = timm.models.get_pretrained_cfg(resolve_name(name))
    except Exception:  # timm raises various errors for unknown names/tags
        cfg = None
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not hub_id:
        raise ModelError(f"invalid model: received {name!r}; allowed: a timm model name with Hugging Face weights (see `imagefit models`)")
    repo, _, revision = hub_id.partition("@")
    return repo, revision or None


def offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` asks for no network (read now, not at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def ensure_weights(name: str, *, progress: bool = True, cache_dir: str | Path | None = None) -> Path:
    """The local ``model.safetensors`` of timm model ``name``, downloaded on first use.

    Args:
        name: A timm name (``convnext_tiny.fb_in22k_ft_in1k``) or an alias (``convnext_tiny``).
        progress: Show huggingface_hub's download progress bar.
        cache_dir: Hugging Face cache folder (default: the standard one, ``HF_HUB_CACHE``).

    Raises:
        ModelError: offline with nothing cached, the hub unreachable, or no safetensors weights.
    """
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    repo, revision = hub_repo(name)
    found = try_to_load_from_cache(repo, WEIGHTS_FILE, revision=revision, cache_dir=cache_dir)
    if isinstance(found, (str, os.PathLike)):
        return Path(found)
    if offline():
        raise ModelError(
            f"{name}: weights are not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
            f"unset it to download {repo}, or train from scratch with --no-pretrained"
        )
    (enable_progress_bars if progress else disable_progress_bars)()
    try:
        path = hf_hub_download(
            repo,
            WEIGHTS_FILE,
            revision=revision,
            cache_dir=cache_dir,
            endpoint=os.environ.get("HF_ENDPOINT") or None,
            local_files_only=False,
        )
    except (LocalEntryNotFoundError, OSError) as exc:  # first: LocalEntryNotFoundError is an EntryNotFoundError
        raise ModelError(
            f"{name}: cannot download {repo} ({type(exc).__name__}); you seem to be offline, and the weights are not cached"
        ) from None
    except (RepositoryNotFoundError, EntryNotFoundError):
        raise ModelError(f"{name}: {repo} has no {WEIGHTS_FILE} on the Hub (imagefit never loads pickled .bin/.pth weights)") from None
    finally:
        enable_progress_bars()
    return Path(path)


def _locally_available(name: str) -> bool:
    # Not registry.weights_available: the registry resolves hub names through this module (no import cycle).
    try:
        if name in _REGISTRY:
            return _REGISTRY[name].available()
        return backbones.timm_weights_path(resolve_name(name)) is not None
    except Exception:  # an unknown name is simply not available
        return False


def local_backbones() -> list[str]:
    """Backbones usable offline right now, cheapest first: lite0-2, then cached timm models."""
    names = [k.name for k in KNOWN[:3] if _locally_available(k.name)]
    names += [n for n in cached_timm_models() if n not in names]
    return names


def cached_timm_models() -> list[str]:
    """timm model names whose ``model.safetensors`` is in the local Hugging Face cache (sorted)."""
    try:
        from huggingface_hub import scan_cache_dir

        info = scan_cache_dir()
    except Exception:  # no cache folder yet, or an unreadable one
        return []
    out = []
    for repo in info.repos:
        if repo.repo_type != "model" or not repo.repo_id.startswith("timm/"):
            continue
        if any(f.file_name == WEIGHTS_FILE for rev in repo.revisions for f in rev.files):
            out.append(repo.repo_id.split("/", 1)[1])
    return sorted(out)


@dataclass(frozen=True)
class CatalogueRow:
    """One line of ``imagefit models``."""

    name: str
    available: bool
    status: str  # "offline" or "downloads N MB"
    top1: float | None
    features: int | None
    recommended: bool
    note: str


def catalogue() -> list[CatalogueRow]:
    """Known backbones (offline ones first), plus any other cached timm model, for ``imagefit models``."""
    rows = []
    for k in KNOWN:
        ok = _locally_available(k.name)
        rows.append(
            CatalogueRow(
                k.name, ok, "offline" if ok else f"downloads {k.download_mb} MB", k.top1, k.features, k.name in RECOMMENDED, k.note
            )
        )
    known = {k.name for k in KNOWN}
    for name in cached_timm_models():
        if name not in known:
            try:
                spec = backbones.timm_spec(name)
                feats: int | None = spec.num_features if spec is not None else None
            except Exception:
                feats = None
            rows.append(CatalogueRow(name, True, "offline", None, feats, False, "cached timm model"))
    return rows


__all__ = ["ALIASES", "KNOWN", "RECOMMENDED", "CatalogueRow", "catalogue", "ensure_weights", "hub_repo", "local_backbones", "offline"]
