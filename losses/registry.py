"""The loss registry and the ``--losses`` spec parser.

A loss is one decorated factory returning an ``nn.Module`` whose
``forward(L, fake_ab, real_ab)`` gives the generator's loss term. What else the trainer
owes a term is declared on its registration, never probed on the module:

- ``adversarial=True``: the term also has ``discriminator_loss(L, fake_ab, real_ab)`` and a
  ``discriminator`` attribute, trained before each generator step;
- ``needs_data=True``: the term has ``prepare(train)``, called once per cell before the
  first step with the training split (classification: its colour prior);
- ``weights="vgg16"``: the term runs a pretrained network (a ``models.pretrained``
  known_weights key) and has a ``weights_tag`` attribute: None, or the caveat
  (``random-vgg``) it runs under without the file, which goes into every name shown;
- ``generator_head={...}``: the generator has that head (see models/classifier.py) and the
  term's forward takes the head's output as a fourth argument,
  ``forward(L, fake_ab, real_ab, head_out)``.
"""
from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass, field, replace
from typing import Callable

from torch import nn

# The perceptual loss's VGG16 layers when not told (``--perceptual-layers``, see
# losses/perceptual.py); written once, here, for LossOptions, RunConfig and the loss.
DEFAULT_PERCEPTUAL_LAYERS = "relu1_2,relu2_2,relu3_3,relu4_3"


@dataclass(frozen=True)
class LossOptions:
    """What a loss factory may need beyond its name; one per run. ``bench run`` builds it
    from its RunConfig (``RunConfig.loss_options``), whose fields of the same names hold
    the defaults and help of the options; these defaults serve direct library use."""

    device: str = "cpu"
    gan_mode: str = "vanilla"
    discriminator: str = "patchgan"
    strict_weights: bool = False
    # VGG16 layers of the perceptual loss, optionally weighted: "relu2_2,relu3_3:0.5"
    # (see losses/perceptual.py).
    perceptual_layers: str = DEFAULT_PERCEPTUAL_LAYERS
    disc_width: int = 64  # the discriminator's base channels (pix2pix's ndf)


@dataclass(frozen=True)
class LossInfo:
    name: str
    description: str
    factory: Callable[[LossOptions], nn.Module]
    reference: str = ""
    defaults: str = ""
    generator_head: dict | None = None
    # Adversarial terms go last in a combination's canonical name (``100*l1+gan``).
    adversarial: bool = False
    needs_data: bool = False
    weights: str | None = None


LOSSES: dict[str, LossInfo] = {}


def register_loss(
    name: str, description: str, reference: str = "", defaults: str = "", generator_head: dict | None = None,
    adversarial: bool = False, needs_data: bool = False, weights: str | None = None,
):
    """Register ``factory(options) -> nn.Module`` under ``name`` for ``--losses``; the
    keywords declare what the trainer owes the term (see the module docstring).
    ``generator_head``: the generator output the term needs besides ab (e.g. class logits);
    ``adversarial``: the term trains a discriminator (it is named last in combinations);
    ``needs_data``: the term is prepared with the training split; ``weights``: the
    pretrained network it runs (a ``models.pretrained.known_weights`` key)."""

    def wrap(factory):
        if name in LOSSES:
            raise ValueError(f"loss {name!r} is registered twice")
        LOSSES[name] = LossInfo(
            name, description, factory, reference, defaults, generator_head, adversarial, needs_data, weights
        )
        return factory

    return wrap


# Builders of pretrained networks a loss shares across cells (VGG16, LPIPS's AlexNet),
# cached per device; ``release_networks`` empties them.
_NETWORK_CACHES: list = []


def cached_network(builder):
    """``functools.lru_cache`` for a loss's pretrained-network builder, one network per
    argument set (device included), released by ``release_networks``."""
    cached = functools.lru_cache(maxsize=None)(builder)
    _NETWORK_CACHES.append(cached)
    return cached


def release_networks() -> None:
    """Drop every cached loss network, so its device memory can be freed (a launcher's parent
    process, whose workers train on the same GPU)."""
    for cached in _NETWORK_CACHES:
        cached.cache_clear()


def weights_tags(names, options: LossOptions) -> dict[str, str]:
    """``{name: caveat}`` for each of ``names`` that runs without its declared pretrained
    weights (``{"perceptual": "random-vgg"}``).

    Only losses that declare ``weights`` are built -- each once, by its factory, which
    loads (and keeps) its network and says a missing file in one line, or raises
    ``WeightsUnavailable`` under ``--strict-weights``; the others (a PatchGAN) are not.
    """
    tags = {}
    for name in dict.fromkeys(names):
        if LOSSES[name].weights is not None and (tag := LOSSES[name].factory(options).weights_tag):
            tags[name] = tag
    return tags


def is_adversarial(spec: str) -> bool:
    """Whether a combination spec as written in config.json (``100*l1+gan``) has an
    adversarial term; a loss no longer registered counts as not adversarial."""
    return any(
        getattr(LOSSES.get(part.rpartition("*")[2].strip()), "adversarial", False) for part in spec.split("+")
    )


class LossSpecError(ValueError):
    """A ``--losses`` string that cannot be parsed; the message names the bad part."""


@dataclass(frozen=True)
class Term:
    name: str
    weight: float = 1.0

    def __str__(self) -> str:
        return self.name if self.weight == 1 else f"{weight_text(self.weight)}*{self.name}"


def weight_text(weight: float) -> str:
    """A weight as names show it: short (``100``, ``0.1``) when that is the exact value, else
    every digit it takes (``1.0000001``), so two different weights never share a name."""
    short = f"{weight:g}"
    return short if float(short) == weight else repr(weight)


def canonical_order(terms) -> tuple[Term, ...]:
    """Terms in the one order names use: non-adversarial terms alphabetically, adversarial
    ones last -- ``l1+mse``, ``100*l1+gan``, ``l1+0.1*perceptual``. A sum does not depend on
    its order, so ``mse+l1`` is the same combination as ``l1+mse`` and gets the same name."""
    return tuple(sorted(terms, key=lambda t: (LOSSES[t.name].adversarial if t.name in LOSSES else False, t.name)))


@dataclass(frozen=True)
class Combination:
    """A weighted sum of loss terms, e.g. ``100*l1+gan``."""

    terms: tuple[Term, ...]
    # {loss name: weights caveat}, e.g. {"perceptual": "random-vgg"}; see ``tagged``.
    tags: dict = field(default_factory=dict, compare=False, hash=False)

    def tagged(self, tags: dict[str, str]) -> "Combination":
        """This combination with the caveats of ``tags`` (``weights_tags``) that its terms have."""
        return replace(self, tags={t.name: tags[t.name] for t in self.terms if t.name in tags})

    @property
    def spec(self) -> str:
        return "+".join(str(t) for t in self.terms)

    @property
    def name(self) -> str:
        """The name tables and files use: the spec, with any weights caveat in brackets
        (``perceptual[random-vgg]``) so no reader mistakes a fallback for the real loss."""
        return "+".join(
            f"{t}[{self.tags[t.name]}]" if t.name in self.tags else str(t) for t in self.terms
        )


_TERM = re.compile(r"^(?:(?P<weight>[^*]*)\*)?(?P<name>[^*]*)$")


def _unknown(name: str, where: str) -> LossSpecError:
    close = difflib.get_close_matches(name, LOSSES, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return LossSpecError(
        f"unknown loss {name!r} in {where!r}{hint}; valid losses: {', '.join(sorted(LOSSES))} "
        "(see `bench losses`)"
    )


def parse_term(text: str, where: str) -> Term:
    m = _TERM.match(text.strip())
    if not m or not text.strip():
        raise LossSpecError(
            f"empty or malformed term {text!r} in {where!r}; write terms as NAME or WEIGHT*NAME "
            "joined by '+', e.g. '100*l1+gan'"
        )
    name, weight_text = m["name"].strip(), m["weight"]
    if not name:
        raise LossSpecError(f"term {text!r} in {where!r} has a weight but no loss name")
    if name not in LOSSES:
        raise _unknown(name, where)
    weight = 1.0
    if weight_text is not None and not weight_text.strip():
        raise LossSpecError(f"term {text.strip()!r} in {where!r} has '*' but no weight before it; write e.g. '100*{name}'")
    if weight_text is not None:
        try:
            weight = float(weight_text)
        except ValueError:
            raise LossSpecError(
                f"weight {weight_text.strip()!r} of {name!r} in {where!r} is not a number"
            ) from None
        if not weight > 0 or weight == float("inf"):
            raise LossSpecError(
                f"weight {weight_text.strip()!r} of {name!r} in {where!r} must be a positive "
                "finite number (drop the term instead of weighting it by 0)"
            )
    return Term(name, weight)


def parse_combination(text: str) -> Combination:
    terms = [parse_term(part, text) for part in text.split("+")]
    seen = set()
    for t in terms:
        if t.name in seen:
            raise LossSpecError(f"loss {t.name!r} appears twice in {text!r}; merge the weights into one term")
        seen.add(t.name)
    combo = Combination(canonical_order(terms))
    generator_head(combo)  # refuse terms that need two different generator outputs
    return combo


def generator_head(combo: Combination) -> dict | None:
    """The generator head the combination's terms need: None (plain ab) or the one head
    its terms agree on; every other term then sees the head's decoded ab."""
    heads = {t.name: LOSSES[t.name].generator_head for t in combo.terms if LOSSES[t.name].generator_head}
    if len({repr(h) for h in heads.values()}) > 1:
        raise LossSpecError(
            f"{combo.spec!r} combines {' and '.join(heads)}, which need different generator outputs; "
            "put them in separate combinations"
        )
    return next(iter(heads.values()), None)


def parse_losses(text: str) -> list[Combination]:
    """``'mse,l1,100*l1+gan'`` -> the combinations, in the order given."""
    if not text or not text.strip():
        raise LossSpecError("--losses is empty; give comma-separated combinations such as 'l1,100*l1+gan'")
    combos = []
    for part in text.split(","):
        if not part.strip():
            raise LossSpecError(f"empty combination in --losses {text!r} (two commas, or a trailing comma?)")
        combo = parse_combination(part)
        same = next((c for c in combos if c.terms == combo.terms), None)
        if same is not None:
            written = [p.strip() for p in text.split(",") if p.strip() and parse_combination(p).terms == combo.terms]
            raise LossSpecError(
                f"combination {same.spec!r} is listed twice in --losses {text!r} (as {' and '.join(map(repr, written))}; "
                "the order of terms and the spelling of a weight do not matter); list each combination once"
            )
        combos.append(combo)
    return combos
